"""CoOp (Zhou et al., IJCV 2022): learnable context words shared by all classes
(or class-specific with CSC), class name at the end, middle or front."""
import torch.nn as nn

from dassl_compat import TRAINER_REGISTRY

from .base import PromptTrainer
from .models import PromptCLIP
from .prompts import ClassPrompts, init_context


class PromptLearner(nn.Module):
    def __init__(self, cfg, classnames, backbone):
        super().__init__()
        c = cfg.TRAINER.COOP
        if c.CSC and c.CTX_INIT:
            print("Note: CTX_INIT given, so the context is shared by all classes (CSC "
                  "applies to random init only, as in the reference CoOp)")
        shape = (len(classnames),) if c.CSC and not c.CTX_INIT else ()
        ctx, prefix, n_ctx = init_context(backbone, c.N_CTX, c.CTX_INIT, shape)
        print(f'Initial context: "{prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        self.classes = ClassPrompts(backbone, classnames, prefix, n_ctx)
        self.position = c.CLASS_TOKEN_POSITION

    def forward(self):
        return self.classes.assemble(self.ctx, self.position)


class CoOpCLIP(PromptCLIP):
    def encode_text_features(self, hooks=None):
        learner = self.prompt_learner
        # the context is contiguous (what a prompt noise perturbs) only at the end position
        n_ctx = learner.classes.n_ctx if learner.position == "end" else 0
        return self.backbone.text(learner(), learner.classes.tokenized_prompts, n_ctx=n_ctx,
                                  hooks=hooks)


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    METHOD_NODE = "COOP"
    CHECKPOINT_NAME = "prompt_learner"

    def build_custom_clip(self, cfg, classnames, backbone):
        return CoOpCLIP(backbone, PromptLearner(cfg, classnames, backbone))
