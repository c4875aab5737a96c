"""Text and image towers of an open_clip CLIP, with prompt hooks.

Both towers run open_clip's own ``resblocks`` one by one; nothing of open_clip is
subclassed or copied. Inputs and outputs are batch-first (N, L, D); inside, the blocks run
sequence-first (L, N, D), as in the reference repositories: one permute per tower, and the
blocks' attention is told that layout (``_sequence_first``). Batch-first blocks make
PyTorch's attention transpose inside every block, and its packed input projection then runs
on a strided view: slower, and in fp16 not the references' rounding.

Prompt hooks, as in CoOp / MaPLe / IVLP / PromptSRC:

* text, shallow: the caller passes token *embeddings* that already contain the learned
  context (the prompt learner builds them);
* text, deep: ``deep_prompts[i]`` (``(n, D)`` or ``(N, n, D)``) replaces tokens ``1 : 1+n``
  before block ``i + 1``; the causal mask and the end-of-text position are unchanged;
* vision, shallow: ``shallow_prompt`` (``(n, D)`` or ``(B, n, D)``) is appended after the
  positional embedding and *before* ``ln_pre``;
* vision, deep: ``deep_prompts[i]`` replaces the last ``n`` tokens before block ``i + 1``.

``None`` entries in ``deep_prompts`` leave that layer alone.

Adapter hook (MMA's multi-modal adapters): ``block_adapter(x, layer, block)`` is called with
the input ``x`` of block ``layer`` (1-based, sequence-first (L, N, D)) and the block itself
(an adapter may use its LayerNorm); the tensor it returns, of ``x``'s shape, is a residual
added to that block's output (``None``: nothing added). It is also called once with
``layer`` 0 and ``block`` None on the tokens entering the tower, batch-first (N, L, D): the
text tower's token embeddings as passed (before the positional embedding), the image tower's
tokens after ``ln_pre``; what it returns is added there. It must act on each token alone
(the text tower may run truncated). Without it a forward is exactly what it was.

The text tower runs only up to the longest end-of-text token of the prompts it encodes.
Its attention is causal, so the output at the end-of-text token (the one that is pooled)
does not depend on the tokens after it: the result is the full-length one, at a fraction of
the cost (CoOp's prompts are 10-20 tokens of 77). The positional embedding and the causal
mask are sliced to that length. Towers without a causal mask, or pooled elsewhere than at
the end-of-text token, run at full length, and so does a pass that returns hidden states
(LDIFS compares every token position).

Regularizers reach into a forward through a ``TowerHooks`` the caller passes with it (never
through state left on the modules): the hidden states to collect and a noise to apply to
every learned prompt and every adapter residual, the learned contributions (PACE).

Weight adapters (LoRA) reach the attention of a block the same way, through the
``adapter`` argument of one forward call: ``adapter(layer, noise)`` returns None (block
``layer`` runs as open_clip's, untouched) or ``project(name, x, weight, bias)``, which
computes the block's projection ``name`` ("q", "k", "v", or "o": the output) of ``x`` (L, N, D) from
its frozen ``weight`` and ``bias`` (``F.linear(x, weight, bias)`` is the block's own).
Such a block's self-attention is then computed here, as ``nn.MultiheadAttention`` does it,
but with the three input projections as separate products (as the references' LoRA
attention does). ``noise`` is the pass's ``TowerHooks.prompt_noise``, for an adapter that
perturbs what it adds. The towers' modules are never changed: every call without an
``adapter`` (the regularizers' frozen features, their frozen hidden states, zero-shot
features) is pre-trained CLIP, whatever a learner adapts.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from errors import ConfigError


@dataclass
class TowerHooks:
    """What a regularizer asks of one forward pass of one tower.

    ``hidden_layers``: indices of hidden states to collect (0 = the embedding entering block
    1, k = the output of block k); the pass fills ``hidden`` with them, batch-first [N, T, D].
    ``prompt_noise(prompt, layer, batch_size)``: applied to every learned prompt before it
    enters, as [batch_size, n, D], and to every adapter residual before it is added, as
    [batch_size, L, D]; ``layer`` is the index of the hidden state it changes (0 = the
    embedding entering block 1, k = the output of block k; PACE).
    """

    hidden_layers: Sequence[int] = ()
    prompt_noise: Optional[Callable] = None
    hidden: List[torch.Tensor] = field(default_factory=list)


NO_HOOKS = TowerHooks()


def _sequence_first(transformer):
    """Make open_clip's blocks take (L, N, D): their attention reads ``batch_first`` at
    every call, and open_clip's own ``Transformer.forward`` transposes accordingly, so the
    model's own ``encode_text``/``encode_image`` keep working."""
    transformer.batch_first = False
    for block in transformer.resblocks:
        attn = getattr(block, "attn", None)
        if isinstance(attn, nn.MultiheadAttention):
            attn.batch_first = False
        else:
            raise ConfigError(
                f"Unsupported open_clip block attention {type(attn).__name__}; prompt "
                "learners need the OpenAI-style towers (nn.MultiheadAttention)."
            )


