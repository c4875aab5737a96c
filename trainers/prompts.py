"""Learnable prompt pieces the prompt learners share: the text context and its initialization,
the class prompts around it, and deep prompts."""
import torch
import torch.nn as nn

from clip_backbone.templates import clean_classname
from errors import ConfigError


def init_context(backbone, n_ctx, ctx_init, shape_prefix=()):
    """CoOp's context vectors and the text they stand for: the embeddings of the CTX_INIT
    words (their number sets n_ctx, as the reference counts them), or N(0, 0.02) noise behind
    "X X ... X". Created in the backbone's dtype, as the references (fp16 in PREC fp16)."""
    if ctx_init:
        ctx_init = ctx_init.replace("_", " ")
        tokens = backbone.tokenize([ctx_init])
        n_ctx = len(ctx_init.split(" "))
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


def init_truncated_context(backbone, n_ctx, ctx_init):
    """The context rule shared by MaPLe, IVLP and PromptSRC: with CTX_INIT and N_CTX <= 4 the
    first N_CTX token embeddings of the init words are learned, while the prompt text keeps
    *all* the words (so "a photo of a" with N_CTX 2 learns "a photo" and keeps "of a" fixed);
    otherwise N(0, 0.02) and "X ... X"."""
    if ctx_init and n_ctx <= 4:
        ctx_init = ctx_init.replace("_", " ")
        with torch.no_grad():
            ctx = backbone.embed(backbone.tokenize([ctx_init]))[0, 1:1 + n_ctx].clone()
        return ctx, ctx_init
    if n_ctx < 1:
        raise ConfigError(f"The number of text context tokens must be >= 1, got {n_ctx}.")
    ctx = torch.empty(n_ctx, backbone.text_width, dtype=backbone.dtype)
    nn.init.normal_(ctx, std=0.02)
    return ctx, " ".join(["X"] * n_ctx)


def check_depth(name, depth, num_layers, minimum):
    if not minimum <= depth <= num_layers:
        raise ConfigError(f"{name} must be in [{minimum}, {num_layers}] for this backbone, got {depth}.")


def deep_prompts(n_layers, n_ctx, width):
    """One (n_ctx, width) prompt per deep layer, ~N(0, 0.02), fp32 in every precision (the
    references create them without a dtype; they are cast where they enter a tower)."""
    return nn.ParameterList(
        [nn.Parameter(nn.init.normal_(torch.empty(n_ctx, width), std=0.02)) for _ in range(n_layers)]
    )


class ClassPrompts(nn.Module):
    """Token ids and the fixed (non-learnable) embeddings around the context slots for one
    class set: the text ``f"{prompt_prefix} {template.format(name)}"`` per class (CoOp's
    ``"{}."``; TCP's e.g. ``"{}, a type of pet."``). Buffers are non-persistent: they are
    rebuilt from the class names, never saved."""

    def __init__(self, backbone, classnames, prompt_prefix, n_ctx, template="{}."):
        super().__init__()
        names = [clean_classname(c) for c in classnames]
        self.name_lens = [len(backbone.tokenizer.encode(n)) for n in names]
        tokens = backbone.tokenize([f"{prompt_prefix} {template.format(n)}" for n in names])
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
