"""The frozen CLIP every trainer builds on: towers with prompt hooks, tokenizer,
token embedding and logit scale, at the requested precision and device."""
import contextlib
import copy
import os

import torch
import torch.nn as nn
from open_clip.model import convert_weights_to_lp
from open_clip.transformer import LayerNorm, LayerNormFp32

from errors import ConfigError

from .encoders import ImageEncoder, TextEncoder
from .loading import describe_weights, get_tokenizer, load_clip

PRECISIONS = ("fp16", "fp32", "amp")


#: Environment variable that makes a CPU run honour PREC fp16 / amp (tests and checks of the
#: CUDA precision paths; torch runs fp16 forward and backward on CPU, slowly).
PREC_ON_CPU = "PREC_ON_CPU"


def resolve_precision(prec, device):
    """fp32 on CPU whatever was asked (with one warning); as asked on CUDA, and on CPU
    when ``PREC_ON_CPU=1``."""
    if prec not in PRECISIONS:
        raise ConfigError(f"PREC must be one of {PRECISIONS}, got {prec!r}.")
    if torch.device(device).type != "cuda" and prec != "fp32":
        if os.environ.get(PREC_ON_CPU, "").strip() == "1":
            print(f"Note: PREC {prec} on {torch.device(device).type} ({PREC_ON_CPU}=1)")
            return prec
        print(
            f"WARNING: PREC {prec} needs CUDA; this run is on {torch.device(device).type}, "
            f"so it trains and evaluates in fp32."
        )
        return "fp32"
    return prec


class CLIPBackbone(nn.Module):
    """A frozen open_clip CLIP seen through prompt-aware towers."""

    def __init__(self, clip_model, tokenizer, checkpoint_text=False, truncate_text=True):
        super().__init__()
        self.clip = clip_model
        self.text = TextEncoder(clip_model, checkpoint_blocks=checkpoint_text,
                                truncate=truncate_text)
        self.image = ImageEncoder(clip_model)
        self.tokenizer = tokenizer
        tower = getattr(clip_model, "text", clip_model)
        self.token_embedding = tower.token_embedding
        self.context_length = tower.positional_embedding.shape[0]
        self._image_fp32 = None
        self.requires_grad_(False)
        self.eval()

    @property
    def logit_scale(self):
        return self.clip.logit_scale

    @property
    def dtype(self):
        return self.text.dtype

    @property
    def image_size(self):
        size = getattr(self.clip.visual, "image_size", None)
        return size[0] if isinstance(size, (tuple, list)) else size

    @property
    def text_width(self):
        return self.text.width

    @property
    def vision_width(self):
        return self.image.width

    @property
    def embed_dim(self):
        """Width of the joint (projected) image/text feature space."""
        return self.clip.visual.output_dim

    def cast(self, x):
        """``x`` in the dtype the towers compute in: the one place a learner's tensor (a
        feature, a prompt from fp32 parameters) is brought to the backbone's precision outside
        the towers (inside, each tower casts what enters it)."""
        return x.to(self.dtype)

    def tokenize(self, texts):
        return self.tokenizer(list(texts)).to(self.token_embedding.weight.device)

    def embed(self, tokens):
        return self.token_embedding(tokens).to(self.dtype)

    @torch.no_grad()
    def encode_prompts(self, texts):
        """Frozen CLIP text features of plain text prompts (no learned context)."""
        tokens = self.tokenize(texts)
        return self.text(self.embed(tokens), tokens)

    @contextlib.contextmanager
    def fp32_text(self):
        """Inside, the text tower is an fp32 copy of itself (a no-op on an fp32 backbone).

        PromptSRC's reference computes its teacher text features in fp32 even in fp16 mode,
        with a second CLIP turned ``.float()`` after OpenAI's ``build_model`` had rounded its
        weights to fp16: exactly such a copy.
        """
        if self.dtype == torch.float32:
            yield
            return
        low_precision = self.text
        self.text = copy.deepcopy(low_precision).float()
        try:
            yield
        finally:
            self.text = low_precision

    def image_fp32(self):
        """The image tower in fp32: an fp32 copy of an fp16 tower, made once and kept (on the
        backbone's device, in eval mode, never saved); any other tower is returned as it is.

        A zero-shot teacher that a reference computes with a second CLIP turned ``.float()``
        after OpenAI's ``build_model`` had rounded its weights to fp16 (ProGrad's) is exactly
        such a copy; ``fp32_text`` is its text side.
        """
        if self.image.dtype != torch.float16:
            return self.image
        if self._image_fp32 is None:
            self._image_fp32 = copy.deepcopy(self.image).float()
        return self._image_fp32

    def train(self, mode=True):
        # The frozen CLIP stays in eval mode whatever a trainer asks of its parent.
        return super().train(False)


def build_backbone(cfg, device, precision):
    """Build from cfg.MODEL.BACKBONE and check cfg.INPUT.SIZE against the model."""
    name = cfg.MODEL.BACKBONE.NAME
    pretrained = cfg.MODEL.BACKBONE.get("PRETRAINED", "")
    print(f"Loading CLIP (backbone: {describe_weights(name, pretrained)})")
    model, model_name = load_clip(name, pretrained)
    node = cfg.MODEL.BACKBONE
    backbone = CLIPBackbone(model, get_tokenizer(model, model_name),
                            checkpoint_text=node.get("TEXT_CHECKPOINTING", False),
                            truncate_text=node.get("TRUNCATE_TEXT", True))
    size = backbone.image_size
    if size is not None and tuple(cfg.INPUT.SIZE) != (size, size):
        raise ConfigError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but backbone {name} takes {size}x{size} "
            f"images; set INPUT.SIZE ({size}, {size})."
        )
    if precision == "fp16":
        to_fp16(backbone.clip)
    return backbone.to(device)


def to_fp16(model):
    """OpenAI CLIP in fp16, as the reference repositories run it: ``convert_weights`` (the
    conv, linear and attention weights and the two projections in fp16; embeddings and
    LayerNorm parameters stay fp32) and LayerNorms that compute in fp32 and cast back
    (OpenAI's ``LayerNorm``; open_clip builds its fp16 models with the same
    ``LayerNormFp32``)."""
    convert_weights_to_lp(model, torch.float16)
    for module in model.modules():
        if type(module) is LayerNorm:
            module.__class__ = LayerNormFp32
