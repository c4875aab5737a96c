"""Text and image towers of an open_clip CLIP, with prompt hooks.

Both towers are run block by block over open_clip's own ``resblocks``; nothing
of open_clip is subclassed or copied. Tensors are batch-first (N, L, D).

Prompt hooks, as in CoOp / MaPLe / IVLP / PromptSRC:

* text, shallow: the caller passes token *embeddings* that already contain the
  learned context (the prompt learner builds them);
* text, deep: ``deep_prompts[i]`` (shape ``(n, D)`` or ``(N, n, D)``) replaces
  tokens ``1 : 1+n`` before block ``i + 1``; the sequence length, the causal
  mask and the EOT position are unchanged;
* vision, shallow: ``shallow_prompt`` (``(n, D)`` or ``(B, n, D)``) is appended
  after the positional embedding and *before* ``ln_pre``;
* vision, deep: ``deep_prompts[i]`` replaces the last ``n`` tokens before block
  ``i + 1``.

``None`` entries in ``deep_prompts`` leave that layer alone. ``hidden_layers``
asks for intermediate token features (0 = the embedding entering block 0,
k = the output of block k), used by LDIFS.

Two optional hooks let a regularizer act without any trainer code (SPEC
decision 7); both are off (``None``) unless a regularizer is on:

* ``capture_layers``: on every forward with gradients enabled (the prompted
  training pass, not the frozen no-grad passes), the hidden states at these
  indices are kept in ``captured``;
* ``prompt_noise(prompt, layer, batch_size)``: applied to every learned prompt
  before it enters (PACE); ``layer`` counts prompted layers from 0.
"""
import torch
import torch.nn as nn

from errors import ConfigError


def _expand(prompt, batch):
    return prompt.unsqueeze(0).expand(batch, -1, -1) if prompt.dim() == 2 else prompt


def _run_blocks(blocks, x, attn_mask, deep_prompts, replace, hidden_layers, noise=None):
    hidden = []
    if hidden_layers is not None and 0 in hidden_layers:
        hidden.append(x)
    for i, block in enumerate(blocks):
        if i > 0 and deep_prompts is not None and i - 1 < len(deep_prompts):
            prompt = deep_prompts[i - 1]
            if prompt is not None:
                prompt = _expand(prompt.to(x.dtype), x.shape[0])
                if noise is not None:
                    prompt = noise(prompt, i, x.shape[0])
                x = replace(x, prompt)
        x = block(x, attn_mask=attn_mask)
        if hidden_layers is not None and i + 1 in hidden_layers:
            hidden.append(x)
    return x, hidden


def _capture(encoder, hidden_layers):
    """(hidden_layers to collect, whether they are a capture for the encoder)."""
    if hidden_layers is None and encoder.capture_layers is not None and torch.is_grad_enabled():
        return encoder.capture_layers, True
    return hidden_layers, False


class TextEncoder(nn.Module):
    """Encodes token embeddings (N, L, D) plus their token ids (N, L)."""

    def __init__(self, clip_model):
        super().__init__()
        tower = getattr(clip_model, "text", clip_model)
        if getattr(tower, "cls_emb", None) is not None or not hasattr(tower, "transformer"):
            raise ConfigError(
                "This open_clip model's text tower is not an OpenAI-style transformer; "
                "prompt learners need one (e.g. ViT-B-16, RN50)."
            )
        self.transformer = tower.transformer
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        self.pool_type = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
        self.eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
        self.width = self.transformer.width
        self.num_layers = len(self.transformer.resblocks)
        self.capture_layers = None
        self.captured = None
        self.prompt_noise = None

    @property
    def dtype(self):
        """The dtype the blocks compute in (fp16 after ``to_fp16``; the embeddings and
        LayerNorm parameters stay fp32 then, as in OpenAI's fp16 CLIP)."""
        return self.transformer.get_cast_dtype()

    def forward(self, embeddings, tokens, deep_prompts=None, hidden_layers=None, n_ctx=0):
        """``n_ctx``: the learned context tokens sit at positions ``1 : 1+n_ctx`` of
        ``embeddings`` (only used by ``prompt_noise``)."""
        embeddings = embeddings.to(self.dtype)
        if self.prompt_noise is not None and n_ctx:
            ctx = self.prompt_noise(embeddings[:, 1:1 + n_ctx], 0, embeddings.shape[0])
            embeddings = torch.cat([embeddings[:, :1], ctx, embeddings[:, 1 + n_ctx:]], dim=1)
        x = embeddings + self.positional_embedding.to(self.dtype)

        def replace(x, prompt):
            n = prompt.shape[1]
            return torch.cat([x[:, :1], prompt, x[:, 1 + n:]], dim=1)

        hidden_layers, capture = _capture(self, hidden_layers)
        x, hidden = _run_blocks(
            self.transformer.resblocks, x, self.attn_mask, deep_prompts, replace, hidden_layers,
            self.prompt_noise,
        )
        if capture:
            self.captured, hidden_layers = hidden, None
        x = self.ln_final(x)
        x = self._pool(x, tokens)
        if self.text_projection is not None:
            x = self.text_projection(x) if isinstance(self.text_projection, nn.Linear) \
                else x @ self.text_projection
        return (x, hidden) if hidden_layers is not None else x

    def _pool(self, x, tokens):
        rows = torch.arange(x.shape[0], device=x.device)
        if self.pool_type == "argmax":
            return x[rows, tokens.argmax(dim=-1)]
        if self.pool_type == "eos":
            return x[rows, (tokens == self.eos_id).int().argmax(dim=-1)]
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
            self.width = self.visual.transformer.width
            self.num_layers = len(self.visual.transformer.resblocks)
        else:
            self.width = None
            self.num_layers = 0
        self.capture_layers = None
        self.captured = None
        self.prompt_noise = None

    @property
    def dtype(self):
        """The dtype images enter in: that of the stem, as OpenAI CLIP's ``dtype``."""
        stem = getattr(self.visual, "conv1", None)
        if isinstance(stem, nn.Conv2d):
            return stem.weight.dtype
        return next(self.visual.parameters()).dtype

    def forward(self, images, shallow_prompt=None, deep_prompts=None, hidden_layers=None):
        images = images.to(self.dtype)
        if not self.is_vit:
            if shallow_prompt is not None or deep_prompts is not None or hidden_layers:
                raise ConfigError(
                    "Vision prompts (and LDIFS on the image tower) need a ViT backbone; "
                    f"{self.visual.__class__.__name__} is not one."
                )
            return self.visual(images)
        v = self.visual
        x = v.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        if shallow_prompt is not None:
            shallow_prompt = _expand(shallow_prompt.to(x.dtype), x.shape[0])
            if self.prompt_noise is not None:
                shallow_prompt = self.prompt_noise(shallow_prompt, 0, x.shape[0])
            x = torch.cat([x, shallow_prompt], dim=1)
        x = v.patch_dropout(x)
        x = v.ln_pre(x)

        def replace(x, prompt):
            return torch.cat([x[:, : x.shape[1] - prompt.shape[1]], prompt], dim=1)

        hidden_layers, capture = _capture(self, hidden_layers)
        x, hidden = _run_blocks(v.transformer.resblocks, x, None, deep_prompts, replace,
                                hidden_layers, self.prompt_noise)
        if capture:
            self.captured, hidden_layers = hidden, None
        pooled, _ = v._pool(x)
        if v.proj is not None:
            pooled = pooled @ v.proj
        return (pooled, hidden) if hidden_layers is not None else pooled
