"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts. Text prompts are
learned at the input and at blocks 1..PROMPT_DEPTH-1; each layer's vision
prompt is a linear projection (text width -> vision width) of that layer's
text prompt. Vision prompts are appended before ``ln_pre`` and, deeper,
replace the last N_CTX tokens."""
import copy

import torch
import torch.nn as nn

from errors import ConfigError
from regularizers.config import ensure

from .base import PromptTrainer
from .models import VLPromptCLIP
from .prompts import ClassPrompts, check_depth, deep_prompts, init_truncated_context
from .registry import register_trainer


def add_maple_config(cfg):
    """cfg.TRAINER.MAPLE: coupled vision-language prompts (text prompts projected to the
    vision width)."""
    c = ensure(cfg.TRAINER, "MAPLE", type(cfg)())
    ensure(c, "N_CTX", 2)  # learnable tokens per layer, in both towers
    # init words; only the first N_CTX token embeddings are learned and, as in the reference,
    # the prompt text keeps all the words ("a photo" learned, "of a" fixed)
    ensure(c, "CTX_INIT", "a photo of a")
    ensure(c, "PREC", "fp16")  # fp16, fp32 or amp; always fp32 on CPU
    ensure(c, "PROMPT_DEPTH", 9)  # prompted layers (>= 1): the input plus blocks 1..DEPTH-1


class MultiModalPromptLearner(nn.Module):
    def __init__(self, cfg, classnames, backbone):
        super().__init__()
        c = cfg.TRAINER.MAPLE
        if backbone.vision_width is None:
            raise ConfigError("MaPLe needs a ViT image tower.")
        check_depth("TRAINER.MAPLE.PROMPT_DEPTH", c.PROMPT_DEPTH,
                    min(backbone.text.num_layers, backbone.image.num_layers), 1)
        ctx, prefix = init_truncated_context(backbone, c.N_CTX, c.CTX_INIT)
        n_ctx = c.N_CTX
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f'Initial context: "{prefix}"')
        print(f"Number of MaPLe context words (tokens): {n_ctx}")
        text_width, vision_width = backbone.text_width, backbone.vision_width
        self.proj = nn.Linear(text_width, vision_width)
        if backbone.dtype == torch.float16:
            # The one fp16 layer of the reference learner (multimodal-prompt-learning
            # trainers/maple.py:104, `self.proj.half()`); the deep prompts and their
            # projections stay fp32 and are cast where they enter the towers.
            self.proj.half()
        self.ctx = nn.Parameter(ctx)
        self.compound_prompts_text = deep_prompts(c.PROMPT_DEPTH - 1, n_ctx, text_width)
        # The reference deep-copies one freshly initialised layer, so all deep
        # projections start equal.
        projection = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(projection) for _ in range(c.PROMPT_DEPTH - 1)]
        )
        self.classes = ClassPrompts(backbone, classnames, prefix, n_ctx)

    def text_prompts(self):
        """Token embeddings with the shared context, and the deep text prompts."""
        return self.classes.assemble(self.ctx), list(self.compound_prompts_text)

    def vision_prompts(self):
        """The shallow vision prompt and the deep ones, projected from the text side."""
        deep = [proj(p) for proj, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


@register_trainer(add_config=add_maple_config)
class MaPLe(PromptTrainer):
    METHOD_NODE = "MAPLE"
    CHECKPOINT_NAME = "MultiModalPromptLearner"
    PROMPTED_TOWERS = ("text", "image")

    def prompt_depth(self):
        return self.method_cfg.PROMPT_DEPTH

    def build_custom_clip(self, cfg, classnames, backbone):
        return VLPromptCLIP(backbone, MultiModalPromptLearner(cfg, classnames, backbone))
