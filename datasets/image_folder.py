"""A folder of class sub-folders, for tests, demos and your own data.

Layout: ``<DATASET.ROOT>/<DATASET.IMAGE_FOLDER.DIR>/{train,val,test}/<class>/<image>``.
``val`` is optional. Labels follow the sorted folder names of ``train``; a class
name is its folder name with ``_`` read as a space ("red_circle" -> "red circle").
Few-shot draws and base/new subsampling work exactly as for the benchmarks.
``python -m datasets.make_toy_dataset`` writes such a folder.
"""
import os

from dassl_compat import DATASET_REGISTRY, listdir_nohidden
from errors import DatasetError

from .common import ListedDatum, SplitDataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@DATASET_REGISTRY.register()
class ImageFolder(SplitDataset):
    TEMPLATE = "a photo of a {}."
    dataset_dir = "toy"

    @classmethod
    def folder(cls, cfg):
        return cfg.DATASET.IMAGE_FOLDER.DIR

    @classmethod
    def how_to_get(cls, filename=None):
        return "Make a toy one with `python -m datasets.make_toy_dataset --out <root>/toy`."

    def load_splits(self):
        train_dir = os.path.join(self.dataset_dir, "train")
        if not os.path.isdir(train_dir):
            raise DatasetError(
                f"ImageFolder: {train_dir} not found. Expected "
                f"{self.dataset_dir}/{{train,val,test}}/<class name>/<image>."
            )
        folders = sorted(d for d in listdir_nohidden(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
        if not folders:
            raise DatasetError(f"ImageFolder: {train_dir} has no class folders.")
        labels = {f: i for i, f in enumerate(folders)}
        return tuple(self._read(part, labels) for part in ("train", "val", "test"))

    def _read(self, part, labels):
        part_dir = os.path.join(self.dataset_dir, part)
        if not os.path.isdir(part_dir):
            if part == "val":
                return []
            raise DatasetError(f"ImageFolder: {part_dir} not found.")
        items = []
        for folder in sorted(listdir_nohidden(part_dir)):
            class_dir = os.path.join(part_dir, folder)
            if not os.path.isdir(class_dir):
                continue
            if folder not in labels:
                raise DatasetError(
                    f"ImageFolder: class folder {class_dir} has no counterpart in "
                    f"{os.path.join(self.dataset_dir, 'train')}; every class must have training images."
                )
            classname = folder.replace("_", " ")
            for name in sorted(listdir_nohidden(class_dir)):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    items.append(ListedDatum(os.path.join(class_dir, name), labels[folder], classname=classname))
        return items
