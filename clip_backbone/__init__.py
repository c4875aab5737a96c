"""open_clip backbone with prompt hooks (SPEC decision 2)."""
from .backbone import PRECISIONS, CLIPBackbone, build_backbone, resolve_precision
from .encoders import ImageEncoder, TextEncoder
from .loading import OPENAI_NAMES, load_clip, read_openai_state_dict

__all__ = [
    "PRECISIONS", "CLIPBackbone", "build_backbone", "resolve_precision",
    "ImageEncoder", "TextEncoder", "OPENAI_NAMES", "load_clip", "read_openai_state_dict",
]
