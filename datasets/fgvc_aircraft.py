"""FGVC-Aircraft 2013b: the official variant lists are the split (no JSON)."""
import os

from dassl_compat import DATASET_REGISTRY
from errors import DatasetError

from .common import SplitDataset, check_item_groups, make_items, require_file

HINT = "It is in the data/ folder of the official fgvc-aircraft-2013b.tar.gz; use that folder as fgvc_aircraft/."


@DATASET_REGISTRY.register()
class FGVCAircraft(SplitDataset):
    TEMPLATE = "a photo of a {}, a type of aircraft."
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"

    def load_splits(self):
        with open(require_file(os.path.join(self.dataset_dir, "variants.txt"), self.name, HINT)) as f:
            variants = [line.strip() for line in f]
        labels = {v: i for i, v in enumerate(variants)}
        files = [f"images_variant_{part}.txt" for part in ("train", "val", "test")]
        splits = [self.read_list(filename, labels) for filename in files]
        check_item_groups(dict(zip(files, splits)), self.name, self.image_dir)
        return tuple(splits)

    def read_list(self, filename, labels):
        """Lines ``1025794 Boeing 707-320``: image id, then the variant."""
        rows = []
        with open(require_file(os.path.join(self.dataset_dir, filename), self.name, HINT)) as f:
            for line in f:
                if not line.strip():
                    continue
                imid, *words = line.strip().split(" ")
                variant = " ".join(words)
                if variant not in labels:
                    raise DatasetError(f"{self.name}: {filename} names variant {variant!r}, which variants.txt lacks.")
                rows.append((imid + ".jpg", labels[variant], variant))
        return make_items(rows, self.image_dir, self.name, filename, check=False)
