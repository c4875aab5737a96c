"""The one interface of the anti-forgetting regularizers (SPEC decision 7).

A trainer builds its regularizers once, ``regs = build_regularizers(cfg, ...)``, then per step:

1. ``needs = needed_features(regs)`` names the ``FeatureSets`` fields to fill. A trainer computes
   something extra (frozen image features, hidden states, a second noisy pass) only if named.
2. Hidden states for LDIFS: ``reg.hidden_layers(depth)`` gives the indices to collect per tower.
3. PACE: encoders pass every learned prompt through ``reg.perturb(prompt, layer, batch_size)``
   (identity for other regularizers); ``reg.second_pass_size(step, batch_size)`` says on how many
   leading samples of the batch a second noisy pass must run this step (0 = none).
4. ``loss, summary = regularization_loss(regs, feats)``; add ``loss`` to the task loss and the
   summary items to the logged losses.

Parameters from ``generator_parameters()`` (Proxy-FDA's generator) are trained by their own loss,
which is already inside ``loss``; the trainer gives them their own optimizer and checkpoints them.
The regularizers follow the model's train/eval mode; in eval mode ``perturb`` adds no noise.
"""
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from errors import ConfigError

TOWERS = ("text", "image")


@dataclass
class FeatureSets:
    """What a trainer hands its regularizers in one step; fields a regularizer did not ask for
    may stay None."""

    # Prompted class-text features of the training classes, [C, d]; [B, C, d] for
    # instance-conditioned prompts (CoCoOp).
    text: Optional[torch.Tensor] = None
    # Frozen CLIP text features of the same classes under hand-crafted templates, [C, d].
    text_frozen: Optional[torch.Tensor] = None
    # Prompted image features of the batch, [B, d].
    image: Optional[torch.Tensor] = None
    # Frozen CLIP image features of the same augmented images, [B, d].
    image_frozen: Optional[torch.Tensor] = None
    # Logits of the (first) forward pass, [B, C], and the labels, [B].
    logits: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    # LDIFS: tower ("text" / "image") -> (prompted hidden states, frozen hidden states), each a
    # list over ``hidden_layers(depth)`` of batch-first [N, T, D] tensors.
    hidden: Optional[Dict[str, Tuple[List[torch.Tensor], List[torch.Tensor]]]] = None
    # PACE: logits of a second, independently noised pass over the first
    # ``second_pass_size(step, B)`` samples of the batch, [n, C].
    logits_second_pass: Optional[torch.Tensor] = None


FEATURE_NAMES = tuple(f.name for f in fields(FeatureSets))


class Regularizer(nn.Module):
    """Feature sets in, (loss, summary) out."""

    #: short name, also the prefix of the summary items
    name = "regularizer"
    #: names of the FeatureSets fields this regularizer reads (set per instance from its config)
    needs = frozenset()
    #: True if learned prompts must go through ``perturb``
    perturbs_prompts = False

    def forward(self, feats: FeatureSets):
        """Return (loss: scalar tensor, summary: dict[str, float])."""
        raise NotImplementedError

    def generator_parameters(self):
        """Parameters trained by the regularizer's own loss term, not by the task loss."""
        return []

    def hidden_layers(self, depth):
        """Hidden-state indices (0 = embedding, k = output of block k) wanted from a tower of
        ``depth`` blocks."""
        return []

    def second_pass_size(self, step, batch_size):
        """How many leading samples of this step's batch need a second noisy forward pass."""
        return 0

    def perturb(self, prompt, layer, batch_size, base=None):
        """A learned prompt as the encoder should use it (identity unless overridden)."""
        return prompt

    def _get(self, feats, field):
        value = getattr(feats, field)
        if value is None:
            raise ValueError(
                f"{type(self).__name__} needs FeatureSets.{field}, but the trainer passed None "
                f"(fields it needs: {sorted(self.needs)})."
            )
        return value


def needed_features(regularizers):
    """The union of the FeatureSets fields the regularizers read."""
    needs = set()
    for reg in regularizers:
        needs |= set(reg.needs)
    return frozenset(needs)


def regularization_loss(regularizers, feats):
    """Sum of the regularizers' losses (None if there are none), and their merged summary
    items."""
    total, summary = None, {}
    for reg in regularizers:
        loss, items = reg(feats)
        total = loss if total is None else total + loss
        summary.update(items)
    return total, summary


def build_regularizers(cfg, embed_dim=None, towers=("text",), prompt_depth=1):
    """The regularizers switched on in ``cfg`` ([] when all are off).

    ``embed_dim``: width d of the joint embedding (Proxy-FDA's generator is built for it).
    ``towers``: the towers the trainer's prompts change, a subset of ("text", "image"); a
    regularizer acts only on those. ``prompt_depth``: number of prompted layers (PACE's noise
    schedule; 1 for shallow prompts).
    """
    from .ldifs import LDIFS
    from .pace import PACE
    from .proxy_fda import ProxyFDA

    towers = tuple(towers)
    unknown = [t for t in towers if t not in TOWERS]
    if unknown or not towers:
        raise ConfigError(f"towers must be a non-empty subset of {TOWERS}, got {towers}.")
    regs = []
    if "PROXYFDA" in cfg and cfg.PROXYFDA.ENABLE:
        regs.append(ProxyFDA(cfg.PROXYFDA, embed_dim=embed_dim, towers=towers))
    if "LDIFS" in cfg and cfg.LDIFS.ENABLE:
        regs.append(LDIFS(cfg.LDIFS, towers=towers))
    if "PACE" in cfg and cfg.PACE.ENABLE:
        regs.append(PACE(cfg.PACE, prompt_depth=prompt_depth))
    return regs
