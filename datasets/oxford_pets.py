"""Oxford-IIIT Pets: 37 breeds; class name = image name minus its number, lowercased."""
import os

from dassl_compat import DATASET_REGISTRY

from .common import SplitDataset, check_item_groups, make_items, require_file, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(SplitDataset):
    TEMPLATE = "a photo of a {}, a type of pet."
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    downloads = {split_file: "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"}

    def make_split(self):
        trainval = self.read_annotations("trainval.txt")
        test = self.read_annotations("test.txt")
        check_item_groups({"trainval.txt": trainval, "test.txt": test}, self.name, self.image_dir)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(self, filename):
        """``annotations/<filename>`` lines: ``Abyssinian_100 1 1 1`` (image, class id, ...)."""
        path = require_file(os.path.join(self.dataset_dir, "annotations", filename), self.name,
                            "It comes with the official annotations.tar.gz.")
        rows = []
        with open(path) as f:
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                imname, label, _, _ = line.strip().split(" ")
                breed = "_".join(imname.split("_")[:-1]).lower()
                rows.append((imname + ".jpg", int(label) - 1, breed))
        return make_items(rows, self.image_dir, self.name, filename, check=False)