def _batched(prompt, batch):
    """(n, D) or (batch, n, D) -> (batch, n, D)."""
    return prompt.unsqueeze(0).expand(batch, -1, -1) if prompt.dim() == 2 else prompt


def _add_residual(x, residual, layer, hooks, sequence_first):
    """``x + residual`` (an adapter's output; ``None``: ``x``), the residual through the
    hooks' noise, which takes it batch-first."""
    if residual is None:
        return x
    if hooks.prompt_noise is not None:
        if sequence_first:
            residual = residual.permute(1, 0, 2)
        residual = hooks.prompt_noise(residual, layer, residual.shape[0])
        if sequence_first:
            residual = residual.permute(1, 0, 2)
    return x + residual


def _adapted_attention(attn, x, attn_mask, project):
    """``nn.MultiheadAttention``'s self-attention of ``x`` (L, N, D), sequence-first, need no
    weights, with each projection computed by ``project`` (see the module docstring)."""
    length, batch, width = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    weights = attn.in_proj_weight.split(width)
    biases = attn.in_proj_bias.split(width) if attn.in_proj_bias is not None else (None,) * 3
    q, k, v = (project(name, x, w, b).view(length, batch * heads, head_dim).transpose(0, 1)
               .view(batch, heads, length, head_dim)
               for name, w, b in zip("qkv", weights, biases))
    if attn_mask is not None:
        attn_mask = attn_mask.to(x.dtype).unsqueeze(0).unsqueeze(0)  # as open_clip's block
    out = F.scaled_dot_product_attention(q, k, v, attn_mask, 0.0, False)
    out = out.permute(2, 0, 1, 3).contiguous().view(length, batch, width)
    return project("o", out, attn.out_proj.weight, attn.out_proj.bias)


def _adapted_block(block, x, attn_mask=None, project=None):
    """open_clip's ``ResidualAttentionBlock.forward`` (self-attention) with the attention
    computed by ``_adapted_attention``."""
    x = x + block.ls_1(_adapted_attention(block.attn, block.ln_1(x), attn_mask, project))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _run_blocks(blocks, x, attn_mask, deep_prompts, replace, hooks, use_checkpoint,
                block_adapter=None, adapter=None):
    """x: (L, N, D). ``replace(x, prompt)`` puts a (n, N, D) prompt in place;
    ``block_adapter`` and ``adapter``: the module docstring's adapter hooks."""
    batch = x.shape[1]
    if 0 in hooks.hidden_layers:
        hooks.hidden.append(x.permute(1, 0, 2))
    for i, block in enumerate(blocks):
        if i > 0 and deep_prompts is not None and i - 1 < len(deep_prompts):
            prompt = deep_prompts[i - 1]
            if prompt is not None:
                # expand, then cast (as the references): the gradient's sum over the batch
                # then happens in the prompt's own dtype
                prompt = _batched(prompt, batch).to(x.dtype)
                if hooks.prompt_noise is not None:
                    prompt = hooks.prompt_noise(prompt, i, batch)
                x = replace(x, prompt.permute(1, 0, 2))
        residual = block_adapter(x, i + 1, block) if block_adapter is not None else None
        project = adapter(i, hooks.prompt_noise) if adapter is not None else None
        run = block if project is None else functools.partial(_adapted_block, block,
                                                              project=project)
        if use_checkpoint and torch.is_grad_enabled():
            x = checkpoint(run, x, attn_mask=attn_mask, use_reentrant=False)
        else:
            x = run(x, attn_mask=attn_mask)
        x = _add_residual(x, residual, i + 1, hooks, sequence_first=True)
        if i + 1 in hooks.hidden_layers:
            hooks.hidden.append(x.permute(1, 0, 2))
    return x


