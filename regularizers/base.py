"""The one interface of the anti-forgetting regularizers, and their registry.

A regularizer is a module registered under its config node, peft style::

    @register_regularizer("LDIFS", add_config=add_ldifs_config)
    class LDIFS(Regularizer):
        needs = frozenset({"hidden"})
        def __init__(self, node, context): ...
        def forward(self, feats): return loss, {"ldifs_text": ...}

Its module lives in ``regularizers/`` (every module there is imported, so it registers
itself); ``cfg.<NODE>.ENABLE True`` switches it on for any trainer that can produce what it
``needs``, with no trainer code.

What the trainer's base class does with it, in order:

1. builds it, ``cls(cfg.<NODE>, context)``: the ``RegularizerContext`` says which towers the
   trainer prompts, how deep, the joint embedding width and, in a real run, the frozen CLIP
   with the class names and the dataset's hand template (``FrozenCLIP``), from which the
   regularizer computes the frozen features it owns (e.g. Proxy-FDA's frozen class text
   features under its templates);
2. registers ``optimizer()`` (the regularizer's own parameters, trained by its own loss term;
   checkpointed with it) and puts ``batch_sampler(labels)`` (if any) in the train loader;
3. checks the contract on one probe batch, before any training: every feature the regularizer
   ``needs`` (names, ``regularizers/features.py``) is produced for this trainer, every tower
   it acts on returns the hidden states asked for and routes its learned prompts through
   ``perturb``, and the regularizer's ``forward`` runs on the result. What fails is refused
   there, with the reason, as one error;
4. per step, asks the prompted forward pass for ``hidden_layers(depth)`` of each prompted
   tower and routes every learned prompt through ``perturb`` (only one regularizer may
   perturb prompts); runs a second noisy pass over the first ``second_pass_size(step, B)``
   samples when asked;
5. hands it a ``FeatureSets`` and adds the loss it returns to the method's loss; its gradient
   and its own optimizer's step are part of every update, whatever the method changes in
   the update (``PromptTrainer.adjust_gradients``); the summary items are logged.

The regularizers follow the model's train/eval mode; in eval mode ``perturb`` adds no noise.

The same interface carries plug-ins that change the method itself rather than regularize it
(DePT's second head, ``regularizers/dept.py``). Three optional hooks serve them:
``method_term_weights()`` reweights the method's own loss terms (the trainer multiplies each
named term of its ``StepLoss`` before anything is summed), ``scheduler(optimizer)`` gives the
plug-in's optimizer the run's LR schedule, and ``used_at_inference = True`` makes its
parameters part of the model: checkpointed, loaded for evaluation with the prompts, and
``inference_logits(logits, image_features)`` turns the method's evaluation logits into the
ones reported. A regularizer leaves all three at their defaults, and is then dropped at
inference (Proxy-FDA's generator).
"""
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from errors import ConfigError

from .features import FeatureSets  # noqa: F401  (re-exported: the regularizers' input)

TOWERS = ("text", "image")


class FrozenCLIP:
    """The frozen CLIP and the class set of a run, for regularizers that compute their own
    frozen features: ``backbone`` (a ``clip_backbone.CLIPBackbone``), ``classnames`` (clean,
    as they enter prompts) and ``template`` (the dataset's hand template, "... {} ...")."""

    def __init__(self, backbone, classnames, template):
        self.backbone, self.classnames, self.template = backbone, list(classnames), template

    def class_prompts(self, template=None):
        return [(template or self.template).replace("{}", c) for c in self.classnames]

    @torch.no_grad()
    def text_features(self, templates=None):
        """Frozen class text features [C, d] under the dataset template, or the normalized
        mean over ``templates`` (a list of "{}" templates)."""
        if not templates:
            return self.backbone.encode_prompts(self.class_prompts())
        feats = torch.stack([F.normalize(self.backbone.encode_prompts(self.class_prompts(t)),
                                         dim=-1) for t in templates])
        return F.normalize(feats.mean(0), dim=-1)

    @torch.no_grad()
    def text_hidden(self, layers):
        """Hidden states of the text tower over the class prompts, at ``layers``."""
        from clip_backbone import TowerHooks

        tokens = self.backbone.tokenize(self.class_prompts())
        hooks = TowerHooks(hidden_layers=tuple(layers))
        self.backbone.text(self.backbone.embed(tokens), tokens, hooks=hooks)
        return hooks.hidden


