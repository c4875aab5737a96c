"""Datasets, registered in Dassl's DATASET_REGISTRY on import.

Importing this package registers every dataset under the peers' names
(CoOp/MaPLe/PromptSRC), plus ``ImageFolder`` for tests and demos.
``add_dataset_config(cfg)`` adds the dataset keys that Dassl's defaults lack.
"""
# Each import registers that module's datasets.
from . import image_folder  # noqa: F401
from .benchmark_sets import BENCHMARK_SETS
from .caltech101 import Caltech101
from .common import dataset_template, kgcoop_template
from .dtd import DescribableTextures
from .eurosat import EuroSAT
from .fgvc_aircraft import FGVCAircraft
from .food101 import Food101
from .imagenet import ImageNet
from .imagenet_variants import ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2
from .oxford_flowers import OxfordFlowers
from .oxford_pets import OxfordPets
from .stanford_cars import StanfordCars
from .sun397 import SUN397
from .ucf101 import UCF101

# The protocols' dataset lists are in tools/protocol.py.


def add_dataset_config(cfg):
    """Add the dataset keys this project reads; existing values are kept.

    - ``DATASET.SUBSAMPLE_CLASSES``: "all", "base" (first half of the sorted
      labels) or "new" (second half), as in CoOp's train.py.
    - ``DATASET.CREATE_SPLIT``: when a published ``split_zhou_*.json`` is missing,
      make a fresh random split from the official files (saved as
      ``split_fresh_*.json``) instead of stopping. Off by default, because the
      result is not the split the papers use.
    - ``DATASET.IMAGE_FOLDER.DIR``: the ImageFolder dataset's folder under
      DATASET.ROOT.
    """
    node = type(cfg)  # a node of the engine's own CfgNode class
    dataset = cfg.DATASET
    if "SUBSAMPLE_CLASSES" not in dataset:
        dataset.SUBSAMPLE_CLASSES = "all"
    if "CREATE_SPLIT" not in dataset:
        dataset.CREATE_SPLIT = False
    if "IMAGE_FOLDER" not in dataset:
        dataset.IMAGE_FOLDER = node()
    if "DIR" not in dataset.IMAGE_FOLDER:
        dataset.IMAGE_FOLDER.DIR = "toy"
    return cfg
