"""What every dataset shares: folders, split files, the few-shot draw and its cache,
and the base/new class split.

A dataset file only says where its images are, which split file it reads and how
its class names are spelled (see ``SplitDataset``). Behaviour that must equal the
reference code (CoOp's ``datasets/oxford_pets.py`` and Dassl's
``DatasetBase.generate_fewshot_dataset``) lives here once:

- split files: ``{"train"|"val"|"test": [[relpath, label, classname], ...]}``;
- few-shot: group by label in order of first appearance, then one
  ``random.sample(items, K)`` per group (all items, and no ``random`` call, when a
  group has fewer than K); train first with K, then val with ``min(K, 4)``;
- base/new: the first ``ceil(n/2)`` sorted train labels are base, the rest new,
  each subset relabelled from 0.

The few-shot cache is JSON with paths relative to the dataset folder, so it stays
valid when the data root moves, and it needs neither pickle nor a Dassl module.
"""
import json
import math
import os
import random
from collections import defaultdict

from dassl_compat import DatasetBase, Datum, listdir_nohidden, mkdir_if_missing, read_json, write_json
from errors import ConfigError, DatasetError

FEWSHOT_DIR = "split_fewshot"
SUBSAMPLE_CHOICES = ("all", "base", "new")
_SHOW_MISSING = 5  # missing images listed in an error message


class ListedDatum(Datum):
    """A ``Datum`` for an image already known to exist.

    Dassl's ``Datum.__init__`` calls ``isfile`` on its path. We check files once per
    split in bulk (``check_images``), or know them from a directory listing
    (ImageNet), so this subclass skips that per-object call under either engine.
    """

    __slots__ = ()

    def __init__(self, impath, label=0, domain=0, classname=""):  # noqa: D107
        # Deliberately not calling Datum.__init__ (its isfile assert).
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    impath = property(lambda self: self._impath)
    label = property(lambda self: self._label)
    domain = property(lambda self: self._domain)
    classname = property(lambda self: self._classname)

    def __repr__(self):
        return f"Datum({self._impath!r}, label={self._label}, classname={self._classname!r})"


# ----------------------------------------------------------------------------- folders


def dataset_folder(cfg, folder, name, how_to_get=""):
    """``<DATASET.ROOT>/<folder>`` as an absolute path, or one clear error."""
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT or ""))
    if not cfg.DATASET.ROOT or not os.path.isdir(root):
        raise DatasetError(
            f"DATASET.ROOT {cfg.DATASET.ROOT!r} is not a folder. Pass --root with the "
            f"folder that holds your datasets (e.g. --root data, with {name} in "
            f"data/{folder}/)."
        )
    path = os.path.join(root, folder)
    if not os.path.isdir(path):
        hint = f" {how_to_get}" if how_to_get else ""
        raise DatasetError(
            f"{name}: folder {path} not found. {name} must be in <root>/{folder}/ "
            f"under DATASET.ROOT={root}.{hint}"
        )
    return path


def require_file(path, name, how_to_get):
    if not os.path.isfile(path):
        raise DatasetError(f"{name}: {os.path.basename(path)} not found at {path}. {how_to_get}")
    return path