class TextEncoder(nn.Module):
    """Encodes token embeddings (N, L, D) plus their token ids (N, L).

    ``checkpoint_blocks``: recompute each block's activations in the backward pass instead
    of keeping them (activation checkpointing): the same gradients in a fraction of the
    memory, for many classes on a small GPU, at the cost of a second forward.
    ``truncate``: run only up to the longest end-of-text token (module docstring). Off, the
    tower runs the full context as the references do; in fp16 that gives their numbers bit
    for bit on the same CPU or GPU kernels, where the shorter sequences round differently
    (by fp16's own precision; README, "Fidelity to the reference code").
    """

    def __init__(self, clip_model, checkpoint_blocks=False, truncate=True):
        super().__init__()
        tower = getattr(clip_model, "text", clip_model)
        if getattr(tower, "cls_emb", None) is not None or not hasattr(tower, "transformer"):
            raise ConfigError(
                "This open_clip model's text tower is not an OpenAI-style transformer; "
                "prompt learners need one (e.g. ViT-B-16, RN50)."
            )
        self.transformer = tower.transformer
        _sequence_first(self.transformer)
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        self.pool_type = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
        self.eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
        self.width = self.transformer.width
        self.num_layers = len(self.transformer.resblocks)
        self.checkpoint_blocks = bool(checkpoint_blocks)
        # exact only for a causal tower pooled at the end-of-text token (module docstring)
        self.truncates = truncate and self.attn_mask is not None \
            and self.pool_type in ("argmax", "eos")

    @property
    def dtype(self):
        """The dtype the blocks compute in (fp16 after ``to_fp16``; the embeddings and
        LayerNorm parameters stay fp32 then, as in OpenAI's fp16 CLIP)."""
        return self.transformer.get_cast_dtype()

    def eot_positions(self, tokens):
        if self.pool_type == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)  # OpenAI: the end-of-text token has the largest id

    def forward(self, embeddings, tokens, deep_prompts=None, n_ctx=0, hooks=None,
                block_adapter=None, adapter=None):
        """Text features (N, E). ``n_ctx``: the learned context tokens sit at positions
        ``1 : 1+n_ctx`` of ``embeddings`` (only read by a hook's ``prompt_noise``).
        ``block_adapter``: the residual adapter hook; ``adapter``: weight adapters of the
        attention (module docstring)."""
        hooks = hooks or NO_HOOKS
        length = embeddings.shape[1]
        eot = self.eot_positions(tokens) if self.pool_type in ("argmax", "eos") else None
        if self.truncates and not hooks.hidden_layers:
            longest_deep = max((p.shape[-2] for p in deep_prompts or () if p is not None),
                               default=0)
            length = max(int(eot.max()) + 1, 1 + longest_deep)
        x = embeddings[:, :length].to(self.dtype)
        if hooks.prompt_noise is not None and n_ctx:
            ctx = hooks.prompt_noise(x[:, 1:1 + n_ctx], 0, x.shape[0])
            x = torch.cat([x[:, :1], ctx, x[:, 1 + n_ctx:]], dim=1)
        if block_adapter is not None:
            x = _add_residual(x, block_adapter(x, 0, None), 0, hooks, sequence_first=False)
        x = x + self.positional_embedding[:length].to(self.dtype)
        mask = None if self.attn_mask is None else self.attn_mask[:length, :length]

        def replace(x, prompt):
            return torch.cat([x[:1], prompt, x[1 + prompt.shape[0]:]], dim=0)

        x = _run_blocks(self.transformer.resblocks, x.permute(1, 0, 2), mask, deep_prompts,
                        replace, hooks, self.checkpoint_blocks, block_adapter, adapter)
        x = self.ln_final(x.permute(1, 0, 2))
        x = self._pool(x, eot)
        if self.text_projection is not None:
            x = self.text_projection(x) if isinstance(self.text_projection, nn.Linear) \
                else x @ self.text_projection
        return x

    def _pool(self, x, eot):
        """``eot``: the end-of-text positions (argmax / eos pooling; None otherwise)."""
        if self.pool_type in ("argmax", "eos"):
            return x[torch.arange(x.shape[0], device=x.device), eot]
        if self.pool_type == "first":
            return x[:, 0]
        if self.pool_type == "last":
            return x[:, -1]
        raise ConfigError(f"Unsupported text pooling {self.pool_type!r}.")


