"""TCP (Yao et al., CVPR 2024, "Textual-based Class-aware Prompt tuning"): KgCoOp whose context
tokens are replaced, before one deep text block, by class-aware tokens that a small network
(TKE, the prompt learner's ``meta_net``) makes from each class's frozen hand-crafted text
feature. New classes get their own tokens from their own text features.

As the reference (htyao89/Textual-based_Class-aware_prompt_tuning, ``trainers/tcp.py`` and the
text blocks of its ``trainers/clip_text/model.py``):

* prompts: [SOS] context (N_CTX, 4 in its script) then TCP's text for the dataset (e.g.
  "{}, a type of pet."), class name at the end;
* TKE: Linear(E, E/4) → QuickGELU → Linear(E/4, N_CTX · text width) of the normalized frozen
  class text features (E: CLIP's embedding width), fp16 in PREC fp16; its output replaces the
  context tokens of the residual stream before 0-based text block ``TRAINER.TCP.LAYER`` (the
  reference: 8, written in its block; a blend weight there is fixed to 1, so replaced);
* loss: CE + W · (1 − mean cos(text features, hand-crafted ones)), KgCoOp's term with W = 8.0
  (the reference writes 8.0 in its loss; its TRAINER.COOP.W reaches only that fixed blend);
* Adam with eps = ``TRAINER.TCP.ADAM_EPS`` (its README has Dassl's Adam edited to 1e-3).
"""
from collections import OrderedDict

import torch
import torch.nn as nn
from open_clip.transformer import QuickGELU

from clip_backbone.templates import clean_classname
from datasets import kgcoop_template
from errors import ConfigError
from regularizers.config import ensure

from .coop import PromptLearner
from .kgcoop import KgCoOp, KgCoOpCLIP
from .prompts import check_depth
from .registry import register_trainer

#: the text after the context (the reference's CUSTOM_TEMPLATES less their 4 leading tokens)
TCP_PROMPTS = {
    "OxfordPets": "{}, a type of pet.",
    "OxfordFlowers": "{}, a type of flower.",
    "FGVCAircraft": "{}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "StanfordCars": "{}, a type of car",  # no full stop, as the reference
    "Food101": "{}, a type of food.",
    "UCF101": "person doing {}.",
}
#: TCP's hand-crafted prompts (CUSTOM_TEMPLATES_ori) where they differ from KgCoOp's
TCP_HAND_PROMPTS = {
    "FGVCAircraft": "a photo of an aircraft {}.",
    "Food101": "a photo of a {}, a type of food.",
}


def add_tcp_config(cfg):
    """cfg.TRAINER.TCP; TCP's prompt and loss weight are TRAINER.COOP's (N_CTX, CTX_INIT, CSC,
    PREC, W), as the reference."""
    c = ensure(cfg.TRAINER, "TCP", type(cfg)())
    # 0-based text block before which the class-aware tokens enter (the reference: 8);
    # -1: none (TCP is then KgCoOp with TCP's prompts)
    ensure(c, "LAYER", 8)
    ensure(c, "ADAM_EPS", 1e-3)  # eps of Adam (OPTIM.NAME adam; torch's default is 1e-8)


class TCPPromptLearner(PromptLearner):
    """CoOp's context, and TKE (``meta_net``), which makes N_CTX tokens per class."""

    def __init__(self, cfg, classnames, backbone):
        super().__init__(cfg, classnames, backbone, template=TCP_PROMPTS.get(
            cfg.DATASET.NAME, "{}."))
        if self.position != "end":
            raise ConfigError("TCP puts the class name after the context (CLASS_TOKEN_POSITION "
                              "end), where its class-aware tokens replace it.")
        embed, width = backbone.embed_dim, backbone.text_width
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(embed, embed // 4)),
            ("relu", QuickGELU()),
            ("linear2", nn.Linear(embed // 4, self.classes.n_ctx * width)),
        ]))
        if backbone.dtype == torch.float16:
            self.meta_net.half()  # as the reference (trainers/tcp.py:175)

    def class_prompts(self, text_features):
        """(n_cls, N_CTX, width) class-aware tokens of normalized class text features."""
        return self.meta_net(text_features).reshape(len(text_features), self.classes.n_ctx, -1)


class TCPCLIP(KgCoOpCLIP):
    def __init__(self, backbone, prompt_learner, hand_prompts, layer):
        super().__init__(backbone, prompt_learner, hand_prompts)
        self.layer = layer

    def encode_text_features(self, hooks=None):
        learner = self.prompt_learner
        noise = hooks.prompt_noise if hooks is not None else None
        deep = None
        if self.layer > 0:  # deep_prompts[i] enters before block i + 1
            deep = [None] * (self.layer - 1) + [learner.class_prompts(self.hand_text_features)]
        return self.backbone.text(learner(noise), learner.classes.tokenized_prompts,
                                  deep_prompts=deep, hooks=hooks)


@register_trainer(add_config=add_tcp_config)
class TCP(KgCoOp):
    def build_custom_clip(self, cfg, classnames, backbone):
        layer = cfg.TRAINER.TCP.LAYER
        if layer != -1:
            check_depth("TRAINER.TCP.LAYER (or -1)", layer, backbone.text.num_layers - 1, 1)
        name = cfg.DATASET.NAME
        template = TCP_HAND_PROMPTS.get(name) or kgcoop_template(name)
        hand_prompts = [template.format(clean_classname(c)) for c in classnames]
        learner = TCPPromptLearner(cfg, classnames, backbone)
        return TCPCLIP(backbone, learner, hand_prompts, layer)

    def prompt_depth(self):
        return max(self.cfg.TRAINER.TCP.LAYER, 0) + 1  # the class-aware tokens are deepest

    def build_model(self):
        super().build_model()
        for group in self.optim.param_groups:
            if "eps" in group and self.cfg.OPTIM.NAME == "adam":
                group["eps"] = self.cfg.TRAINER.TCP.ADAM_EPS
