"""Prompt-learning trainers. Importing this package imports every module in it, and so
registers every trainer (``registry.register_trainer``) with its config node: a new trainer is
one file here, with nothing else to edit."""
import importlib
import pkgutil

from .feature_cache import add_feature_cache_config  # noqa: F401
from .registry import TRAINER_CONFIGS, add_trainer_config, register_trainer  # noqa: F401

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
