"""Test-only ImageNet variants for domain generalization; each needs a copy of classnames.txt.

ImageNetV2 names its folders by label ("0".."999" in classnames.txt order);
Sketch, A and R use wnid folders, labelled in sorted order (A and R have 200).
"""
import os

from dassl_compat import DATASET_REGISTRY, DatasetBase, listdir_nohidden
from errors import DatasetError

from .common import ListedDatum, Locatable, dataset_folder
from .imagenet import CLASSNAMES_DRIVE_ID, names_for, read_classnames


class ImageNetVariant(Locatable, DatasetBase):
    TEMPLATE = "a photo of a {}."
    dataset_dir = ""
    image_subdir = ""
    downloads = {"classnames.txt": CLASSNAMES_DRIVE_ID}

    num_images = {}  # published size of the test split; `python -m tools.datasets check` counts against it

    def __init__(self, cfg):
        self._locate(cfg)
        data = self.images()
        super().__init__(train_x=data, test=data)

    def _locate(self, cfg):
        self.name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, self.name, "See DATASETS.md.")
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)

    def images(self):
        """Every image, as Datums labelled in ``class_folders`` order."""
        name = self.name
        if not os.path.isdir(self.image_dir):
            raise DatasetError(f"{name}: image folder {self.image_dir} not found. See DATASETS.md.")
        classnames = read_classnames(self.dataset_dir, name)
        folders, names = self.class_folders(classnames, name)
        data = []
        for label, (folder, classname) in enumerate(zip(folders, names)):
            class_dir = os.path.join(self.image_dir, folder)
            data.extend(ListedDatum(os.path.join(class_dir, im), label, classname=classname)
                        for im in sorted(listdir_nohidden(class_dir)))
        return data

    def class_folders(self, classnames, name):
        """``(folders, class names)``, in label order."""
        folders = [f for f in listdir_nohidden(self.image_dir, sort=True) if f != "README.txt"]
        return folders, names_for(folders, classnames, name)


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    num_images = {"test": 10000}

    def class_folders(self, classnames, name):
        folders = [str(label) for label in range(len(classnames))]
        missing = [f for f in folders if not os.path.isdir(os.path.join(self.image_dir, f))]
        if missing:
            raise DatasetError(
                f"{name}: {len(missing)} of {len(folders)} label folders are missing under "
                f"{self.image_dir}, first ones: {', '.join(missing[:5])}."
            )
        return folders, list(classnames.values())


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    num_images = {"test": 50889}


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):
    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    num_images = {"test": 7500}


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    num_images = {"test": 30000}
