"""Food-101: class names are the image folder names."""
from dassl_compat import DATASET_REGISTRY

from .common import SplitDataset, split_class_folders


@DATASET_REGISTRY.register()
class Food101(SplitDataset):
    TEMPLATE = "a photo of {}, a type of food."
    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    downloads = {split_file: "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"}

    def make_split(self):
        return split_class_folders(self.image_dir)
