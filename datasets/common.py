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
import hashlib
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
    check_image_groups({source: paths}, name, image_dir)


def check_image_groups(groups, name, image_dir):
    """One error for the missing images of every group (``{source: paths}``: the train, val
    and test lists of a split), so that a partly extracted dataset is reported whole, not
    one list per rerun."""
    missing = {source: [p for p in paths if not os.path.isfile(p)] for source, paths in groups.items()}
    missing = {source: paths for source, paths in missing.items() if paths}
    if not missing:
        return
    n_missing = sum(len(paths) for paths in missing.values())
    n_total = sum(len(groups[source]) for source in missing)
    # The first few of every list that has missing images, so that each is seen.
    per_list = max(1, _SHOW_MISSING // len(missing))
    shown = [f"{source}: {p}" if len(missing) > 1 else p
             for source, paths in missing.items() for p in paths[:per_list]]
    more = f"\n  ... and {n_missing - len(shown)} more" if n_missing > len(shown) else ""
    if len(missing) == 1:
        where = f"named in {next(iter(missing))} are missing"
    else:
        counts = ", ".join(f"{len(paths)} of {len(groups[source])} in {source}"
                           for source, paths in missing.items())
        where = f"are missing ({counts})"
    listing = "\n  ".join(shown)
    raise DatasetError(
        f"{name}: {n_missing} of {n_total} images {where}, first ones:\n  {listing}{more}\n"
        f"Check that the images are extracted into {image_dir} as described in DATASETS.md."
    )


def check_item_groups(groups, name, image_dir):
    """``check_image_groups`` for lists of Datums (``{source: items}``)."""
    check_image_groups({source: [d.impath for d in items] for source, items in groups.items()},
                       name, image_dir)


def make_items(rows, prefix, name, source, check=True):
    """Datums from ``(relpath, label, classname)`` rows, paths joined to ``prefix``."""
    return make_split_items({source: rows}, prefix, name, check)[0]


def make_split_items(groups, prefix, name, check=True):
    """``make_items`` for several row lists (``{source: rows}``) at once: the missing images
    of all of them are in one error. Returns the lists in the order of ``groups``."""
    paths = {source: [os.path.join(prefix, row[0]) for row in rows] for source, rows in groups.items()}
    if check:
        check_image_groups(paths, name, prefix)
    return [[ListedDatum(p, int(y), classname=c) for p, (_, y, c) in zip(paths[source], rows)]
            for source, rows in groups.items()]


def relative_rows(items, prefix):
    return [[os.path.relpath(d.impath, prefix).replace(os.sep, "/"), d.label, d.classname] for d in items]


# ----------------------------------------------------------------------------- split files


SPLIT_KEYS = ("train", "val", "test")


def read_json_file(path, name, what, fix):
    """A JSON file, or one DatasetError naming it, what is wrong and ``fix``."""
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{name}: {what} {path} is not valid JSON ({exc}); it is truncated or damaged. {fix}"
        ) from None


def split_rows(data, path, name, keys, what, fix):
    """``data[key]`` for each key, each a list of ``[relpath, label, classname]`` rows, or one
    DatasetError naming the file, the first bad key and ``fix``."""
    if not isinstance(data, dict):
        raise DatasetError(f"{name}: {what} {path} is not a JSON object with {', '.join(keys)} lists. {fix}")
    rows = {}
    for key in keys:
        value = data.get(key)
        if value is None:
            raise DatasetError(
                f"{name}: {what} {path} has no {key!r} list (expected {', '.join(keys)}). {fix}"
            )
        bad = next((row for row in value if not (isinstance(row, (list, tuple)) and len(row) == 3
                                                  and isinstance(row[0], str))), None) \
            if isinstance(value, list) else value
        if bad is not None:
            raise DatasetError(
                f"{name}: {what} {path} has a malformed {key!r} entry {str(bad)[:80]} "
                f"(expected [relative path, label, class name]). {fix}"
            )
        rows[key] = value
    return rows


def read_split_rows(path, name, how_to_get=""):
    """``{"train"|"val"|"test": rows}`` of a ``split_zhou_*.json`` file (images not looked at),
    or one DatasetError naming the file, what is wrong and ``how_to_get``."""
    fix = (how_to_get or "Get the file again (see DATASETS.md).").strip()
    split = read_json_file(path, name, "split file", fix)
    return split_rows(split, path, name, SPLIT_KEYS, "split file", fix)


