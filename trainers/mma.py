"""MMA, the multi-modal adapter (Yang et al., CVPR 2024; ZjjConan/Multi-Modal-Adapter).

The prompts are fixed ("TEXT_CTX_INIT {class}."); what is learned are bottleneck adapters on
layers ADAPTER_START..ADAPTER_END of both towers. At layer k each tower's adapter maps
LN(block input) down to ADAPTER_DIM, through a projection shared by the two towers at that
layer (Linear + ReLU), and up again; ADAPTER_SCALE times that is added to block k's output
(``block_adapter`` hook, clip_backbone/encoders.py). As in the reference, gradients flow
into the adapters as if the scale were 1 and back into the tower scaled by it (its gradient
scale layers). Layer 0, where the scripts never put one, adapts the text token embeddings and
the image tokens after ``ln_pre``, without LayerNorm or gradient scaling (the reference's).
"""
from collections import OrderedDict

import torch
import torch.nn as nn

from errors import ConfigError
from regularizers.config import ensure

from .base import PromptTrainer
from .models import PromptCLIP
from .prompts import ClassPrompts
from .registry import register_trainer


def add_mma_config(cfg):
    """cfg.TRAINER.MMADAPTER; names and defaults are the reference's train.py (its configs
    set TEXT_CTX_INIT "a photo of a", ADAPTER_START 5, ADAPTER_SCALE 0.001)."""
    c = ensure(cfg.TRAINER, "MMADAPTER", type(cfg)())
    ensure(c, "TEXT_CTX_INIT", "")  # fixed words before the class name (nothing is learned)
    ensure(c, "PREC", "amp")  # fp16, fp32 or amp; always fp32 on CPU
    ensure(c, "ADAPTER_START", 4)  # first adapted layer (0 = the embeddings, k = block k)
    ensure(c, "ADAPTER_END", 12)  # last adapted layer (inclusive; <= the towers' depth)
    ensure(c, "ADAPTER_DIM", 32)  # bottleneck width, that of the shared projection
    ensure(c, "ADAPTER_SCALE", 0.1)  # weight of the adapters' residual


class GradientScale(torch.autograd.Function):
    """The identity, whose backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def adapters(width, dim, layers, depth, shared=False):
    """One adapter per layer in ``layers`` (index = layer, None elsewhere, ``depth + 1``
    entries): down (Linear + ReLU) and up, or for ``shared`` one Linear(dim, dim) + ReLU.
    Kaiming-normal (fan_out) weights and zero biases, as the reference (which at ADAPTER_DIM
    equal to a tower's width builds a module its forward cannot call; ours keeps down/up)."""
    def make():
        if shared:
            return nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
        down = nn.Sequential(nn.Linear(width, dim), nn.ReLU())
        return nn.Sequential(OrderedDict([("down", down), ("up", nn.Linear(dim, width))]))
    modules = nn.ModuleList([make() if k in layers else None for k in range(depth + 1)])
    for m in modules.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return modules


class AdapterLearner(nn.Module):
    """The text, vision and shared adapters, and the fixed class prompts."""

    def __init__(self, cfg, classnames, backbone):
        super().__init__()
        c = cfg.TRAINER.MMADAPTER
        if backbone.vision_width is None:
            raise ConfigError("MMA adapts a ViT image tower; this backbone has none.")
        text_depth, vision_depth = backbone.text.num_layers, backbone.image.num_layers
        depth = min(text_depth, vision_depth)
        if not 0 <= c.ADAPTER_START <= c.ADAPTER_END <= depth or c.ADAPTER_DIM < 1 \
                or c.ADAPTER_SCALE == 0:
            raise ConfigError(
                f"TRAINER.MMADAPTER needs 0 <= ADAPTER_START <= ADAPTER_END <= {depth} (the "
                f"towers' depth), ADAPTER_DIM >= 1 and ADAPTER_SCALE != 0; got "
                f"{c.ADAPTER_START}, {c.ADAPTER_END}, {c.ADAPTER_DIM}, {c.ADAPTER_SCALE}.")
        layers, dim = range(c.ADAPTER_START, c.ADAPTER_END + 1), c.ADAPTER_DIM
        self.text_adapter = adapters(backbone.text_width, dim, layers, text_depth)
        self.visual_adapter = adapters(backbone.vision_width, dim, layers, vision_depth)
        self.shared_adapter = adapters(dim, dim, layers, vision_depth, shared=True)
        if backbone.dtype == torch.float16:
            self.half()  # the reference's adapters are fp16 in PREC fp16
        self.scale = float(c.ADAPTER_SCALE)
        print(f'Fixed text prompt: "{c.TEXT_CTX_INIT} {{class}}."')
        print(f"Adapted layers: {c.ADAPTER_START}..{c.ADAPTER_END} of both towers, "
              f"bottleneck {dim}, scale {self.scale}")
        self.classes = ClassPrompts(backbone, classnames, c.TEXT_CTX_INIT, n_ctx=0)

    def text_embeddings(self):
        return torch.cat([self.classes.token_prefix, self.classes.token_suffix], dim=1)

    def block_adapter(self, tower):
        """The backbone's ``block_adapter`` for ``tower`` ("text" or "image")."""
        own = self.text_adapter if tower == "text" else self.visual_adapter

        def residual(x, layer, block):
            if layer >= len(own) or own[layer] is None:
                return None
            y = x if block is None else block.ln_1(GradientScale.apply(x, self.scale))
            y = own[layer].up(self.shared_adapter[layer](own[layer].down(y))) * self.scale
            return y if block is None else GradientScale.apply(y, 1.0 / self.scale)

        return residual


class MMACLIP(PromptCLIP):
    def encode_text_features(self, hooks=None):
        learner = self.prompt_learner
        return self.backbone.text(learner.text_embeddings(), learner.classes.tokenized_prompts,
                                  hooks=hooks, block_adapter=learner.block_adapter("text"))

    def encode_image_features(self, images, hooks=None):
        return self.backbone.image(images, hooks=hooks,
                                   block_adapter=self.prompt_learner.block_adapter("image"))


@register_trainer(add_config=add_mma_config)
class MultiModalAdapter(PromptTrainer):
    """MMA: cross-entropy on the adapted CLIP's logits; both towers' features are learned."""

    METHOD_NODE = "MMADAPTER"
    CHECKPOINT_NAME = "adapter_learner"
    PROMPTED_TOWERS = ("text", "image")

    def prompt_depth(self):
        """PACE's noise schedule: the residual added at layer k gets layer k's sigma."""
        return self.method_cfg.ADAPTER_END + 1

    def build_custom_clip(self, cfg, classnames, backbone):
        return MMACLIP(backbone, AdapterLearner(cfg, classnames, backbone))
