"""ImageNet (ILSVRC-2012): ``images/train/<wnid>/`` and ``images/val/<wnid>/`` (val = test).

Labels follow the sorted wnid folders; names come from ``classnames.txt``
("n01440764 tench"). The directory walk is done once and cached in
``listing_cache.json`` (names relative to the dataset folder), so a cold start
neither walks 1.28M files nor checks each one; delete that file after changing
the images. Splits are kept as compact path/label lists (``ImageList``) and
become ``Datum`` objects only when read. Few-shot draws train only, as the
reference does; the draw depends on the listing order, which is the file
system's (``os.listdir``), exactly as in the reference.
"""
import json
import os
from array import array
from collections import OrderedDict
from collections.abc import Sequence

from dassl_compat import DATASET_REGISTRY, DatasetBase
from errors import DatasetError

from .common import ListedDatum, Locatable, dataset_folder, few_shot, require_file, subsample_classes

CLASSNAMES_DRIVE_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
LISTING_FILE = "listing_cache.json"


def classnames_hint(dataset):
    return (
        f"Download it with `python -m tools.datasets download <DATASET.ROOT> --dataset {dataset} --splits-only` "
        f"(Google Drive id {CLASSNAMES_DRIVE_ID}, https://drive.google.com/uc?id={CLASSNAMES_DRIVE_ID})."
    )


def read_classnames(dataset_dir, dataset):
    """``classnames.txt`` as an ordered ``{wnid: class name}``."""
    path = require_file(os.path.join(dataset_dir, "classnames.txt"), dataset, classnames_hint(dataset))
    classnames = OrderedDict()
    with open(path) as f:
        for line in f:
            folder, *words = line.strip().split(" ")
            if folder:
                classnames[folder] = " ".join(words)
    return classnames


def names_for(folders, classnames, dataset):
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise DatasetError(
            f"{dataset}: {len(unknown)} class folder(s) are not in classnames.txt, first ones: "
            f"{', '.join(unknown[:5])}. Use the classnames.txt of CoOp's DATASETS.md ({classnames_hint(dataset)})"
        )
    return [classnames[f] for f in folders]


class ImageList(Sequence):
    """One split as parallel path/label lists; items are built as ``Datum`` on access."""

    def __init__(self, prefix, relpaths, labels, classnames):
        self.prefix = prefix
        self.relpaths = relpaths
        self.labels = labels          # array of ints, one per image
        self.classnames = classnames  # indexed by label

    @classmethod
    def from_folders(cls, prefix, folders, files, classnames):
        relpaths, labels = [], array("i")
        for label, (folder, names) in enumerate(zip(folders, files)):
            relpaths.extend(f"{folder}/{name}" for name in names)
            labels.extend([label] * len(names))
        return cls(prefix, relpaths, labels, classnames)

    def __len__(self):
        return len(self.relpaths)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return [self[i] for i in range(*idx.indices(len(self)))]
        label = self.labels[idx]
        return ListedDatum(os.path.join(self.prefix, self.relpaths[idx]), label, classname=self.classnames[label])

    def select(self, relabel):
        """The images whose label is in ``relabel``, relabelled by it."""
        keep = [i for i, y in enumerate(self.labels) if y in relabel]
        names = [None] * len(relabel)
        for old, new in relabel.items():
            names[new] = self.classnames[old]
        return ImageList(self.prefix, [self.relpaths[i] for i in keep], array("i", (relabel[self.labels[i]] for i in keep)), names)


def list_folder(split_dir):
    """Sorted class folders and, per folder, its file names in ``os.listdir`` order (as the reference)."""
    folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    files = [[n for n in os.listdir(os.path.join(split_dir, f)) if not n.startswith(".")] for f in folders]
    return folders, files


@DATASET_REGISTRY.register()
class ImageNet(Locatable, DatasetBase):
    TEMPLATE = "a photo of a {}."
    dataset_dir = "imagenet"
    downloads = {"classnames.txt": CLASSNAMES_DRIVE_ID}
    split_folders = {"train": "train", "test": "val"}  # split -> folder under images/
    # ILSVRC-2012's published sizes; `python -m tools.datasets check` counts against them.
    num_images = {"train": 1281167, "test": 50000}

    def __init__(self, cfg):
        self._locate(cfg)
        name = self.name
        classnames = read_classnames(self.dataset_dir, name)
        train, test = self.image_lists(self.load_listing(name), classnames).values()
        train, _ = few_shot(cfg, self.dataset_dir, train, None, name)
        train, test = subsample_classes(train, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        # The val set is the test set (the reference evaluates the last-step model).
        super().__init__(train_x=train, val=test, test=test)

    def _locate(self, cfg):
        self.name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, self.name, "See DATASETS.md.")
        self.image_dir = os.path.join(self.dataset_dir, "images")

    def image_lists(self, listing, classnames):
        """``{"train": ImageList, "test": ImageList}`` from a ``load_listing``-style listing."""
        return {
            split: ImageList.from_folders(os.path.join(self.image_dir, part), *listing[part],
                                          names_for(listing[part][0], classnames, self.name))
            for split, part in self.split_folders.items()
        }

    def load_listing(self, name):
        """``{"train"|"val": (class folders, file names per folder)}``: the cached listing when
        its class folders are those on disk, else a fresh walk, then cached."""
        split_dirs = self.split_dirs(name)
        cache = os.path.join(self.dataset_dir, LISTING_FILE)
        if os.path.isfile(cache):
            listing = self.cached_listing(split_dirs)
            if listing is not None:
                return listing
            print(f"WARNING: {cache} does not match the class folders on disk; listing again.")
        print(f"Listing the images under {self.image_dir} (once; cached in {cache})")
        listing = {p: list_folder(d) for p, d in split_dirs.items()}
        data = {p: {"folders": fo, "files": fi} for p, (fo, fi) in listing.items()}
        try:
            tmp = cache + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(tmp, cache)
        except OSError as exc:
            print(f"WARNING: could not write {cache} ({exc}); the next start will list again.")
        return listing

    def split_dirs(self, name):
        """``{"train"|"val": folder}``, or one error if either is missing."""
        split_dirs = {p: os.path.join(self.image_dir, p) for p in self.split_folders.values()}
        for path in split_dirs.values():
            if not os.path.isdir(path):
                raise DatasetError(
                    f"{name}: {path} not found. ImageNet needs images/train/<wnid>/ and "
                    f"images/val/<wnid>/ (val sorted into class folders) under {self.dataset_dir}."
                )
        return split_dirs

    def cached_listing(self, split_dirs):
        """The listing in ``listing_cache.json`` if training would use it (it names the class
        folders on disk), else None."""
        cache = os.path.join(self.dataset_dir, LISTING_FILE)
        if not os.path.isfile(cache):
            return None
        try:
            with open(cache) as f:
                listing = json.load(f)
        except (OSError, ValueError):  # damaged: it is only a cache, so list again
            return None
        # One scandir per split (a thousand entries) catches a cache from other data.
        if all(listing.get(p, {}).get("folders") == sorted(e.name for e in os.scandir(d) if e.is_dir())
               for p, d in split_dirs.items()):
            return {p: (listing[p]["folders"], listing[p]["files"]) for p in split_dirs}
        return None
