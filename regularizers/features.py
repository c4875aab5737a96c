"""The features a regularizer reads, produced by name.

A regularizer lists the names it ``needs``; at every training step the trainer produces
exactly those, each by its registered producer, and hands them over in one ``FeatureSets``.
A producer is a function of the step (``StepContext``: the trainer, the batch, the method's
loss and forward-pass features, the hooks that pass ran with). A new feature is one function,
registered from any module::

    @register_feature("image_tokens", "prompted image tokens of the last block, [B, T, D]")
    def image_tokens(ctx):
        ...
        return value

A producer that cannot serve a trainer raises ``FeatureUnavailable`` with the reason; the
trainer checks every needed feature when the run is built, on one probe batch, and refuses the
regularizer there with that reason (one error line), never in the middle of a training.

The shipped features, in the order they are produced:

* ``logits`` [B, C] and ``labels`` [B] of the step (always handed over);
* ``text``: prompted class text features of the training classes, [C, d] (CoCoOp: the
  per-image sets averaged);
* ``text_per_image``: [B, C, d], each image's own raw class text features, where the
  method's class text depends on the image (CoCoOp); None where it does not (one class set,
  ``text``, for the whole batch);
* ``text_frozen``: frozen CLIP text features of the same classes under the dataset's hand
  template, [C, d], computed once per run;
* ``image``: the batch's image features as the method's forward computed them, [B, d]
  (prompted where the trainer prompts the image tower; not necessarily L2-normalized);
* ``image_frozen``: frozen CLIP image features of the same augmented images, [B, d]: the
  method's own if it computed them (PromptSRC), the step's image features where the image
  tower is not prompted (they are the frozen ones), else one extra no-grad forward;
* ``hidden``: per prompted tower, (prompted hidden states, frozen hidden states), each a list
  over the regularizers' ``hidden_layers(depth)`` of batch-first [N, T, D] tensors; the frozen
  text list is None (the class prompts' frozen states belong to the regularizer);
* ``logits_second_pass``: logits of a second, independently noised forward pass over the
  first ``second_pass_size(step, B)`` samples (None on a step where that is 0).

Floating-point features come in the dtype the method computed them in; regularizers compute
their losses in float32 (``regularizers.fda.full_precision``).
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict

import torch


class FeatureUnavailable(Exception):
    """A producer cannot serve this trainer; the message says why."""


@dataclass(frozen=True)
class Feature:
    name: str
    produce: Callable[["StepContext"], Any]
    doc: str = ""


#: feature name -> Feature, in registration order (the order features are produced in)
FEATURES: Dict[str, Feature] = {}


def register_feature(name, doc=""):
    """Function decorator: register ``produce(ctx)`` as the producer of feature ``name``."""

    def register(produce):
        if name in FEATURES and FEATURES[name].produce is not produce:
            raise ValueError(f"A feature named {name!r} is already registered.")
        FEATURES[name] = Feature(name, produce, doc or (produce.__doc__ or "").strip())
        return produce

    return register


def unregister_feature(name):
    FEATURES.pop(name, None)


class FeatureSets:
    """The features handed to the regularizers in one step, as attributes by name.

    A registered feature that was not produced reads as None; any other name is an
    AttributeError (a typo in a regularizer fails loudly)."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __getattr__(self, name):
        if name in FEATURES:
            return None
        raise AttributeError(f"No feature named {name!r}; registered: {', '.join(FEATURES)}.")

    def __repr__(self):
        return f"FeatureSets({', '.join(sorted(self.__dict__))})"


