"""CoOp (Zhou et al., IJCV 2022): learnable context words shared by all classes
(or class-specific with CSC), class name at the end, middle or front."""
import torch.nn as nn

from regularizers.config import ensure

from .base import PromptTrainer
from .models import PromptCLIP
from .prompts import ClassPrompts, init_context
from .registry import register_trainer


def add_coop_config(cfg):
    """cfg.TRAINER.COOP (also read by ZeroshotCLIP for PREC, as the peers' zeroshot.sh, and
    by KgCoOp, which adds W). Names and defaults are the peers'."""
    c = ensure(cfg.TRAINER, "COOP", type(cfg)())
    ensure(c, "N_CTX", 16)  # number of learnable context tokens
    ensure(c, "CSC", False)  # class-specific context (one context per class)
    ensure(c, "CTX_INIT", "")  # init words, e.g. "a photo of a" (sets N_CTX to its length)
    ensure(c, "PREC", "fp16")  # fp16, fp32 or amp; always fp32 on CPU
    ensure(c, "CLASS_TOKEN_POSITION", "end")  # end, middle or front


class PromptLearner(nn.Module):
    """``context``: ``(ctx, prompt_prefix, n_ctx)`` made by another rule than CoOp's (ProGrad's
    initialization); ``template``: the text after the context (``ClassPrompts``)."""

    def __init__(self, cfg, classnames, backbone, context=None, template="{}."):
        super().__init__()
        c = cfg.TRAINER.COOP
        if c.CSC and c.CTX_INIT:
            print("Note: CTX_INIT given, so the context is shared by all classes (CSC "
                  "applies to random init only, as in the reference CoOp)")
        shape = (len(classnames),) if c.CSC and not c.CTX_INIT else ()
        ctx, prefix, n_ctx = context or init_context(backbone, c.N_CTX, c.CTX_INIT, shape)
        print(f'Initial context: "{prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        self.classes = ClassPrompts(backbone, classnames, prefix, n_ctx, template)
        self.position = c.CLASS_TOKEN_POSITION

    def forward(self, noise=None):
        """Class prompts; ``noise`` (a hook's ``prompt_noise``) perturbs the context, per
        class, before it is put in place at whatever position."""
        ctx = self.ctx if noise is None else noise(self.ctx, 0, len(self.classes))
        return self.classes.assemble(ctx, self.position)


class CoOpCLIP(PromptCLIP):
    def encode_text_features(self, hooks=None):
        learner = self.prompt_learner
        noise = hooks.prompt_noise if hooks is not None else None
        return self.backbone.text(learner(noise), learner.classes.tokenized_prompts, hooks=hooks)


@register_trainer(add_config=add_coop_config)
class CoOp(PromptTrainer):
    METHOD_NODE = "COOP"
    CHECKPOINT_NAME = "prompt_learner"

    def build_custom_clip(self, cfg, classnames, backbone):
        return CoOpCLIP(backbone, PromptLearner(cfg, classnames, backbone))
