"""FGVC-Aircraft 2013b: the official variant lists are the split (no JSON)."""
import os

from dassl_compat import DATASET_REGISTRY
from errors import DatasetError

from .common import SPLIT_KEYS, SplitDataset, require_file

HINT = "It is in the data/ folder of the official fgvc-aircraft-2013b.tar.gz; use that folder as fgvc_aircraft/."


@DATASET_REGISTRY.register()
class FGVCAircraft(SplitDataset):
    TEMPLATE = "a photo of a {}, a type of aircraft."
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"

    def split_source(self, split):
        return f"images_variant_{split}.txt"

    def split_rows(self):
        with open(require_file(os.path.join(self.dataset_dir, "variants.txt"), self.name, HINT)) as f:
            variants = [line.strip() for line in f]
        labels = {v: i for i, v in enumerate(variants)}
        return {split: self.read_list(self.split_source(split), labels) for split in SPLIT_KEYS}

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
        return rows
