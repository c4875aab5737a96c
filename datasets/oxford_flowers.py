"""Oxford Flowers 102: labels from imagelabels.mat, names from cat_to_name.json."""
import os
from collections import defaultdict

from dassl_compat import DATASET_REGISTRY, read_json

from .common import SplitDataset, check_images, require_file, split_by_ratio


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitDataset):
    TEMPLATE = "a photo of a {}, a type of flower."
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    downloads = {
        split_file: "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
        "cat_to_name.json": "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0",
    }

    def make_split(self):
        from scipy.io import loadmat

        label_file = require_file(os.path.join(self.dataset_dir, "imagelabels.mat"), self.name,
                                  "It comes from the official Oxford Flowers 102 site.")
        names_file = require_file(os.path.join(self.dataset_dir, "cat_to_name.json"), self.name,
                                  self.how_to_get("cat_to_name.json"))
        by_label = defaultdict(list)
        for i, label in enumerate(loadmat(label_file)["labels"][0]):
            by_label[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        check_images([p for paths in by_label.values() for p in paths], self.name, "imagelabels.mat", self.image_dir)
        cat_to_name = read_json(names_file)
        return split_by_ratio((y - 1, cat_to_name[str(y)], paths) for y, paths in by_label.items())
