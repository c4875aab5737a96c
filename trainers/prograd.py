"""ProGrad (Zhu et al., ICCV 2023, "Prompt-aligned Gradient for Prompt Tuning"): CoOp whose
update is the cross-entropy gradient with the part removed that conflicts with the gradient of
a distillation term towards zero-shot CLIP. It changes the update, not the loss.

As the reference (BeierZhu/Prompt-align: ``trainers/prograd.py`` and its Dassl fork's
``prograd_backward_and_update``):

* two terms: ``ce`` = CE(logits, y) and ``kl`` = T² · mean_b Σ_c −p_c log softmax(logits/T)_c,
  p = softmax(zero-shot logits / T). Zero-shot CLIP is the frozen image features against the
  class text features under ProGrad's hand-crafted prompt of the dataset, in fp32 in every
  PREC (the reference builds a second CLIP and turns it ``.float()``);
* per learnable tensor, with ĝ = g_kl / ‖g_kl‖: where cos(g_ce, g_kl) < 0 the update is
  g_ce − LAMBDA · (g_ce · ĝ) ĝ, else g_ce. The kl term itself updates nothing;
* ``CTX_INIT``: the words' token embeddings are the *last* context vectors and the first ones
  are zeros ("X" in the prompt text); ``template`` takes the words from the dataset's prompt
  (the reference's ``CTX_INIT: True``). Otherwise CoOp's context (N(0, 0.02), CSC).
"""
import torch
import torch.nn.functional as F

from clip_backbone.templates import clean_classname
from datasets import dataset_template
from errors import ConfigError
from regularizers.config import ensure

from .coop import CoOp, CoOpCLIP, PromptLearner
from .models import StepLoss
from .registry import register_trainer

#: ProGrad's hand-crafted prompts (the reference's CUSTOM_TEMPLATES) where they differ from the
#: dataset's own; the zero-shot teacher's, and the context words of CTX_INIT "template"
PROGRAD_TEMPLATES = {
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}


def add_prograd_config(cfg):
    """cfg.LOSS, the reference's node (its prompt reads TRAINER.COOP, CoOp's node)."""
    c = ensure(cfg, "LOSS", type(cfg)())
    ensure(c, "NAME", "")  # "prograd", as the reference's configs set it (nothing else runs)
    ensure(c, "T", 1.0)  # temperature of the distillation towards zero-shot CLIP
    # share of the conflicting component removed; the reference's README uses 0.8 for 8 and
    # 16 shots on Flowers102, DTD and EuroSAT, 1.0 elsewhere
    ensure(c, "LAMBDA", 1.0)


def prograd_context(backbone, n_ctx, words):
    """(ctx, prompt prefix, n_ctx): the first len(words.split(" ")) token embeddings of the
    words as the last context vectors, zeros before them; the prompt text keeps every word
    (so a word split into several tokens leaves its last ones fixed, as in the reference)."""
    words = words.replace("_", " ")
    n_words = len(words.split(" "))
    if n_ctx < n_words:
        raise ConfigError(f"ProGrad: TRAINER.COOP.N_CTX ({n_ctx}) must be at least the number "
                          f"of CTX_INIT words ({n_words}, {words!r}).")
    ctx = torch.zeros(n_ctx, backbone.text_width, dtype=backbone.dtype)
    with torch.no_grad():
        ctx[n_ctx - n_words:] = backbone.embed(backbone.tokenize([words]))[0, 1:1 + n_words]
    return ctx, " ".join(["X"] * (n_ctx - n_words) + [words]), n_ctx


class ProGradCLIP(CoOpCLIP):
    def __init__(self, backbone, prompt_learner, zero_shot_prompts):
        super().__init__(backbone, prompt_learner)
        with backbone.fp32_text():
            text = backbone.encode_prompts(zero_shot_prompts)
        self.register_buffer("zero_shot_text", text / text.norm(dim=-1, keepdim=True),
                             persistent=False)

    @torch.no_grad()
    def zero_shot_logits(self, images):
        image = self.backbone.image_fp32()(images)
        image = image / image.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image @ self.zero_shot_text.t()


@register_trainer(add_config=add_prograd_config)
class ProGrad(CoOp):
    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.LOSS.NAME != "prograd":
            raise ConfigError(f"ProGrad needs LOSS.NAME prograd (its configs set it), got "
                              f"{cfg.LOSS.NAME!r}.")

    def build_custom_clip(self, cfg, classnames, backbone):
        template = PROGRAD_TEMPLATES.get(cfg.DATASET.NAME) or dataset_template(cfg.DATASET.NAME)
        c, context = cfg.TRAINER.COOP, None
        if c.CTX_INIT:
            words = template.replace(" {}.", "") if c.CTX_INIT == "template" else c.CTX_INIT
            if "{}" in words:
                raise ConfigError(f"ProGrad: CTX_INIT template needs a dataset prompt that "
                                  f"ends in ' {{}}.', got {template!r}; give the words instead.")
            context = prograd_context(backbone, c.N_CTX, words)
        learner = PromptLearner(cfg, classnames, backbone, context=context)
        prompts = [template.format(clean_classname(name)) for name in classnames]
        print(f"Zero-shot prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        return ProGradCLIP(backbone, learner, prompts)

    def step_loss(self, images, labels, hooks):
        step = super().step_loss(images, labels, hooks)
        t = self.cfg.LOSS.T
        teacher = F.softmax(self.model.zero_shot_logits(images) / t, dim=-1)
        kl = (-teacher * F.log_softmax(step.features.logits / t, -1) * t * t).sum(1).mean()
        return StepLoss({"ce": step.terms["ce"], "kl": kl}, step.features,
                        log={"xe_loss": step.terms["ce"].item(), "kl_loss": kl.item()})

    def adjust_gradients(self, grads):
        """g_ce, less LAMBDA times its component along g_kl where the two conflict (each
        tensor on its own, in the reference's order of operations)."""
        lam, adjusted = self.cfg.LOSS.LAMBDA, []
        for g, g_kl in zip(grads["ce"], grads["kl"]):
            direction = g_kl / torch.linalg.norm(g_kl)
            if torch.dot((g / torch.linalg.norm(g)).flatten(), direction.flatten()) < 0:
                g = g - lam * torch.dot(g.flatten(), direction.flatten()) * direction
            adjusted.append(g)
        return tuple(adjusted)
