"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small
meta-net of the image feature, so every image gets its own class prompts."""
import contextlib
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from regularizers.config import ensure

from .base import PromptTrainer
from .models import Features, PromptCLIP
from .prompts import ClassPrompts, init_context
from .registry import register_trainer


def add_cocoop_config(cfg):
    """cfg.TRAINER.COCOOP (the meta-net is Linear(E, E//16) -> ReLU -> Linear(E//16, text
    width), as the reference)."""
    c = ensure(cfg.TRAINER, "COCOOP", type(cfg)())
    ensure(c, "N_CTX", 16)  # number of learnable context tokens
    ensure(c, "CTX_INIT", "")  # init words, e.g. "a photo of a" (sets N_CTX to its length)
    ensure(c, "PREC", "fp16")  # fp16, fp32 or amp; always fp32 on CPU


class PromptLearner(nn.Module):
    def __init__(self, cfg, classnames, backbone):
        super().__init__()
        c = cfg.TRAINER.COCOOP
        ctx, prefix, n_ctx = init_context(backbone, c.N_CTX, c.CTX_INIT)
        print(f'Initial context: "{prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        vis_dim = backbone.embed_dim  # the meta-net reads the projected image feature
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, backbone.text_width)),
        ]))
        if backbone.dtype == torch.float16:
            self.meta_net.half()  # as the reference (CoOp trainers/cocoop.py:102)
        self.classes = ClassPrompts(backbone, classnames, prefix, n_ctx)

    def forward(self, image_features):
        """Prompts (B, n_cls, L, D) for normalized image features (B, E)."""
        ctx = self.ctx.unsqueeze(0) + self.meta_net(image_features).unsqueeze(1)
        return torch.stack([self.classes.assemble(ctx_i) for ctx_i in ctx])


class CoCoOpCLIP(PromptCLIP):
    # Upper bound on prompts per text-encoder call: a batch's (images x classes) prompts are
    # encoded in chunks of whole images below it (one call for a training batch of 1-4 images
    # and tens of classes; evaluation batches are split).
    MAX_PROMPTS_PER_CALL = 4096

    def forward_features(self, images, hooks=None):
        return self.features_from_image_features(self.encode_image_features(images))

    def logits_from_image_features(self, image_features):
        return self.features_from_image_features(image_features).logits

    def features_from_image_features(self, raw_image):
        """The meta-net reads the normalized image features, as in the reference."""
        image_features = F.normalize(raw_image, dim=-1)
        prompts = self.prompt_learner(image_features)
        tokens = self.prompt_learner.classes.tokenized_prompts
        n_cls = tokens.shape[0]
        chunk = max(1, self.MAX_PROMPTS_PER_CALL // n_cls)
        logits, texts, raw_texts = [], [], []
        for img, pts in zip(image_features.split(chunk), prompts.split(chunk)):
            raw = self.backbone.text(pts.flatten(0, 1), tokens.repeat(len(pts), 1))
            text = F.normalize(raw, dim=-1).view(len(pts), n_cls, -1)
            # (scale * image) @ text, in this order as the reference: it matters in fp16
            logits.append(torch.einsum("bd,bcd->bc", self.logit_scale.exp() * img, text))
            texts.append(text)
            raw_texts.append(raw.view(len(pts), n_cls, -1))
        # for the regularizers: one class text set, the per-image sets averaged
        text = torch.cat(texts).mean(0)
        # the raw per-image sets, for a plug-in that reads them (training only: [B, C, d])
        per_image = torch.cat(raw_texts) if self.training else None
        return Features(torch.cat(logits), text=text, image=raw_image, text_per_image=per_image)

    @contextlib.contextmanager
    def cached_text_features(self):
        yield  # the class text features depend on the image: nothing to cache


@register_trainer(add_config=add_cocoop_config)
class CoCoOp(PromptTrainer):
    METHOD_NODE = "COCOOP"
    CHECKPOINT_NAME = "prompt_learner"

    def build_custom_clip(self, cfg, classnames, backbone):
        return CoCoOpCLIP(backbone, PromptLearner(cfg, classnames, backbone))
