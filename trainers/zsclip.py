"""Zero-shot CLIP with the per-dataset hand-crafted template (CoOp's
ZeroshotCLIP). Nothing is learned; it only evaluates."""
import torch
import torch.nn as nn

from clip_backbone import build_backbone, resolve_precision
from clip_backbone.templates import clean_classname
from dassl_compat import TrainerX
from datasets import dataset_template
from errors import ConfigError
from regularizers import enabled_nodes

from . import feature_cache
from .base import build_explained_data_loader
from .models import PromptCLIP
from .registry import register_trainer


class ZeroshotModel(PromptCLIP):
    def __init__(self, backbone, prompts):
        super().__init__(backbone, nn.Module())
        with torch.no_grad():
            self.register_buffer("class_text_features", backbone.encode_prompts(prompts))

    def encode_text_features(self, hooks=None):
        return self.class_text_features


@register_trainer()  # reads TRAINER.COOP.PREC, as the peers' zeroshot.sh
class ZeroshotCLIP(TrainerX):
    def check_cfg(self, cfg):
        nodes = enabled_nodes(cfg)
        if nodes:
            raise ConfigError(
                f"ZeroshotCLIP learns nothing, so a regularizer has nothing to act on; set "
                f"{', '.join(n + '.ENABLE False' for n in nodes)}."
            )

    def build_data_loader(self):
        build_explained_data_loader(self)

    def build_model(self):
        cfg = self.cfg
        precision = resolve_precision(cfg.TRAINER.COOP.PREC, self.device)
        backbone = build_backbone(cfg, self.device, precision)
        template = dataset_template(cfg.DATASET.NAME)
        prompts = [template.format(clean_classname(c)) for c in self.dm.dataset.classnames]
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        self.model = ZeroshotModel(backbone, prompts).to(self.device)

    def image_features_frozen(self):
        return True  # nothing is learned: the evaluation may reuse cached image features

    def model_inference(self, images):
        return feature_cache.image_logits(self, images)

    def test(self, split=None):
        with feature_cache.evaluation(self, split):
            return super().test(split)

    def train(self):
        print("ZeroshotCLIP learns nothing; evaluating instead of training")
        self.test()
