"""The prompted CLIP models: a frozen backbone plus a learnable ``prompt_learner``.

A model's training forward, ``forward_features(images, hooks)``, returns what it computed as a
``Features`` (logits and the prompted features), so the trainer hands regularizers values, not
state left on modules. ``hooks`` (``ForwardHooks``) carry what the regularizers ask of that one
pass: hidden states to collect and a noise for the learned prompts (see
``clip_backbone.TowerHooks``).
"""
import contextlib
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone import TowerHooks


@dataclass
class ForwardHooks:
    """Per-tower hooks for one forward pass (empty: a plain pass)."""

    text: TowerHooks = field(default_factory=TowerHooks)
    image: TowerHooks = field(default_factory=TowerHooks)


@dataclass
class Features:
    """What a training forward computed."""

    logits: torch.Tensor  # [B, C]
    text: Optional[torch.Tensor] = None  # prompted class text features [C, d]
    image: Optional[torch.Tensor] = None  # prompted image features [B, d]
    image_frozen: Optional[torch.Tensor] = None  # frozen image features, if computed anyway
    # [B, C, d]: each image's own class text features, where they depend on the image
    # (CoCoOp; kept in training only)
    text_per_image: Optional[torch.Tensor] = None


@dataclass
class StepLoss:
    """A trainer's loss for one batch: ``terms`` (scalar tensors, summed in this order into the
    loss; a method that changes the update rather than the loss reads them one by one),
    the ``features`` of the forward pass, and extra items to ``log``."""

    terms: Dict[str, torch.Tensor]
    features: Features
    log: Dict[str, float] = field(default_factory=dict)

    def total(self):
        terms = iter(self.terms.values())
        loss = next(terms)
        for term in terms:
            loss = loss + term
        return loss


class PromptCLIP(nn.Module):
    """A frozen CLIP plus a learnable ``prompt_learner``.

    Subclasses implement ``encode_text_features(hooks)`` (class text features for the current
    class set) and may override ``encode_image_features(images, hooks)``. Inside
    ``cached_text_features()`` the text features are computed once and reused (evaluation).

    The evaluation forward is two halves, ``forward(images) =
    logits_from_image_features(encode_image_features(images))``, so that an evaluation can
    take the image features of a frozen image tower from the feature cache
    (``trainers/feature_cache.py``) and run only the second half.
    """

    def __init__(self, backbone, prompt_learner):
        super().__init__()
        self.backbone = backbone
        self.prompt_learner = prompt_learner
        self._text_cache = None

    @property
    def logit_scale(self):
        return self.backbone.logit_scale

    def encode_text_features(self, hooks=None):
        raise NotImplementedError

    def encode_image_features(self, images, hooks=None):
        return self.backbone.image(images, hooks=hooks)

    def text_features(self, hooks=None):
        if self._text_cache is not None:
            return self._text_cache
        return self.encode_text_features(hooks)

    @contextlib.contextmanager
    def cached_text_features(self):
        with torch.no_grad():
            self._text_cache = self.encode_text_features()
        try:
            yield
        finally:
            self._text_cache = None

    def logits(self, image_features, text_features):
        return self.normalized_logits(F.normalize(image_features, dim=-1),
                                      F.normalize(text_features, dim=-1))

    def normalized_logits(self, image, text):
        """``scale * image @ text.T`` for L2-normalized features, in the references' order
        (which matters in fp16). Both sides are cast to the backbone's dtype first (a no-op
        unless a learner computes one side in another dtype, e.g. fp32 parameters on an fp16
        backbone)."""
        cast = self.backbone.cast
        return self.logit_scale.exp() * cast(image) @ cast(text).t()

    def forward_features(self, images, hooks=None):
        hooks = hooks or ForwardHooks()
        text = self.text_features(hooks.text)
        image = self.encode_image_features(images, hooks.image)
        return Features(self.logits(image, text), text=text, image=image)

    def logits_from_image_features(self, image_features):
        """Evaluation logits from image features as ``encode_image_features`` returns them."""
        return self.logits(image_features, self.text_features())

    def forward(self, images):
        return self.logits_from_image_features(self.encode_image_features(images))


class VLPromptCLIP(PromptCLIP):
    """CLIP with text and vision prompts from a learner exposing ``text_prompts()`` and
    ``vision_prompts()`` (MaPLe's coupled prompts, IVLP's and PromptSRC's independent ones)."""

    def encode_text_features(self, hooks=None):
        prompts, deep = self.prompt_learner.text_prompts()
        classes = self.prompt_learner.classes
        return self.backbone.text(prompts, classes.tokenized_prompts, deep_prompts=deep,
                                  n_ctx=classes.n_ctx, hooks=hooks)

    def encode_image_features(self, images, hooks=None):
        shallow, deep = self.prompt_learner.vision_prompts()
        return self.backbone.image(images, shallow_prompt=shallow, deep_prompts=deep or None,
                                   hooks=hooks)
