from .data_manager import DataManager, DatasetWrapper, build_data_loader
from .datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from .samplers import build_sampler, register_sampler
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = [
    "DATASET_REGISTRY",
    "DataManager",
    "DatasetBase",
    "DatasetWrapper",
    "Datum",
    "INTERPOLATION_MODES",
    "build_data_loader",
    "build_dataset",
    "build_sampler",
    "build_transform",
    "register_sampler",
]
