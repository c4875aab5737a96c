"""KgCoOp (Yao et al., CVPR 2023): CoOp plus a knowledge-guided term that keeps
the learned class text features close to frozen CLIP's hand-crafted ones:
loss = CE + W * (1 - mean_c cos(t_c, t_c^hand))."""
import torch.nn.functional as F

from clip_backbone.templates import clean_classname
from datasets import kgcoop_template
from regularizers.config import ensure

from .coop import CoOp, CoOpCLIP, PromptLearner
from .models import Features, StepLoss
from .registry import register_trainer


def add_kgcoop_config(cfg):
    """KgCoOp reads CoOp's node (as the reference, cfg.TRAINER.COOP) plus its weight W; its
    peers' YAML "CTX_INIT: True" means "a photo of a"."""
    c = ensure(cfg.TRAINER, "COOP", type(cfg)())
    ensure(c, "W", 1.0)  # weight of 1 - mean cos(learned, hand-crafted class text features)


class KgCoOpCLIP(CoOpCLIP):
    def __init__(self, backbone, prompt_learner, hand_prompts):
        super().__init__(backbone, prompt_learner)
        hand = F.normalize(backbone.encode_prompts(hand_prompts), dim=-1)
        self.register_buffer("hand_text_features", hand, persistent=False)

    def knowledge_guidance(self, text):
        """1 - mean cosine between normalized prompted and hand-crafted class text features."""
        # The reference normalizes its stored hand features once more here; in fp16 that
        # second rounding shows.
        cos = F.cosine_similarity(text, F.normalize(self.hand_text_features, dim=-1), dim=1,
                                  eps=1e-7)
        return 1.0 - cos.mean()


@register_trainer(add_config=add_kgcoop_config)
class KgCoOp(CoOp):
    def build_custom_clip(self, cfg, classnames, backbone):
        template = kgcoop_template(cfg.DATASET.NAME)
        hand_prompts = [template.format(clean_classname(c)) for c in classnames]
        print(f"Hand-crafted prompts: {hand_prompts[:3]}{' ...' if len(hand_prompts) > 3 else ''}")
        return KgCoOpCLIP(backbone, PromptLearner(cfg, classnames, backbone), hand_prompts)

    def step_loss(self, images, labels, hooks):
        model = self.model
        text_features = model.text_features(hooks.text)
        image_features = model.encode_image_features(images, hooks.image)
        # one normalization feeds both terms, as in the reference (its gradients add there)
        text = F.normalize(text_features, dim=-1)
        logits = model.normalized_logits(F.normalize(image_features, dim=-1), text)
        kg = model.knowledge_guidance(text)
        terms = {"ce": F.cross_entropy(logits, labels), "kg": self.method_cfg.W * kg}
        return StepLoss(terms, Features(logits, text=text_features, image=image_features),
                        log={"kg": kg.item()})