@dataclass
class StepContext:
    """One training step as the producers see it. ``trainer`` is the ``PromptTrainer``;
    ``features`` the ``Features`` of the method's forward pass; ``hooks`` the
    ``ForwardHooks`` it ran with. ``produced`` memoizes this step's features."""

    trainer: Any
    images: torch.Tensor
    labels: torch.Tensor
    features: Any
    hooks: Any
    produced: Dict[str, Any] = field(default_factory=dict)

    @property
    def backbone(self):
        return self.trainer.model.backbone

    def get(self, name):
        """Feature ``name`` of this step (produced once)."""
        if name not in self.produced:
            if name not in FEATURES:
                raise FeatureUnavailable(
                    f"no feature named {name!r} is registered (registered: "
                    f"{', '.join(FEATURES)})")
            self.produced[name] = FEATURES[name].produce(self)
        return self.produced[name]


def produce_features(ctx, names):
    """A FeatureSets with ``names`` (in registration order, so that producers that draw random
    numbers always run in the same order), plus the step's logits and labels."""
    order = list(FEATURES)
    unknown = sorted(set(names) - set(order))
    if unknown:
        raise FeatureUnavailable(f"no feature named {', '.join(unknown)} is registered "
                                 f"(registered: {', '.join(order)})")
    wanted = [n for n in order if n in set(names) | {"logits", "labels"}]
    return FeatureSets(**{name: ctx.get(name) for name in wanted})


# ----------------------------------------------------------------- the shipped producers
@register_feature("logits", "logits of the step's forward pass, [B, C]")
def _logits(ctx):
    return ctx.features.logits


@register_feature("labels", "labels of the batch, [B]")
def _labels(ctx):
    return ctx.labels


def _from_forward(ctx, name, what):
    value = getattr(ctx.features, name, None)
    if value is None:
        raise FeatureUnavailable(f"its forward pass computes no {what}")
    return value


@register_feature("text", "prompted class text features of the training classes, [C, d]")
def _text(ctx):
    return _from_forward(ctx, "text", "class text features")


@register_feature("text_per_image", "each image's own class text features, [B, C, d], or None")
def _text_per_image(ctx):
    return getattr(ctx.features, "text_per_image", None)


@register_feature("text_frozen", "frozen class text features under the dataset template, [C, d]")
def _text_frozen(ctx):
    return ctx.trainer.frozen_text_features()


@register_feature("image", "the batch's image features as the method computed them, [B, d]")
def _image(ctx):
    return _from_forward(ctx, "image", "image features")


@register_feature("image_frozen", "frozen CLIP image features of the batch, [B, d]")
def _image_frozen(ctx):
    if getattr(ctx.features, "image_frozen", None) is not None:
        return ctx.features.image_frozen
    if ctx.trainer.image_features_frozen() and ctx.features.image is not None:
        return ctx.features.image.detach()  # the image tower is not prompted: these are frozen
    with torch.no_grad():
        return ctx.backbone.image(ctx.images)


@register_feature("hidden", "per prompted tower: (prompted, frozen) hidden states")
def _hidden(ctx):
    from clip_backbone import TowerHooks

    trainer, hidden = ctx.trainer, {}
    for tower in trainer.prompted_towers():
        prompted = getattr(ctx.hooks, tower).hidden
        expected = len(trainer.hidden_layers[tower])
        if len(prompted) != expected:
            raise FeatureUnavailable(
                f"its {tower} tower returned {len(prompted)} of {expected} hidden states: its "
                f"forward pass does not hand the hooks to that tower")
        frozen = None  # the text side: the class prompts' frozen states are the regularizer's
        if tower == "image":
            hooks = TowerHooks(hidden_layers=tuple(trainer.hidden_layers["image"]))
            with torch.no_grad():
                ctx.backbone.image(ctx.images, hooks=hooks)
            frozen = hooks.hidden
        hidden[tower] = (prompted, frozen)
    return hidden


@register_feature("logits_second_pass", "logits of a second noisy pass over the first samples")
def _logits_second_pass(ctx):
    trainer = ctx.trainer
    n = max(r.second_pass_size(trainer.step_count, len(ctx.images)) for r in trainer.regularizers)
    if not n:
        return None
    return trainer.model.forward_features(ctx.images[:n], trainer.forward_hooks(hidden=False)).logits

