"""Caltech-101: 100 object folders (background and Faces_easy left out), four renamed."""
from dassl_compat import DATASET_REGISTRY

from .common import SplitDataset, split_class_folders

IGNORED = ("BACKGROUND_Google", "Faces_easy")
RENAMED = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(SplitDataset):
    TEMPLATE = "a photo of a {}."
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    downloads = {split_file: "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"}

    def make_split(self):
        return split_class_folders(self.image_dir, ignored=IGNORED, rename=RENAMED)
