"""The frozen open_clip CLIP every trainer builds on, with prompt hooks in both towers."""
from .backbone import PRECISIONS, CLIPBackbone, build_backbone, resolve_precision
from .encoders import ImageEncoder, TextEncoder, TowerHooks
from .loading import OPENAI_NAMES, load_clip, read_openai_state_dict

__all__ = [
    "PRECISIONS", "CLIPBackbone", "build_backbone", "resolve_precision",
    "ImageEncoder", "TextEncoder", "TowerHooks", "OPENAI_NAMES", "load_clip",
    "read_openai_state_dict",
]
