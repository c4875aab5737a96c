"""Prompt-learning trainers; importing this package registers all of them."""
from . import coop, zsclip  # noqa: F401
from . import cocoop, kgcoop  # noqa: F401
from . import ivlp, maple, promptsrc  # noqa: F401
from .config import add_trainer_config  # noqa: F401
from .feature_cache import add_feature_cache_config  # noqa: F401