def read_split(path, prefix, name, how_to_get=""):
    """Train, val and test of a ``split_zhou_*.json`` file, paths relative to ``prefix``."""
    print(f"Reading split from {path}")
    rows = read_split_rows(path, name, how_to_get)
    source = os.path.basename(path)
    return tuple(make_split_items({f"{source} ({key})": rows[key] for key in SPLIT_KEYS}, prefix, name))


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


def pool_fingerprint(items, dataset_dir):
    """sha256 of the items a few-shot draw samples from: each one's path (relative to
    ``dataset_dir``), label and class name, in order (the draw depends on the order too).
    A compact listing (ImageNet's ``ImageList``) is read without building its Datums."""
    digest = hashlib.sha256()
    if hasattr(items, "relpaths"):
        prefix = os.path.relpath(items.prefix, dataset_dir).replace(os.sep, "/")
        rows = ((f"{prefix}/{rel}", y, items.classnames[y]) for rel, y in zip(items.relpaths, items.labels))
    else:
        rows = ((os.path.relpath(d.impath, dataset_dir).replace(os.sep, "/"), d.label, d.classname)
                for d in items)
    for relpath, label, classname in rows:
        digest.update(f"{relpath}\t{label}\t{classname}\n".encode())
    return digest.hexdigest()


def few_shot(cfg, dataset_dir, train, val=None, name="", tag=""):
    """K-shot train (and ``min(K, 4)``-shot val), drawn once per (K, seed) and cached.

    ``val=None`` draws train only (ImageNet). The cache holds paths relative to
    ``dataset_dir`` and, under ``drawn_from``, the ``pool_fingerprint`` of the lists it was
    drawn from: a cache drawn from another version of the split (a new split file, images
    added or removed) is drawn again, with one warning, instead of training on images that
    may now be test images. Returns ``(train, val)``.
    """
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots < 1:
        return train, val
    path = fewshot_cache_path(dataset_dir, num_shots, cfg.SEED, tag)
    pools = {"train": train} if val is None else {"train": train, "val": val}
    drawn_from = {key: pool_fingerprint(items, dataset_dir) for key, items in pools.items()}
    cached = None
    if os.path.isfile(path):
        cached = _read_fewshot_cache(path, name, list(pools))
        if cached.get("drawn_from") == drawn_from:
            print(f"Loading preprocessed few-shot data from {path}")
            source = os.path.relpath(path, dataset_dir)
            loaded = make_split_items({f"{source} ({key})": cached[key] for key in pools}, dataset_dir, name)
            return loaded[0], (loaded[1] if val is not None else None)

    # train.py seeded the run and the dataset build up to here is the same in every run, so
    # this is the draw that a first run of this (K, seed) makes on the current split.
    train = draw_few_shot(train, num_shots, "train", getattr(train, "labels", None))
    data = {"train": relative_rows(train, dataset_dir)}
    if val is not None:
        val = draw_few_shot(val, min(num_shots, 4), "val")
        data["val"] = relative_rows(val, dataset_dir)
    if cached is not None and any(cached[key] != data[key] for key in pools):
        _set_aside_stale_cache(path, cached, name)
    # else: a cache of an older version (no drawn_from) whose draw is this one: it only
    # gains its record of the split, without a warning, since nothing changed.
    data["drawn_from"] = drawn_from
    try:
        mkdir_if_missing(os.path.dirname(path))
        write_json_atomic(data, path)
        print(f"Saving preprocessed few-shot data to {path}")
    except OSError as exc:  # a read-only data root still trains; it just redraws next time
        print(f"WARNING: could not write the few-shot cache {path} ({exc}); continuing without it.")
    return train, val


def _read_fewshot_cache(path, name, keys):
    # A cache without its lists is an error, not a redraw: the cache is the record of which
    # images every earlier run of this (K, seed) trained on, and one that lost a list was
    # edited or written by something else. Redrawing over it would silently give later runs
    # another training set than the runs they are compared with; deleting it is the
    # user's decision, and the message says so.
    fix = "Delete it to draw the few-shot set again (runs that used it then differ from new ones)."
    cached = read_json_file(path, name, "few-shot cache", fix)
    split_rows(cached, path, name, keys, "few-shot cache", fix)
    return cached


def _set_aside_stale_cache(path, cached, name):
    """Move a cache drawn from another version of the split out of the way, keeping it:
    it records what the earlier runs trained on."""
    old = cached.get("drawn_from")
    stale = f"{path[:-len('.json')]}.stale-{_short_fingerprint(old)}.json"
    why = ("drawn from another version of the split (its images, labels or order changed)"
           if old else "written without a record of the split it was drawn from (an older version)")
    try:
        os.replace(path, stale)
        kept = f"the old draw is kept as {os.path.basename(stale)}"
    except OSError as exc:  # a read-only data root: draw anyway, the cache stays as it was
        kept = f"the old draw could not be moved aside ({exc.strerror}) and is left in place"
    print(f"WARNING: {name}: few-shot cache {path} was {why}; drawing it again from the "
          f"current split ({kept}).")


