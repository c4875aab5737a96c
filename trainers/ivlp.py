"""IVLP (independent vision-language prompting, from the MaPLe and PromptSRC
repositories): deep prompts learned separately in each tower. Text prompts
sit at the input and replace tokens 1..N_CTX_TEXT at blocks
1..PROMPT_DEPTH_TEXT-1; vision prompts are appended before ``ln_pre`` and
replace the last N_CTX_VISION tokens at blocks 1..PROMPT_DEPTH_VISION-1."""
import torch
import torch.nn as nn

from errors import ConfigError
from regularizers.config import ensure

from .base import PromptTrainer
from .models import VLPromptCLIP
from .prompts import ClassPrompts, check_depth, deep_prompts, init_truncated_context
from .registry import register_trainer


def add_vl_prompt_keys(node, n_ctx):
    """The keys IVLP and PromptSRC share (their prompt learner is one class)."""
    ensure(node, "N_CTX_VISION", n_ctx)  # learnable vision tokens per layer
    ensure(node, "N_CTX_TEXT", n_ctx)  # learnable text tokens per layer
    ensure(node, "CTX_INIT", "a photo of a")  # text init words (same N_CTX rule as MaPLe)
    ensure(node, "PREC", "fp16")  # fp16, fp32 or amp; always fp32 on CPU
    ensure(node, "PROMPT_DEPTH_VISION", 9)  # prompted vision layers (0 = no vision prompts)
    ensure(node, "PROMPT_DEPTH_TEXT", 9)  # prompted text layers (>= 1)
    return node


def add_ivlp_config(cfg):
    """cfg.TRAINER.IVLP: independent deep prompts in each tower."""
    add_vl_prompt_keys(ensure(cfg.TRAINER, "IVLP", type(cfg)()), n_ctx=2)


class VLPromptLearner(nn.Module):
    """Independent text and vision prompts; ``node`` is the trainer's cfg node
    (IVLP or PROMPTSRC, which share these keys)."""

    def __init__(self, node, classnames, backbone):
        super().__init__()
        check_depth("PROMPT_DEPTH_TEXT", node.PROMPT_DEPTH_TEXT, backbone.text.num_layers, 1)
        depth_vision = node.PROMPT_DEPTH_VISION
        if depth_vision > 0:
            if backbone.vision_width is None:
                raise ConfigError("Vision prompts (PROMPT_DEPTH_VISION > 0) need a ViT image tower.")
            check_depth("PROMPT_DEPTH_VISION", depth_vision, backbone.image.num_layers, 0)
            if node.N_CTX_VISION < 1:
                raise ConfigError("N_CTX_VISION must be >= 1 when PROMPT_DEPTH_VISION > 0.")
            width = backbone.vision_width
            self.ctx_vision = nn.Parameter(nn.init.normal_(torch.empty(node.N_CTX_VISION, width), std=0.02))
            self.deep_ctx_vision = deep_prompts(depth_vision - 1, node.N_CTX_VISION, width)
        else:
            self.ctx_vision, self.deep_ctx_vision = None, nn.ParameterList()
        n_ctx = node.N_CTX_TEXT
        self.deep_ctx_text = deep_prompts(node.PROMPT_DEPTH_TEXT - 1, n_ctx, backbone.text_width)
        ctx, prefix = init_truncated_context(backbone, n_ctx, node.CTX_INIT)
        print("Independent V-L design")
        print(f'Initial text context: "{prefix}"')
        print(f"Number of context words (tokens) for Language prompting: {n_ctx}")
        print(f"Number of context words (tokens) for Vision prompting: "
              f"{node.N_CTX_VISION if depth_vision > 0 else 0}")
        self.ctx = nn.Parameter(ctx)
        self.classes = ClassPrompts(backbone, classnames, prefix, n_ctx)

    def text_prompts(self):
        return self.classes.assemble(self.ctx), list(self.deep_ctx_text)

    def vision_prompts(self):
        return self.ctx_vision, list(self.deep_ctx_vision)


@register_trainer(add_config=add_ivlp_config)
class IVLP(PromptTrainer):
    METHOD_NODE = "IVLP"
    CHECKPOINT_NAME = "VLPromptLearner"

    def prompted_towers(self):
        return ("text", "image") if self.method_cfg.PROMPT_DEPTH_VISION > 0 else ("text",)

    def prompt_depth(self):
        return max(self.method_cfg.PROMPT_DEPTH_TEXT, self.method_cfg.PROMPT_DEPTH_VISION)

    def build_custom_clip(self, cfg, classnames, backbone):
        return VLPromptCLIP(backbone, VLPromptLearner(cfg.TRAINER.IVLP, classnames, backbone))
