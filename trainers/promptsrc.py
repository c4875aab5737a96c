"""PromptSRC (Khattak et al., ICCV 2023): IVLP prompts regularized towards the
frozen CLIP, and Gaussian prompt aggregation (GPA) over epochs.

The frozen teachers are our frozen backbone run without prompts: image
features of the same batch, and class text features averaged (unnormalized)
over PromptSRC's 60 templates. Loss = CE + TEXT_LOSS_WEIGHT * L1(text)
+ IMAGE_LOSS_WEIGHT * L1(image) + KL(zero-shot || prompted) / (B * n_cls)."""
import numpy as np
import torch
import torch.nn.functional as F

from clip_backbone.templates import IMAGENET_TEMPLATES, clean_classname
from regularizers.config import ensure

from .ivlp import IVLP, VLPromptLearner, add_vl_prompt_keys
from .models import Features, StepLoss, VLPromptCLIP
from .registry import register_trainer


def add_promptsrc_config(cfg):
    """cfg.TRAINER.PROMPTSRC: IVLP's keys (4 tokens per layer by default) and its losses and
    GPA."""
    c = add_vl_prompt_keys(ensure(cfg.TRAINER, "PROMPTSRC", type(cfg)()), n_ctx=4)
    ensure(c, "TEXT_LOSS_WEIGHT", 25)  # L1 between prompted and frozen text features
    ensure(c, "IMAGE_LOSS_WEIGHT", 10)  # L1 between prompted and frozen image features
    # Gaussian prompt aggregation: epoch e (1-based) weighs N(e; GPA_MEAN, GPA_STD), normalised
    ensure(c, "GPA_MEAN", 15)
    ensure(c, "GPA_STD", 1)


def gpa_weights(max_epoch, mean, std):
    """Weight of each epoch (index 0 = epoch 1): N(e; mean, std) over 1..max_epoch, normalized."""
    epochs = np.arange(1, max_epoch + 1)
    gauss = np.exp(-0.5 * ((epochs - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
    return gauss / gauss.sum()


class PromptSRCCLIP(VLPromptCLIP):
    def __init__(self, backbone, prompt_learner, classnames):
        super().__init__(backbone, prompt_learner)
        self.classnames = [clean_classname(c) for c in classnames]
        self.register_buffer("_frozen_text", None, persistent=False)

    def frozen_text_features(self):
        """Frozen CLIP text features of the classes, mean over the templates, in fp32;
        computed on first use (an eval-only run never needs them)."""
        if self._frozen_text is None:
            with self.backbone.fp32_text():  # fp32 in every PREC, as the reference
                per_template = [
                    self.backbone.encode_prompts([t.replace("{}", c) for c in self.classnames])
                    for t in IMAGENET_TEMPLATES]
            self._frozen_text = torch.stack(per_template, dim=1).mean(dim=1)
        return self._frozen_text


@register_trainer(add_config=add_promptsrc_config)
class PromptSRC(IVLP):
    """IVLP's prompts (and towers), PromptSRC's losses and GPA."""

    METHOD_NODE = "PROMPTSRC"

    def build_custom_clip(self, cfg, classnames, backbone):
        learner = VLPromptLearner(cfg.TRAINER.PROMPTSRC, classnames, backbone)
        return PromptSRCCLIP(backbone, learner, classnames)

    def build_model(self):
        super().build_model()
        c = self.method_cfg
        self.gpa_weights = gpa_weights(self.cfg.OPTIM.MAX_EPOCH, c.GPA_MEAN, c.GPA_STD)
        self.gpa_state = None  # running sum of weight(epoch) * prompt state, over finished epochs

    def step_loss(self, images, labels, hooks):
        model, c = self.model, self.method_cfg
        text_features = model.text_features(hooks.text)
        image_features = model.encode_image_features(images, hooks.image)
        text, image = F.normalize(text_features, dim=-1), F.normalize(image_features, dim=-1)
        scale = model.logit_scale.exp()
        logits = scale * image @ text.t()
        with torch.no_grad():
            frozen_text = F.normalize(model.frozen_text_features(), dim=-1)
            frozen_image = F.normalize(model.backbone.image(images), dim=-1)
            zs_logits = scale * frozen_image @ model.backbone.cast(frozen_text).t()
        loss_text = F.l1_loss(text, frozen_text, reduction="mean") * c.TEXT_LOSS_WEIGHT
        loss_image = F.l1_loss(image, frozen_image, reduction="mean") * c.IMAGE_LOSS_WEIGHT
        loss_kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zs_logits, dim=1),
                           reduction="sum", log_target=True) / logits.numel()
        loss_ce = F.cross_entropy(logits, labels)
        # the reference's grouping: CE + L_SCL, L_SCL = KL + L1(text) + L1(image)
        terms = {"ce": loss_ce, "scl": loss_kl + loss_text + loss_image}
        # the regularizers get the normalized features and reuse the frozen image features
        features = Features(logits, text=text, image=image, image_frozen=frozen_image)
        return StepLoss(terms, features, log={
            "loss_ce": loss_ce.item(), "loss_text": loss_text.item(),
            "loss_image": loss_image.item(), "loss_kl": loss_kl.item()})

    def after_last_batch(self):
        learner = self.model.prompt_learner
        weight = float(self.gpa_weights[self.epoch])
        weighted = {k: v.detach() * weight for k, v in learner.state_dict().items()}
        if self.gpa_state is None:
            self.gpa_state = weighted
        else:
            self.gpa_state = {k: self.gpa_state[k] + weighted[k] for k in weighted}
        if self.epoch + 1 == self.max_epoch:
            print("Using GPA model for final inference...")
            learner.load_state_dict(self.gpa_state)

    def extra_checkpoint_state(self):
        return {"gpa_state": self.gpa_state}

    def load_extra_checkpoint_state(self, state):
        if "gpa_state" in state:
            self.gpa_state = state["gpa_state"]
