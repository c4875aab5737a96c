"""Describable Textures (DTD): class names are the image folder names."""
from dassl_compat import DATASET_REGISTRY

from .common import SplitDataset, split_class_folders


@DATASET_REGISTRY.register()
class DescribableTextures(SplitDataset):
    TEMPLATE = "{} texture."
    KGCOOP_TEMPLATE = "a photo of a {}, a type of texture."  # KgCoOp's own, for DTD only
    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    downloads = {split_file: "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"}

    def make_split(self):
        return split_class_folders(self.image_dir)