def _short_fingerprint(drawn_from):
    if not isinstance(drawn_from, dict) or not drawn_from:
        return "unknown"
    return hashlib.sha256(json.dumps(drawn_from, sort_keys=True).encode()).hexdigest()[:12]


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


class Locatable:
    """``located(cfg)``: a dataset whose folders are set (``name``, ``dataset_dir``,
    ``image_dir``, by its ``_locate(cfg)``) but whose images are not read. ``python -m
    tools.datasets check`` reads a dataset's lists through it, so that it checks what
    training reads. One error if the dataset folder is missing."""

    @classmethod
    def located(cls, cfg):
        self = cls.__new__(cls)  # not __init__: that loads the whole dataset
        self._locate(cfg)
        return self

    def _locate(self, cfg):
        raise NotImplementedError


class SplitDataset(Locatable, DatasetBase):
    """A dataset read from a split file under ``<root>/<dataset_dir>``.

    Subclasses set the class attributes below and, where they can build a split from
    the official files, ``make_split`` (used only with ``DATASET.CREATE_SPLIT True``).
    ``split_rows`` may be overridden (FGVCAircraft reads official txt files); it is also
    what ``python -m tools.datasets check`` reads, so the check sees what training reads.
    """

    TEMPLATE = None        # hand-crafted prompt, e.g. "a photo of a {}, a type of pet."
    dataset_dir = ""       # folder under DATASET.ROOT
    image_subdir = ""      # split paths are relative to <dataset_dir>/<image_subdir>
    split_file = ""        # the published split, e.g. "split_zhou_OxfordPets.json"
    downloads = {}         # file name in dataset_dir -> Google Drive id
    fewshot_val = True     # draw a min(K, 4)-shot val set too (False: keep the whole val split)

    def __init__(self, cfg):
        self._locate(cfg)
        train, val, test = self.load_splits()
        train, drawn_val = few_shot(
            cfg, self.dataset_dir, train, val if self.fewshot_val else None, self.name, self._cache_tag
        )
        val = drawn_val if self.fewshot_val else val
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    _cache_tag = ""

    def _locate(self, cfg):
        self.name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, self.folder(cfg), self.name, self.how_to_get())
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        self.cfg = cfg

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
            f"Download it with `python -m tools.datasets download <DATASET.ROOT> --dataset "
            f"{cls.__name__} --splits-only` (Google Drive id {drive_id}, "
            f"https://drive.google.com/uc?id={drive_id})."
        )

    def split_source(self, split):
        """The file (and list) ``split_rows()[split]`` comes from, as messages name it."""
        return f"{self.split_file} ({split})"

    def split_rows(self):
        """The published split as ``{"train"|"val"|"test": [[relpath, label, classname], ...]}``,
        paths relative to ``image_dir``; the images are not looked at. One error if the split
        file is missing or damaged, naming how to get it."""
        split_path = os.path.join(self.dataset_dir, self.split_file)
        if not os.path.isfile(split_path):
            raise self._missing_split()
        return read_split_rows(split_path, self.name, self.how_to_get())

    def _missing_split(self):
        return DatasetError(
            f"{self.name}: split file {self.split_file} not found in {self.dataset_dir}. "
            f"{self.how_to_get()} Published results use this split. To make a fresh "
            f"random split from the official files instead (not comparable to papers), "
            f"set DATASET.CREATE_SPLIT True."
        )

    def load_splits(self):
        split_path = os.path.join(self.dataset_dir, self.split_file)
        prefix = self.image_dir
        if not self.split_file or os.path.isfile(split_path):  # no split_file: split_rows knows
            if self.split_file:
                print(f"Reading split from {split_path}")
            rows = self.split_rows()
            return tuple(make_split_items({self.split_source(key): rows[key] for key in SPLIT_KEYS},
                                          prefix, self.name))
        create = bool(getattr(self.cfg.DATASET, "CREATE_SPLIT", False))
        if not create:
            raise self._missing_split()
        # A fresh split never takes the published file's name, nor shares its cache.
        fresh_path = os.path.join(self.dataset_dir, self.split_file.replace("split_zhou_", "split_fresh_"))
        self._cache_tag = "-fresh"
        if os.path.isfile(fresh_path):
            return read_split(fresh_path, prefix, self.name,
                              "Delete it to make a fresh split again (DATASET.CREATE_SPLIT True).")
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