def check_images(paths, name, source, image_dir):
    """Raise one error naming how many of ``paths`` are missing, and the first few."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:_SHOW_MISSING])
        more = f"\n  ... and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
        raise DatasetError(
            f"{name}: {len(missing)} of {len(paths)} images named in {source} are missing, "
            f"first ones:\n  {shown}{more}\nCheck that the images are extracted into "
            f"{image_dir} as described in DATASETS.md."
        )


def make_items(rows, prefix, name, source, check=True):
    """Datums from ``(relpath, label, classname)`` rows, paths joined to ``prefix``."""
    paths = [os.path.join(prefix, relpath) for relpath, _, _ in rows]
    if check:
        check_images(paths, name, source, prefix)
    return [ListedDatum(p, int(y), classname=c) for p, (_, y, c) in zip(paths, rows)]


def relative_rows(items, prefix):
    return [[os.path.relpath(d.impath, prefix).replace(os.sep, "/"), d.label, d.classname] for d in items]


# ----------------------------------------------------------------------------- split files


def read_split(path, prefix, name):
    """Train, val and test of a ``split_zhou_*.json`` file, paths relative to ``prefix``."""
    print(f"Reading split from {path}")
    split = read_json(path)
    source = os.path.basename(path)
    return tuple(make_items(split[key], prefix, name, source) for key in ("train", "val", "test"))


def write_split(train, val, test, path, prefix):
    split = {key: relative_rows(items, prefix) for key, items in zip(("train", "val", "test"), (train, val, test))}
    write_json_atomic(split, path)
    print(f"Saved split to {path}")


def split_trainval(trainval, p_val=0.2):
    """Per class, ``round(n * p_val)`` shuffled items to val (CoOp's ``split_trainval``)."""
    by_label = defaultdict(list)
    for idx, item in enumerate(trainval):
        by_label[item.label].append(idx)
    train, val = [], []
    for idxs in by_label.values():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise DatasetError(f"A class has too few images ({len(idxs)}) to split off a val set.")
        random.shuffle(idxs)
        val.extend(trainval[i] for i in idxs[:n_val])
        train.extend(trainval[i] for i in idxs[n_val:])
    return train, val


def split_by_ratio(groups, p_trn=0.5, p_val=0.2):
    """Shuffle each ``(label, classname, paths)`` group and cut it 50/20/30 (CoOp's DTD rule)."""
    train, val, test = [], [], []
    for label, classname, paths in groups:
        random.shuffle(paths)
        n_train, n_val = round(len(paths) * p_trn), round(len(paths) * p_val)
        if not (n_train > 0 and n_val > 0 and len(paths) - n_train - n_val > 0):
            raise DatasetError(f"Class {classname!r} has too few images ({len(paths)}) for a 50/20/30 split.")
        for part, chunk in ((train, paths[:n_train]), (val, paths[n_train : n_train + n_val]), (test, paths[n_train + n_val :])):
            part.extend(ListedDatum(p, label, classname=classname) for p in chunk)
    return train, val, test


def split_class_folders(image_dir, ignored=(), rename=None):
    """Fresh 50/20/30 split over ``image_dir/<class>/*`` (DTD, Food101, Caltech101, EuroSAT)."""
    rename = rename or {}
    folders = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    groups = []
    for label, folder in enumerate(folders):
        # Unsorted listing, as the reference: the shuffle then depends on the file system.
        paths = [os.path.join(image_dir, folder, f) for f in listdir_nohidden(os.path.join(image_dir, folder))]
        groups.append((label, rename.get(folder, folder), paths))
    return split_by_ratio(groups)


# ----------------------------------------------------------------------------- few-shot


def draw_few_shot(items, num_shots, what="train", labels=None):
    """Dassl's ``generate_fewshot_dataset(items, num_shots=K)``, call for call.

    Groups by label in order of first appearance and calls ``random.sample`` once per
    group with at least K members; smaller groups are kept whole, without a
    ``random`` call, and named in one warning. ``random.sample`` picks depend only on
    the group's length, so sampling indices gives the reference's picks; ``labels``
    lets a compact listing (ImageNet) be drawn from without building every Datum.
    """
    if num_shots < 1:
        return items
    if labels is None:
        labels = [item.label for item in items]
    by_label = defaultdict(list)
    for idx, label in enumerate(labels):
        by_label[label].append(idx)
    chosen, short = [], []
    for group in by_label.values():
        if len(group) >= num_shots:
            chosen.extend(random.sample(group, num_shots))
        else:
            chosen.extend(group)
            short.append(f"{items[group[0]].classname} ({len(group)})")
    if short:
        print(
            f"WARNING: {num_shots} shots requested but {len(short)} class(es) have fewer {what} "
            f"images; all of their images are used: {', '.join(short[:10])}"
            + (f" and {len(short) - 10} more" if len(short) > 10 else "")
        )
    return [items[idx] for idx in chosen]


def fewshot_cache_path(dataset_dir, num_shots, seed, tag=""):
    return os.path.join(dataset_dir, FEWSHOT_DIR, f"shot_{num_shots}-seed_{seed}{tag}.json")


def few_shot(cfg, dataset_dir, train, val=None, name="", tag=""):
    """K-shot train (and ``min(K, 4)``-shot val), drawn once per (K, seed) and cached.

    ``val=None`` draws train only (ImageNet). The cache holds paths relative to
    ``dataset_dir``. Returns ``(train, val)``.
    """
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots < 1:
        return train, val
    path = fewshot_cache_path(dataset_dir, num_shots, cfg.SEED, tag)
    if os.path.isfile(path):
        print(f"Loading preprocessed few-shot data from {path}")
        try:
            cached = read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{name}: few-shot cache {path} is unreadable ({exc}); delete it to redraw.")
        source = os.path.relpath(path, dataset_dir)
        train = make_items(cached["train"], dataset_dir, name, source)
        if val is not None:
            val = make_items(cached["val"], dataset_dir, name, source)
        return train, val

    train = draw_few_shot(train, num_shots, "train", getattr(train, "labels", None))
    data = {"train": relative_rows(train, dataset_dir)}
    if val is not None:
        val = draw_few_shot(val, min(num_shots, 4), "val")
        data["val"] = relative_rows(val, dataset_dir)
    try:
        mkdir_if_missing(os.path.dirname(path))
        write_json_atomic(data, path)
        print(f"Saving preprocessed few-shot data to {path}")
    except OSError as exc:  # a read-only data root still trains; it just redraws next time
        print(f"WARNING: could not write the few-shot cache {path} ({exc}); continuing without it.")
    return train, val


def write_json_atomic(obj, path):
    """``write_json``, but readers never see a partial file: runs that share a data root (one
    per GPU, tools/sweep.py) may draw the same (K, seed) split at once; each writes a private
    temporary file and renames it over ``path`` (same content, whoever wins)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write_json(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------- base / new


def subsample_classes(*splits, subsample="all"):
    """Keep the base (first ``ceil(n/2)`` sorted train labels) or new classes, relabelled."""
    subsample = str(subsample).lower()
    if subsample not in SUBSAMPLE_CHOICES:
        raise ConfigError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}.")
    if subsample == "all":
        return splits
    labels = sorted({item.label for item in splits[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    out = []
    for split in splits:
        if hasattr(split, "select"):  # a compact listing (ImageNet) stays compact
            out.append(split.select(relabel))
        else:
            out.append([ListedDatum(d.impath, relabel[d.label], d.domain, d.classname) for d in split if d.label in relabel])
    return out


# ----------------------------------------------------------------------------- the base class


class SplitDataset(DatasetBase):
    """A dataset read from a split file under ``<root>/<dataset_dir>``.

    Subclasses set the class attributes below and, where they can build a split from
    the official files, ``make_split`` (used only with ``DATASET.CREATE_SPLIT True``).
    ``load_splits`` may be overridden outright (FGVCAircraft reads official txt files).
    """

    TEMPLATE = None        # hand-crafted prompt, e.g. "a photo of a {}, a type of pet."
    dataset_dir = ""       # folder under DATASET.ROOT
    image_subdir = ""      # split paths are relative to <dataset_dir>/<image_subdir>
    split_file = ""        # the published split, e.g. "split_zhou_OxfordPets.json"
    downloads = {}         # file name in dataset_dir -> Google Drive id
    fewshot_val = True     # draw a min(K, 4)-shot val set too

    def __init__(self, cfg):
        self.name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, self.folder(cfg), self.name, self.how_to_get())
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        self.cfg = cfg
        train, val, test = self.load_splits()
        train, val = few_shot(
            cfg, self.dataset_dir, train, val if self.fewshot_val else None, self.name, self._cache_tag
        )
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    _cache_tag = ""

    @classmethod
    def folder(cls, cfg):
        """The dataset's folder name under DATASET.ROOT."""
        return cls.dataset_dir

    @classmethod
    def how_to_get(cls, filename=None):
        """One sentence on where ``filename`` (default: the split file) comes from."""
        filename = filename or cls.split_file
        drive_id = cls.downloads.get(filename)
        if drive_id is None:
            return "See DATASETS.md for how to download and lay out this dataset."
        return (
            f"Download it with `python scripts/download_splits.py --root <DATASET.ROOT> "
            f"--dataset {cls.__name__}` (Google Drive id {drive_id}, "
            f"https://drive.google.com/uc?id={drive_id})."
        )

    def load_splits(self):
        split_path = os.path.join(self.dataset_dir, self.split_file)
        prefix = self.image_dir
        if os.path.isfile(split_path):
            return read_split(split_path, prefix, self.name)
        create = bool(getattr(self.cfg.DATASET, "CREATE_SPLIT", False))
        if not create:
            raise DatasetError(
                f"{self.name}: split file {self.split_file} not found in {self.dataset_dir}. "
                f"{self.how_to_get()} Published results use this split. To make a fresh "
                f"random split from the official files instead (not comparable to papers), "
                f"set DATASET.CREATE_SPLIT True."
            )
        # A fresh split never takes the published file's name, nor shares its cache.
        fresh_path = os.path.join(self.dataset_dir, self.split_file.replace("split_zhou_", "split_fresh_"))
        self._cache_tag = "-fresh"
        if os.path.isfile(fresh_path):
            return read_split(fresh_path, prefix, self.name)
        print(f"WARNING: {self.split_file} not found; making a fresh random split (DATASET.CREATE_SPLIT True).")
        train, val, test = self.make_split()
        write_split(train, val, test, fresh_path, prefix)
        return train, val, test

    def make_split(self):
        raise DatasetError(f"{self.name} cannot build a split from official files; get {self.split_file}.")


# ----------------------------------------------------------------------------- templates


def dataset_template(name):
    """The hand-crafted prompt of registered dataset ``name`` (its class's ``TEMPLATE``, CoOp's
    CUSTOM_TEMPLATES): zero-shot CLIP, the frozen features of the regularizers."""
    from dassl_compat import DATASET_REGISTRY

    cls = DATASET_REGISTRY.get(name) if name in DATASET_REGISTRY.registered_names() else None
    template = getattr(cls, "TEMPLATE", None)
    if not template or "{}" not in template:
        raise ConfigError(
            f"Dataset {name!r} has no hand-crafted prompt: give its class a TEMPLATE, e.g. "
            f'TEMPLATE = "a photo of a {{}}." (the class name goes where {{}} is).'
        )
    return template


def kgcoop_template(name):
    """KgCoOp's hand-crafted prompt: its own table, equal to ``dataset_template`` except where
    a dataset class sets ``KGCOOP_TEMPLATE`` (DTD)."""
    from dassl_compat import DATASET_REGISTRY

    return getattr(DATASET_REGISTRY.get(name), "KGCOOP_TEMPLATE", None) or dataset_template(name)