@dataclass
class RegularizerContext:
    """What a regularizer is built for: the towers the trainer's prompts change (a regularizer
    acts on these only), the number of prompted layers, the joint embedding width, and in a
    real run the frozen CLIP (None in unit tests, where features are handed in), and the
    training batch size."""

    towers: Sequence[str] = ("text",)
    prompt_depth: int = 1
    embed_dim: Optional[int] = None
    frozen: Optional[FrozenCLIP] = None
    batch_size: Optional[int] = None  # DATALOADER.TRAIN_X.BATCH_SIZE (None: unknown)
    optim: Optional[Any] = None  # the run's OPTIM node (None in unit tests)

    def __post_init__(self):
        self.towers = tuple(self.towers)
        unknown = [t for t in self.towers if t not in TOWERS]
        if unknown or not self.towers:
            raise ConfigError(f"towers must be a non-empty subset of {TOWERS}, got {self.towers}.")


class Regularizer(nn.Module):
    """Feature sets in, (loss, summary) out."""

    #: short name, also the prefix of the summary items (set by the subclass)
    name = "regularizer"
    #: its config node (set by ``register_regularizer``)
    node = None
    #: names of the FeatureSets fields this regularizer reads (set per instance from its config)
    needs = frozenset()
    #: True if learned prompts must go through ``perturb``
    perturbs_prompts = False

    def forward(self, feats: FeatureSets):
        """Return (loss: scalar tensor, summary: dict[str, float])."""
        raise NotImplementedError

    def optimizer(self):
        """The optimizer of the parameters its own loss term trains, or None."""
        return None

    def batch_sampler(self, labels):
        """A batch sampler for the train loader (lists of dataset indices), or None."""
        return None

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

    # ---- hooks of a plug-in that changes the method (module docstring); unused by default
    #: True: its parameters are part of the model (loaded for evaluation with the prompts,
    #: ``inference_logits`` applied); False: they serve training only and are not loaded
    used_at_inference = False

    def method_term_weights(self):
        """``{term name: factor}`` for the method's own loss terms (``StepLoss.terms``); a
        trainer whose loss lacks a named term is refused when the run is built."""
        return {}

    def scheduler(self, optimizer):
        """An LR scheduler for ``optimizer()`` (stepped with the prompts' one), or None."""
        return None

    def inference_logits(self, logits, image_features):
        """The evaluation logits, from the method's ``logits`` [B, C] over the evaluated
        classes and the batch's image features as the model's image tower returned them
        (only called where ``used_at_inference``)."""
        return logits

    def _get(self, feats, field_name):
        value = getattr(feats, field_name)
        if value is None:
            raise ValueError(
                f"{type(self).__name__} needs FeatureSets.{field_name}, but the trainer passed "
                f"None (fields it needs: {sorted(self.needs)})."
            )
        return value


#: config node -> (regularizer class, function adding the node's keys and defaults)
REGULARIZERS = {}


def register_regularizer(node, add_config):
    """Class decorator: register a ``Regularizer`` under its config node. ``add_config(cfg)``
    adds ``cfg.<node>`` with ``ENABLE False`` and its other keys (existing values kept)."""

    def register(cls):
        if node in REGULARIZERS and REGULARIZERS[node][0] is not cls:
            raise ValueError(f"A regularizer is already registered under {node}.")
        cls.node = node
        REGULARIZERS[node] = (cls, add_config)
        return cls

    return register


def add_regularizer_config(cfg):
    """Add every registered regularizer's config node to ``cfg``; values already there are
    kept."""
    for _, add_config in REGULARIZERS.values():
        add_config(cfg)
    return cfg


def enabled_nodes(cfg):
    """Config nodes of the registered regularizers switched on in ``cfg``."""
    return [node for node in REGULARIZERS if node in cfg and cfg[node].ENABLE]


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


def build_regularizers(cfg, embed_dim=None, towers=("text",), prompt_depth=1, frozen=None,
                       batch_size=None):
    """The regularizers switched on in ``cfg`` ([] when all are off), in registration order.

    ``embed_dim``: width d of the joint embedding. ``towers``: the towers the trainer's prompts
    change. ``prompt_depth``: number of prompted layers. ``frozen``: a ``FrozenCLIP`` in a real
    run. Whether a trainer can feed them is checked by the trainer (``PromptTrainer``), on a
    probe batch.
    """
    context = RegularizerContext(towers, prompt_depth, embed_dim, frozen, batch_size,
                                 cfg.get("OPTIM"))
    regs = [REGULARIZERS[node][0](cfg[node], context) for node in enabled_nodes(cfg)]
    perturbing = [reg.node for reg in regs if reg.perturbs_prompts]
    if len(perturbing) > 1:
        raise ConfigError(
            f"{' and '.join(perturbing)} both perturb the prompts; switch one of them off."
        )
    return regs