class ImageEncoder(nn.Module):
    """Encodes images; vision prompts need a ViT image tower."""

    def __init__(self, clip_model):
        super().__init__()
        self.visual = clip_model.visual
        self.is_vit = hasattr(self.visual, "conv1") and hasattr(self.visual, "class_embedding")
        if self.is_vit:
            _sequence_first(self.visual.transformer)
            self.width = self.visual.transformer.width
            self.num_layers = len(self.visual.transformer.resblocks)
        else:
            self.width = None
            self.num_layers = 0

    @property
    def dtype(self):
        """The dtype images enter in: that of the stem, as OpenAI CLIP's ``dtype``."""
        stem = getattr(self.visual, "conv1", None)
        if isinstance(stem, nn.Conv2d):
            return stem.weight.dtype
        return next(self.visual.parameters()).dtype

    def forward(self, images, shallow_prompt=None, deep_prompts=None, hooks=None,
                block_adapter=None, adapter=None):
        """Image features (N, E); ``block_adapter``: the residual adapter hook, ``adapter``:
        weight adapters of the attention (module docstring)."""
        hooks = hooks or NO_HOOKS
        images = images.to(self.dtype)
        if not self.is_vit:
            if shallow_prompt is not None or deep_prompts is not None or hooks.hidden_layers \
                    or block_adapter is not None or adapter is not None:
                raise ConfigError(
                    "Vision prompts and adapters (and LDIFS on the image tower) need a ViT "
                    f"backbone; {self.visual.__class__.__name__} is not one."
                )
            return self.visual(images)
        v = self.visual
        x = v.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        if shallow_prompt is not None:
            shallow_prompt = _batched(shallow_prompt, x.shape[0]).to(x.dtype)
            if hooks.prompt_noise is not None:
                shallow_prompt = hooks.prompt_noise(shallow_prompt, 0, x.shape[0])
            x = torch.cat([x, shallow_prompt], dim=1)
        x = v.patch_dropout(x)
        x = v.ln_pre(x)
        if block_adapter is not None:
            x = _add_residual(x, block_adapter(x, 0, None), 0, hooks, sequence_first=False)

        def replace(x, prompt):
            return torch.cat([x[: x.shape[0] - prompt.shape[0]], prompt], dim=0)

        x = _run_blocks(v.transformer.resblocks, x.permute(1, 0, 2), None, deep_prompts,
                        replace, hooks, False, block_adapter, adapter)
        pooled, _ = v._pool(x.permute(1, 0, 2))
        if v.proj is not None:
            pooled = pooled @ v.proj
        return pooled
