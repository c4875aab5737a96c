"""KgCoOp (Yao et al., CVPR 2023): CoOp plus a knowledge-guided term that keeps
the learned class text features close to frozen CLIP's hand-crafted ones:
loss = CE + W * (1 - mean_c cos(t_c, t_c^hand))."""
import torch.nn.functional as F

from dassl_compat import TRAINER_REGISTRY

from .coop import CoOp, CoOpCLIP, PromptLearner
from .templates import clean_classname, kgcoop_template


class KgCoOpCLIP(CoOpCLIP):
    def __init__(self, backbone, prompt_learner, hand_prompts):
        super().__init__(backbone, prompt_learner)
        hand = F.normalize(backbone.encode_prompts(hand_prompts), dim=-1)
        self.register_buffer("hand_text_features", hand, persistent=False)

    def knowledge_guidance(self, text_features):
        """1 - mean cosine between prompted and hand-crafted class text features."""
        cos = F.cosine_similarity(
            F.normalize(text_features, dim=-1), self.hand_text_features, dim=1, eps=1e-7
        )
        return 1.0 - cos.mean()


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    METHOD_NODE = "COOP"
    CHECKPOINT_NAME = "prompt_learner"

    def build_custom_clip(self, cfg, classnames, backbone):
        template = kgcoop_template(cfg.DATASET.NAME)
        hand_prompts = [template.format(clean_classname(c)) for c in classnames]
        print(f"Hand-crafted prompts: {hand_prompts[:3]}{' ...' if len(hand_prompts) > 3 else ''}")
        return KgCoOpCLIP(backbone, PromptLearner(cfg, classnames, backbone), hand_prompts)

    def compute_loss(self, images, labels):
        text_features = self.model.text_features()
        logits = self.model.logits(self.model.encode_image_features(images), text_features)
        kg = self.model.knowledge_guidance(text_features)
        loss = F.cross_entropy(logits, labels) + self.method_cfg.W * kg
        return loss, self.summary(loss, logits, labels, kg=kg.item())
