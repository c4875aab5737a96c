"""CoOp (Zhou et al., IJCV 2022): learnable context words shared by all classes
(or class-specific with CSC), class name at the end, middle or front."""
import torch
import torch.nn as nn

from dassl_compat import TRAINER_REGISTRY
from errors import ConfigError

from .base import PromptCLIP, PromptTrainer
from .templates import clean_classname


def init_context(backbone, n_ctx, ctx_init, shape_prefix=()):
    """Context vectors and the text they stand for: the embeddings of the
    CTX_INIT words, or N(0, 0.02) noise behind "X X ... X"."""
    if ctx_init:
        ctx_init = ctx_init.replace("_", " ")
        tokens = backbone.tokenize([ctx_init])
        n_ctx = len(ctx_init.split(" "))  # words, as the reference counts them
        with torch.no_grad():
            ctx = backbone.embed(tokens)[0, 1:1 + n_ctx].clone()
        if shape_prefix:
            ctx = ctx.expand(*shape_prefix, -1, -1).clone()
        return ctx, ctx_init, n_ctx
    if n_ctx < 1:
        raise ConfigError(f"N_CTX must be >= 1 when CTX_INIT is empty, got {n_ctx}.")
    ctx = torch.empty(*shape_prefix, n_ctx, backbone.text_width, dtype=backbone.dtype)
    nn.init.normal_(ctx, std=0.02)
    return ctx, " ".join(["X"] * n_ctx), n_ctx


class ClassPrompts(nn.Module):
    """Token ids and the fixed (non-learnable) embeddings around the context
    slots for one class set. Buffers are non-persistent: they are rebuilt
    from the class names, never saved."""

    def __init__(self, backbone, classnames, prompt_prefix, n_ctx):
        super().__init__()
        names = [clean_classname(c) for c in classnames]
        self.name_lens = [len(backbone.tokenizer.encode(n)) for n in names]
        tokens = backbone.tokenize([f"{prompt_prefix} {n}." for n in names])
        with torch.no_grad():
            embedding = backbone.embed(tokens)
        self.n_ctx = n_ctx
        self.register_buffer("tokenized_prompts", tokens, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1], persistent=False)  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:], persistent=False)

    def __len__(self):
        return self.tokenized_prompts.shape[0]

    def assemble(self, ctx, position="end"):
        """Token embeddings (n_cls, L, D) with ``ctx`` ((n_ctx, D) or (n_cls, n_ctx, D))."""
        n_cls = len(self)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        if position not in ("middle", "front"):
            raise ConfigError(
                f"CLASS_TOKEN_POSITION must be end, middle or front, got {position!r}."
            )
        half = self.n_ctx // 2
        prompts = []
        for i, name_len in enumerate(self.name_lens):
            name, rest = suffix[i:i + 1, :name_len], suffix[i:i + 1, name_len:]
            if position == "middle":
                parts = [prefix[i:i + 1], ctx[i:i + 1, :half], name, ctx[i:i + 1, half:], rest]
            else:
                parts = [prefix[i:i + 1], name, ctx[i:i + 1], rest]
            prompts.append(torch.cat(parts, dim=1))
        return torch.cat(prompts, dim=0)


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
    def encode_text_features(self):
        learner = self.prompt_learner
        n_ctx = learner.classes.n_ctx if learner.position == "end" else 0
        return self.backbone.text(learner(), learner.classes.tokenized_prompts, n_ctx=n_ctx)


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    METHOD_NODE = "COOP"
    CHECKPOINT_NAME = "prompt_learner"

    def build_custom_clip(self, cfg, classnames, backbone):
        return CoOpCLIP(backbone, PromptLearner(cfg, classnames, backbone))
