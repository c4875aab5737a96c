"""The frozen CLIP every trainer builds on: towers with prompt hooks, tokenizer,
token embedding and logit scale, at the requested precision and device."""
import torch
import torch.nn as nn
from open_clip.model import convert_weights_to_lp

from errors import ConfigError

from .encoders import ImageEncoder, TextEncoder
from .loading import get_tokenizer, load_clip

PRECISIONS = ("fp16", "fp32", "amp")


def resolve_precision(prec, device):
    """fp32 on CPU whatever was asked (with one warning); as asked on CUDA."""
    if prec not in PRECISIONS:
        raise ConfigError(f"PREC must be one of {PRECISIONS}, got {prec!r}.")
    if torch.device(device).type != "cuda" and prec != "fp32":
        print(
            f"WARNING: PREC {prec} needs CUDA; this run is on {torch.device(device).type}, "
            f"so it trains and evaluates in fp32."
        )
        return "fp32"
    return prec


class CLIPBackbone(nn.Module):
    """A frozen open_clip CLIP seen through prompt-aware towers."""

    def __init__(self, clip_model, tokenizer):
        super().__init__()
        self.clip = clip_model
        self.text = TextEncoder(clip_model)
        self.image = ImageEncoder(clip_model)
        self.tokenizer = tokenizer
        tower = getattr(clip_model, "text", clip_model)
        self.token_embedding = tower.token_embedding
        self.context_length = tower.positional_embedding.shape[0]
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

    def tokenize(self, texts):
        return self.tokenizer(list(texts)).to(self.token_embedding.weight.device)

    def embed(self, tokens):
        return self.token_embedding(tokens).to(self.dtype)

    @torch.no_grad()
    def encode_prompts(self, texts):
        """Frozen CLIP text features of plain text prompts (no learned context)."""
        tokens = self.tokenize(texts)
        return self.text(self.embed(tokens), tokens)

    def train(self, mode=True):
        # The frozen CLIP stays in eval mode whatever a trainer asks of its parent.
        return super().train(False)


def build_backbone(cfg, device, precision):
    """Build from cfg.MODEL.BACKBONE and check cfg.INPUT.SIZE against the model."""
    name = cfg.MODEL.BACKBONE.NAME
    pretrained = cfg.MODEL.BACKBONE.get("PRETRAINED", "")
    print(f"Loading CLIP (backbone: {name}{', ' + pretrained if pretrained else ''})")
    model, model_name = load_clip(name, pretrained)
    backbone = CLIPBackbone(model, get_tokenizer(model, model_name))
    size = backbone.image_size
    if size is not None and tuple(cfg.INPUT.SIZE) != (size, size):
        raise ConfigError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but backbone {name} takes {size}x{size} "
            f"images; set INPUT.SIZE ({size}, {size})."
        )
    if precision == "fp16":
        convert_weights_to_lp(backbone.clip, torch.float16)
    return backbone.to(device)
