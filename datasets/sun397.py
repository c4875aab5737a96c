"""SUN397: class name = scene path reversed ("/s/shop/bakery" -> "bakery shop")."""
import os

from dassl_compat import DATASET_REGISTRY
from errors import DatasetError

from .common import SplitDataset, check_item_groups, make_items, require_file, split_trainval

HINT = "ClassName.txt, Training_01.txt and Testing_01.txt come with the official Partitions.zip."


@DATASET_REGISTRY.register()
class SUN397(SplitDataset):
    TEMPLATE = "a photo of a {}."
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    downloads = {split_file: "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"}

    def make_split(self):
        with open(require_file(os.path.join(self.dataset_dir, "ClassName.txt"), self.name, HINT)) as f:
            scenes = [line.strip()[1:] for line in f if line.strip()]  # "/a/abbey" -> "a/abbey"
        labels = {scene: i for i, scene in enumerate(scenes)}
        trainval = self.read_list("Training_01.txt", labels)
        test = self.read_list("Testing_01.txt", labels)
        check_item_groups({"Training_01.txt": trainval, "Testing_01.txt": test}, self.name,
                          self.image_dir)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_list(self, filename, labels):
        rows = []
        with open(require_file(os.path.join(self.dataset_dir, filename), self.name, HINT)) as f:
            for line in f:
                if not line.strip():
                    continue
                relpath = line.strip()[1:]
                scene = os.path.dirname(relpath)
                if scene not in labels:
                    raise DatasetError(f"{self.name}: {filename} names scene {scene!r}, which ClassName.txt lacks.")
                words = scene.split("/")[1:]  # drop the first-letter folder
                rows.append((relpath, labels[scene], " ".join(reversed(words))))
        return make_items(rows, self.image_dir, self.name, filename, check=False)
