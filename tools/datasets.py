"""Datasets in one command: download, convert to the peers' layout, check.

    python -m tools.datasets download DATA [--dataset NAME ...] [--splits-only] [--dry-run]
    python -m tools.datasets convert DATA [--from TORCHVISION_ROOT [--link]] [--dataset NAME ...]
    python -m tools.datasets check DATA [--dataset NAME ...] [--verify-images [--workers N]]

NAME is a dataset's config name (``oxford_pets``, as the scripts take it) or its registered
name (``OxfordPets``). The default is every dataset of the protocols: the 11 base-to-novel
datasets and the 4 ImageNet variants.

``download`` fetches, per dataset, the published split and class-name files from Google
Drive (gdown, the ids in each dataset class's ``downloads``), then the images, and converts
them to the layout ``datasets/*.py`` read (the peers'). The images come from torchvision's own
downloader where it has one (Caltech101, OxfordIIITPet, Flowers102, Food101, FGVCAircraft,
SUN397, DTD, EuroSAT), else from the official archive (ImageNetV2, ImageNet-A, ImageNet-R;
UCF101's middle frames and ImageNet-Sketch from Google Drive). Two must be fetched by hand
(``SOURCES``, DATASETS.md): ImageNet (a login and the licence's terms) and Stanford Cars (the
official site is gone). Put their files in ``DATA/downloads/<name>/``; ``download`` or
``convert`` then unpacks them. What is already in place is kept; a rerun fetches what is
missing.

Nothing half-written passes for done. A file is downloaded to ``<name>.part`` and renamed when
complete. An image download runs in ``DATA/downloads/<name>/extracted.partial/``, renamed to
``extracted/`` when the downloader returns (a rerun removes a leftover ``.partial`` and starts
that dataset again). Conversion renames (moves) those folders into the dataset's folder, each
in one step, so an interrupted conversion is finished by a rerun. The archives stay in
``DATA/downloads/`` until you delete it. Without network, ``download`` stops at the first
connection failure with one ``ERROR:`` line; ``--dry-run`` lists every file and where it goes.

``convert --from DIR`` converts a torchvision root you downloaded before (``DIR/dtd/dtd/images``,
``DIR/flowers-102/jpg``, ...); ``--link`` makes symbolic links instead of moving.

``check`` reads each dataset's lists through its own class (``split_rows``, ImageNet's listing,
a variant's images), so it checks what training reads: per split, images found against
expected, then missing, unreadable and extra files. For ImageNet and its variants, expected is
the published count. By default an image is "readable" when it exists and is not empty (no
image is opened: a directory walk and a stat per file); ``--verify-images`` decodes every
image with training's reader. The exit code is 0 when every dataset is complete, 1 otherwise.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from errors import DatasetError, UserError
from tools.protocol import DATASETS, DG_TARGETS, REPO

DOWNLOADS = "downloads"  # under DATA: the archives and what they extract to
EXTRACTED = "extracted"  # DATA/downloads/<name>/extracted: a finished download, unconverted
PARTIAL = ".partial"     # suffix of whatever is still being written
SHOW = 5                 # paths shown per problem


def drive_url(drive_id):
    return f"https://drive.google.com/uc?id={drive_id}"


# ----------------------------------------------------------------------------- which datasets


@dataclass(frozen=True)
class Entry:
    config: str  # configs/datasets/<config>.yaml, the scripts' dataset name
    cls: type    # its registered dataset class

    @property
    def name(self):
        return self.cls.__name__


def all_entries() -> List[Entry]:
    """The protocols' datasets (tools/protocol.py), each with the class its config names."""
    import yaml

    import datasets  # noqa: F401  (registers the dataset classes)
    from dassl_compat import DATASET_REGISTRY

    entries = []
    for config in DATASETS + DG_TARGETS:
        with open(os.path.join(REPO, "configs", "datasets", f"{config}.yaml")) as f:
            entries.append(Entry(config, DATASET_REGISTRY.get(yaml.safe_load(f)["DATASET"]["NAME"])))
    return entries


def select(names: Sequence[str]) -> List[Entry]:
    """The entries named by config or class name (all of them for none), in protocol order."""
    entries = all_entries()
    if not names:
        return entries
    known = {e.config: e for e in entries} | {e.name: e for e in entries}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DatasetError(f"unknown dataset(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(e.config for e in entries)} (or their class names).")
    chosen = {known[n].config for n in names}
    return [e for e in entries if e.config in chosen]


# ----------------------------------------------------------------------------- the network


def is_offline(exc) -> bool:
    """A failure to reach the host at all (no network, no DNS), as opposed to a refusal by
    a reachable server (HTTP 404, a Google Drive quota), which is worth retrying elsewhere."""
    import socket
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return False
    if isinstance(exc, (urllib.error.URLError, ConnectionError, socket.gaierror, TimeoutError)):
        return True
    try:
        import requests
    except ImportError:
        return False
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def reason(exc) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 160 else text[:157] + "..."


def drive_download(drive_id, path, quiet=True):
    """Google Drive file ``drive_id`` to ``path``, through ``<path>.part`` (gdown): an
    interrupted download never passes for the file."""
    try:
        import gdown
    except ImportError:
        raise DatasetError("gdown is not installed: pip install gdown (requirements.txt).") from None
    part = path + ".part"
    try:
        out = gdown.download(id=drive_id, output=part, quiet=quiet)
        if not out or not os.path.isfile(part):
            raise DatasetError(f"Google Drive returned no file for {drive_url(drive_id)}")
        if path.endswith(".json"):
            _check_json(part, drive_id)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)


def _check_json(path, drive_id):
    # Google Drive answers a refused download (quota, moved file) with a web page.
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise DatasetError(f"{drive_url(drive_id)} did not return JSON (Google Drive may have "
                           f"refused it: try again later, or fetch it in a browser)") from None


# ----------------------------------------------------------------------------- where images come from


class Torchvision:
    """torchvision's own downloader for the dataset (``download=True``), with the staging
    folder as its root; it checks the archives' md5 where torchvision knows them."""

    def __init__(self, name, site):
        self.name, self.site = name, site

    def describe(self):
        return f"torchvision.datasets.{self.name}(download=True), from {self.site}"

    def fetch(self, staging, supplied):
        import torchvision.datasets

        getattr(torchvision.datasets, self.name)(staging, download=True)


class Archive:
    """An official archive, downloaded and extracted by torchvision's helpers."""

    def __init__(self, url, md5=None):
        self.url, self.md5 = url, md5

    def describe(self):
        return self.url

    def fetch(self, staging, supplied):
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(self.url, staging, md5=self.md5)


class DriveArchive:
    """An archive on Google Drive (gdown), then extracted."""

    def __init__(self, drive_id, filename):
        self.drive_id, self.filename = drive_id, filename

    def describe(self):
        return f"{drive_url(self.drive_id)} ({self.filename})"

    def fetch(self, staging, supplied):
        from torchvision.datasets.utils import extract_archive

        path = os.path.join(staging, self.filename)
        drive_download(self.drive_id, path, quiet=False)
        extract_archive(path, staging)


class ByHand:
    """Files a person fetches (``why``), put in ``DATA/downloads/<name>/``; ``unpack``
    turns them into the tree the moves read."""

    def __init__(self, files, why, unpack):
        self.files, self.why, self.unpack = files, why, unpack

    def describe(self):
        return f"by hand ({self.why}): {', '.join(self.files)}"

    def missing(self, supplied):
        return [f for f in self.files if not os.path.isfile(os.path.join(supplied, f))]

    def fetch(self, staging, supplied):
        self.unpack(staging, {f: os.path.join(supplied, f) for f in self.files})


def unpack_imagenet(staging, files):
    # torchvision's ImageNet parsers: they check the archives' md5, extract the 1000 train
    # tars and sort val into class folders by the devkit's ground truth.
    from torchvision.datasets import imagenet

    imagenet.parse_devkit_archive(staging, file=files["ILSVRC2012_devkit_t12.tar.gz"])
    imagenet.parse_val_archive(staging, file=files["ILSVRC2012_img_val.tar"])
    imagenet.parse_train_archive(staging, file=files["ILSVRC2012_img_train.tar"])


def unpack_cars(staging, files):
    # into torchvision's StanfordCars layout, so that `convert --from` takes a root laid out
    # for torchvision as well
    from torchvision.datasets.utils import extract_archive

    folder = os.path.join(staging, "stanford_cars")
    os.makedirs(folder)
    for name, path in files.items():
        if name.endswith(".tgz"):
            extract_archive(path, folder)  # cars_train/, cars_test/, devkit/
        else:
            shutil.copy2(path, folder)


@dataclass(frozen=True)
class Source:
    """Where a dataset's images come from, and ``moves``: (path in the fetched tree, path in
    the dataset's folder) pairs that make the layout its class reads."""

    fetch: object
    moves: Tuple[Tuple[str, str], ...]


VGG = "https://www.robots.ox.ac.uk/~vgg/data"
HENDRYCKS = "https://people.eecs.berkeley.edu/~hendrycks"

#: registered dataset name -> Source. The moves' first paths are the layouts torchvision's
#: downloaders (or the archives) produce; the second are the layouts in DATASETS.md.
SOURCES: Dict[str, Source] = {
    "ImageNet": Source(
        ByHand(("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"),
               "image-net.org gives them only to a logged-in account that accepts its terms of "
               "access", unpack_imagenet),
        (("train", "images/train"), ("val", "images/val"))),
    "Caltech101": Source(Torchvision("Caltech101", "data.caltech.edu"),
                         (("caltech101/101_ObjectCategories", "101_ObjectCategories"),)),
    "OxfordPets": Source(Torchvision("OxfordIIITPet", f"{VGG}/pets/"),
                         (("oxford-iiit-pet/images", "images"), ("oxford-iiit-pet/annotations", "annotations"))),
    "StanfordCars": Source(
        ByHand(("cars_train.tgz", "cars_test.tgz", "car_devkit.tgz", "cars_test_annos_withlabels.mat"),
               "the official site no longer serves them, and torchvision's downloader refuses "
               "for that reason; copies are linked from pytorch/vision issue 7545", unpack_cars),
        tuple((f"stanford_cars/{name}", name) for name in (
            "cars_train", "cars_test", "devkit", "cars_test_annos_withlabels.mat"))),
    "OxfordFlowers": Source(Torchvision("Flowers102", f"{VGG}/flowers/102/"),
                            (("flowers-102/jpg", "jpg"), ("flowers-102/imagelabels.mat", "imagelabels.mat"),
                             ("flowers-102/setid.mat", "setid.mat"))),
    "Food101": Source(Torchvision("Food101", "data.vision.ee.ethz.ch"),
                      (("food-101/images", "images"), ("food-101/meta", "meta"))),
    "FGVCAircraft": Source(Torchvision("FGVCAircraft", f"{VGG}/fgvc-aircraft/"),
                           tuple((f"fgvc-aircraft-2013b/data/{name}", name) for name in (
                               "images", "variants.txt", "images_variant_train.txt",
                               "images_variant_val.txt", "images_variant_test.txt"))),
    "SUN397": Source(Torchvision("SUN397", "vision.princeton.edu"), (("SUN397", "SUN397"),)),
    "DescribableTextures": Source(Torchvision("DTD", f"{VGG}/dtd/"),
                                  (("dtd/dtd/images", "images"), ("dtd/dtd/labels", "labels"))),
    "EuroSAT": Source(Torchvision("EuroSAT", "huggingface.co/datasets/torchgeo/eurosat"),
                      (("eurosat/2750", "2750"),)),
    "UCF101": Source(DriveArchive("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O", "UCF-101-midframes.zip"),
                     (("UCF-101-midframes", "UCF-101-midframes"),)),
    "ImageNetV2": Source(
        Archive("https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/"
                "imagenetv2-matched-frequency.tar.gz"),
        (("imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency-format-val"),)),
    "ImageNetSketch": Source(DriveArchive("1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA", "ImageNet-Sketch.zip"),
                             (("sketch", "images"),)),
    "ImageNetA": Source(Archive(f"{HENDRYCKS}/imagenet-a.tar"), (("imagenet-a", "imagenet-a"),)),
    "ImageNetR": Source(Archive(f"{HENDRYCKS}/imagenet-r.tar"), (("imagenet-r", "imagenet-r"),)),
}


# ----------------------------------------------------------------------------- download and convert


@dataclass
class Outcome:
    """What ``download``/``convert`` did for one dataset, for the summary table."""

    entry: Entry
    splits: str = "-"
    images: str = "-"
    note: str = ""


class Folders:
    """The paths of one dataset under DATA."""

    def __init__(self, root, entry):
        self.root, self.entry = root, entry
        self.source = SOURCES[entry.name]
        self.dataset_dir = os.path.join(root, entry.cls.dataset_dir)
        self.supplied = os.path.join(root, DOWNLOADS, entry.config)  # by-hand files go here
        self.tree = os.path.join(self.supplied, EXTRACTED)

    def targets(self):
        return [os.path.join(self.dataset_dir, dst) for _, dst in self.source.moves]

    def converted(self):
        return all(os.path.lexists(t) for t in self.targets())

    def can_convert(self, tree):
        """Whether ``tree`` holds every part that is not in place yet."""
        return all(os.path.lexists(os.path.join(tree, src)) for src, dst in self.source.moves
                   if not os.path.lexists(os.path.join(self.dataset_dir, dst)))


def fetch_split_files(root, entry, force=False) -> str:
    """The dataset's Google Drive files (split, class names) into its folder."""
    fetched = 0
    for filename, drive_id in entry.cls.downloads.items():
        path = os.path.join(root, entry.cls.dataset_dir, filename)
        if os.path.isfile(path) and not force:
            continue
        made = not os.path.isdir(os.path.dirname(path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            drive_download(drive_id, path)
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
            if made:  # an empty dataset folder would only mislead
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
            raise FetchFailed.fail(entry, filename, drive_url(drive_id), exc) from None
        print(f"{entry.name}: {drive_url(drive_id)} -> {path}", flush=True)
        fetched += 1
    return "fetched" if fetched else "present"


class FetchFailed(Exception):
    """A download that failed. ``fail`` gives an ``Offline`` instead when the host could not
    be reached at all."""

    def __init__(self, entry, what, where, exc):
        super().__init__(f"{entry.name}: {what} from {where} failed ({reason(exc)})")
        self.entry, self.what, self.where, self.cause = entry, what, where, exc

    @classmethod
    def fail(cls, entry, what, where, exc):
        failure = cls(entry, what, where, exc)
        return Offline(failure) if is_offline(exc) else failure


class Offline(Exception):
    def __init__(self, failure):
        super().__init__(str(failure))
        self.failure = failure


def fetch_images(folders: Folders) -> str:
    """Download (or unpack the by-hand files) into ``extracted/``, unless the dataset is
    converted already or a finished download waits; then convert. Returns the state."""
    if folders.converted():
        return "present"
    source = folders.source.fetch
    if os.path.isdir(folders.tree) and not folders.can_convert(folders.tree):
        # Converted before, and since then a converted folder was deleted: fetch it again.
        print(f"{folders.entry.name}: {folders.tree} lacks parts that are missing; fetching again",
              flush=True)
        shutil.rmtree(folders.tree)
    if not os.path.isdir(folders.tree):
        if isinstance(source, ByHand) and source.missing(folders.supplied):
            return "by hand"
        partial = folders.tree + PARTIAL
        if os.path.lexists(partial):
            print(f"{folders.entry.name}: removing {partial}, left by an interrupted download; "
                  f"starting it again", flush=True)
            shutil.rmtree(partial)
        os.makedirs(partial)
        print(f"{folders.entry.name}: {source.describe()} -> {partial}", flush=True)
        try:
            source.fetch(partial, folders.supplied)
        except Exception as exc:  # noqa: BLE001 - torchvision, urllib and gdown raise many types
            shutil.rmtree(partial, ignore_errors=True)
            raise FetchFailed.fail(folders.entry, "images", source.describe(), exc) from None
        os.rename(partial, folders.tree)
    convert(folders, folders.tree, link=False)
    return "downloaded" if not isinstance(source, ByHand) else "unpacked"


def convert(folders: Folders, tree, link):
    """Move (or link) each part of ``tree`` to its place in the dataset's folder. Each move is
    one rename, so a rerun after an interruption finishes the rest."""
    for src, dst in folders.source.moves:
        target = os.path.join(folders.dataset_dir, dst)
        if os.path.lexists(target):
            continue
        origin = os.path.join(tree, src)
        if not os.path.lexists(origin):
            raise DatasetError(
                f"{folders.entry.name}: {origin} not found, so {target} cannot be made. The "
                f"download is incomplete or not torchvision's layout: delete {tree} and run "
                f"`python -m tools.datasets download {folders.root} --dataset {folders.entry.config}`."
            )
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if link:
            os.symlink(os.path.abspath(origin), target)
        else:
            move(origin, target)


def move(origin, target):
    """``os.rename``, or across file systems a copy to ``<target>.partial`` then a rename."""
    try:
        os.rename(origin, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = target + PARTIAL
    if os.path.lexists(partial):
        shutil.rmtree(partial) if os.path.isdir(partial) else os.remove(partial)
    if os.path.isdir(origin):
        shutil.copytree(origin, partial, symlinks=True)
    else:
        shutil.copy2(origin, partial)
    os.rename(partial, target)


def offline_error(failure: FetchFailed) -> DatasetError:
    return DatasetError(
        f"no network: {failure.entry.name}'s {failure.what} could not be fetched from "
        f"{failure.where}: the host cannot be reached ({type(failure.cause).__name__}). Run this "
        f"command on a machine with internet "
        f"and copy the data folder here (--dry-run lists what it fetches and where each goes; "
        f"DATASETS.md)."
    )


def cmd_download(args) -> int:
    root = os.path.abspath(os.path.expanduser(args.root))
    entries = select(args.dataset)
    if args.dry_run:
        return dry_run(root, entries, args.splits_only)
    os.makedirs(root, exist_ok=True)
    outcomes, failures = [Outcome(e) for e in entries], []
    try:
        # The small files first, for every dataset: with them `check` can say what is missing.
        for outcome in outcomes:
            try:
                outcome.splits = fetch_split_files(root, outcome.entry, args.force)
            except FetchFailed as failure:
                outcome.splits = "failed"
                failures.append(failure)
        if not args.splits_only:
            for outcome in outcomes:
                folders = Folders(root, outcome.entry)
                try:
                    outcome.images = fetch_images(folders)
                except FetchFailed as failure:
                    outcome.images = "failed"
                    failures.append(failure)
                except (DatasetError, OSError) as exc:
                    outcome.images = "failed"
                    failures.append(FetchFailed(outcome.entry, "images", folders.tree, exc))
                if outcome.images == "by hand":
                    outcome.note = by_hand_note(folders)
    except Offline as offline:
        # Fail fast: every other download would fail the same way. The table only if this
        # run got something before the network went.
        if any(o.splits == "fetched" or o.images in ("downloaded", "unpacked") for o in outcomes):
            print(summary(outcomes), flush=True)
        raise offline_error(offline.failure) from None
    except KeyboardInterrupt:
        print(summary(outcomes), flush=True)
        raise
    print(summary(outcomes), flush=True)
    return report_failures(failures, root)


def by_hand_note(folders: Folders) -> str:
    source = folders.source.fetch
    return (f"put {', '.join(source.missing(folders.supplied))} in {folders.supplied}/ "
            f"(DATASETS.md), then run this again")


def summary(outcomes):
    from tabulate import tabulate

    rows = [(o.entry.config, o.entry.name, o.splits, o.images, o.note) for o in outcomes]
    return tabulate(rows, headers=["dataset", "class", "split files", "images", "to do"])


def report_failures(failures, root) -> int:
    if failures:
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        print(f"ERROR: {len(failures)} download(s) failed (listed above); run the same command "
              f"again to retry them, or fetch them by hand (DATASETS.md).", file=sys.stderr)
        return 1
    print(f"Next: python -m tools.datasets check {root}")
    return 0


def dry_run(root, entries, splits_only) -> int:
    """Every file the download would fetch and where it goes, without any network."""
    for entry in entries:
        print(f"{entry.config} ({entry.name})")
        for filename, drive_id in entry.cls.downloads.items():
            path = os.path.join(root, entry.cls.dataset_dir, filename)
            state = "present" if os.path.isfile(path) else "to fetch"
            print(f"  [{state}] {drive_url(drive_id)} -> {path}")
        if splits_only:
            continue
        folders = Folders(root, entry)
        state = "present" if folders.converted() else "to fetch"
        where = ", ".join(os.path.relpath(t, root) for t in folders.targets())
        print(f"  [{state}] {folders.source.fetch.describe()} -> {where}")
        if isinstance(folders.source.fetch, ByHand) and not folders.converted():
            print(f"    by hand: put them in {folders.supplied}/")
    return 0


def cmd_convert(args) -> int:
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        raise DatasetError(f"{root} is not a folder: pass the data folder (DATASET.ROOT).")
    outcomes, failures = [], []
    for entry in select(args.dataset):
        folders, outcome = Folders(root, entry), Outcome(entry)
        outcomes.append(outcome)
        try:
            if folders.converted():
                outcome.images = "present"
            elif args.source:
                tree = os.path.abspath(os.path.expanduser(args.source))
                if not os.path.lexists(os.path.join(tree, folders.source.moves[0][0])):
                    outcome.images, outcome.note = "not in --from", ""
                    continue
                convert(folders, tree, link=args.link)
                outcome.images = "linked" if args.link else "converted"
            elif os.path.isdir(folders.tree):
                convert(folders, folders.tree, link=args.link)
                outcome.images = "converted"
            elif isinstance(folders.source.fetch, ByHand) and not folders.source.fetch.missing(folders.supplied):
                outcome.images = fetch_images(folders)
            else:
                outcome.images = "not downloaded"
                outcome.note = (by_hand_note(folders) if isinstance(folders.source.fetch, ByHand)
                                else "run download")
        except FetchFailed as failure:
            outcome.images = "failed"
            failures.append(failure)
        except (DatasetError, OSError) as exc:
            outcome.images = "failed"
            failures.append(FetchFailed(entry, "images", args.source or folders.tree, exc))
    print(summary(outcomes))
    return report_failures(failures, root)


# ----------------------------------------------------------------------------- check


@dataclass
class Finding:
    """What ``check`` found for one dataset."""

    entry: Entry
    folder: str = ""                                                     # image folder, under DATA
    counts: Dict[str, Tuple[int, int]] = field(default_factory=dict)     # split -> (found, expected)
    missing: Dict[str, List[str]] = field(default_factory=dict)          # split -> paths, where known
    unreadable: List[Tuple[str, str]] = field(default_factory=list)      # (path, why)
    extra: int = 0                                                       # image files in no split
    problems: List[str] = field(default_factory=list)                    # each names its fix

    @property
    def ok(self):
        return not self.problems


def image_file(name):
    from datasets.image_folder import IMAGE_EXTENSIONS

    return name.lower().endswith(IMAGE_EXTENSIONS)


def walk_sizes(top) -> Dict[str, int]:
    """``{path relative to top, "/"-separated: size}`` of every file under ``top``, following
    links (a converted tree may be links), each directory once. Broken links are left out."""
    sizes, seen, stack = {}, set(), [("", top)]
    while stack:
        rel, path = stack.pop()
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(path))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir():
                    stack.append((f"{rel}{e.name}/", e.path))
                else:
                    sizes[f"{rel}{e.name}"] = e.stat().st_size
            except OSError:
                continue
    return sizes


def decode_error(path):
    """Why training's image reader fails on ``path``, or None."""
    from dassl_compat import read_image

    try:
        read_image(path)
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the file is bad
        return f"cannot be decoded: {reason(exc)}"
    return None


def unreadable_files(base, relpaths, sizes, verify, workers):
    bad = [(p, "empty file") for p in relpaths if sizes.get(p) == 0]
    if verify:
        todo = [p for p in relpaths if sizes.get(p)]
        paths = [os.path.join(base, p) for p in todo]
        if workers > 1 and len(paths) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                errors = list(pool.map(decode_error, paths, chunksize=256))
        else:
            errors = [decode_error(p) for p in paths]
        bad += [(p, why) for p, why in zip(todo, errors) if why]
    return bad


def check_split_dataset(finding, ds, root, verify, workers):
    from datasets.common import SPLIT_KEYS

    rows = ds.split_rows()
    sizes = walk_sizes(ds.image_dir)
    named, present = set(), []
    for split in SPLIT_KEYS:
        paths = [os.path.normpath(r[0]).replace(os.sep, "/") for r in rows[split]]
        named.update(paths)
        found = [p for p in paths if p in sizes]
        present += found
        finding.counts[split] = (len(found), len(paths))
        finding.missing[split] = [p for p in paths if p not in sizes]
        if not paths:
            finding.problems.append(f"{finding.entry.name}: {ds.split_source(split)} lists no images: "
                                    f"the file is damaged. {ds.how_to_get()}")
    finding.extra = sum(1 for p in sizes if p not in named and image_file(p))
    finding.unreadable = unreadable_files(ds.image_dir, sorted(set(present)), sizes, verify, workers)


def check_imagenet(finding, ds, root, verify, workers):
    from datasets.imagenet import list_folder, read_classnames

    name = finding.entry.name
    classnames = read_classnames(ds.dataset_dir, name)
    split_dirs = ds.split_dirs(name)
    listing = {part: list_folder(d) for part, d in split_dirs.items()}
    lists = ds.image_lists(listing, classnames)  # one error for folders not in classnames.txt
    for part, (folders, _) in listing.items():
        present = set(folders)
        absent = [w for w in classnames if w not in present]
        if absent:
            finding.problems.append(
                f"{name}: images/{part} has {len(folders)} of the {len(classnames)} class folders "
                f"of classnames.txt; missing: {', '.join(absent[:SHOW])}"
                f"{' ...' if len(absent) > SHOW else ''}. Extract the archive again (DATASETS.md).")
    cached = ds.cached_listing(split_dirs)
    if cached is not None and any({f: set(n) for f, n in zip(*cached[p])} != {f: set(n) for f, n in zip(*listing[p])}
                                  for p in listing):
        finding.problems.append(
            f"{name}: {os.path.join(ds.dataset_dir, 'listing_cache.json')} no longer matches the "
            f"images on disk, and training reads that list: delete the file (the next run lists again).")
    count_listed(finding, ds, {split: items.relpaths for split, items in lists.items()},
                 {split: ds.split_folders[split] + "/" for split in lists}, verify, workers)


def check_variant(finding, ds, root, verify, workers):
    items = ds.images()  # one error for a missing folder, classnames.txt or unknown class folder
    relpaths = [os.path.relpath(d.impath, ds.image_dir).replace(os.sep, "/") for d in items]
    count_listed(finding, ds, {"test": relpaths}, {"test": ""}, verify, workers)


def count_listed(finding, ds, lists, prefixes, verify, workers):
    """Found (what the class lists) against the published count, for datasets made of
    folders; a listed file that is not an image, or empty, is unreadable."""
    sizes = walk_sizes(ds.image_dir)
    for split, relpaths in lists.items():
        expected = ds.num_images[split]
        finding.counts[split] = (len(relpaths), expected)
        finding.missing[split] = [None] * max(0, expected - len(relpaths))  # which, unknown
        finding.extra += max(0, len(relpaths) - expected)
        paths = [prefixes[split] + p for p in relpaths]
        finding.unreadable += [(p, "not an image file, but training reads it") for p in paths
                               if not image_file(p)]
        finding.unreadable += unreadable_files(ds.image_dir, [p for p in paths if image_file(p)],
                                               sizes, verify, workers)


def check_dataset(entry, cfg, root, verify, workers) -> Finding:
    from datasets.common import SplitDataset
    from datasets.imagenet import ImageNet

    finding = Finding(entry)
    if not os.path.isdir(os.path.join(root, entry.cls.dataset_dir)):
        finding.problems.append(f"{entry.name}: {os.path.join(root, entry.cls.dataset_dir)} not found. "
                                f"{fix_for(entry, root)}")
        return finding
    try:
        ds = entry.cls.located(cfg)
        finding.folder = os.path.relpath(ds.image_dir, root)
        if issubclass(entry.cls, SplitDataset):
            check_split_dataset(finding, ds, root, verify, workers)
        elif issubclass(entry.cls, ImageNet):
            check_imagenet(finding, ds, root, verify, workers)
        else:
            check_variant(finding, ds, root, verify, workers)
    except DatasetError as exc:  # the dataset's own message, which names the fix
        unconverted = not Folders(root, entry).converted()  # then also how to get the images
        finding.problems.append(f"{exc} {fix_for(entry, root)}" if unconverted else str(exc))
    for split, missing in finding.missing.items():
        if missing:
            found, expected = finding.counts[split]
            known = [p for p in missing if p is not None]
            first = f", first: {', '.join(known[:SHOW])}" if known else ""
            finding.problems.append(
                f"{entry.name}: {split}: {len(missing)} of {expected} images missing under "
                f"{finding.folder}/{first}. {fix_for(entry, root, redo=True)}")
    if finding.unreadable:
        shown = "; ".join(f"{p} ({why})" for p, why in finding.unreadable[:SHOW])
        more = f"; and {len(finding.unreadable) - SHOW} more" if len(finding.unreadable) > SHOW else ""
        finding.problems.append(
            f"{entry.name}: {len(finding.unreadable)} unreadable image file(s) under "
            f"{finding.folder}/: {shown}{more}. Replace them with good copies from the archive.")
    return finding


def fix_for(entry, root, redo=False):
    """How to get the dataset's images."""
    source = SOURCES[entry.name].fetch
    command = f"`python -m tools.datasets download {root} --dataset {entry.config}`"
    if isinstance(source, ByHand):
        how = f"Fetch it by hand ({source.why}) and run {command}; see DATASETS.md."
    else:
        how = f"Get it with {command}."
    if redo:
        how = f"Extract the images again: delete the image folder, then {how[0].lower()}{how[1:]}"
    return how


def cell(finding, split):
    if split not in finding.counts:
        return "-"
    found, expected = finding.counts[split]
    return f"{found}/{expected}"


def check_table(findings):
    from tabulate import tabulate

    rows = []
    for f in findings:
        missing = sum(len(m) for m in f.missing.values())
        rows.append((f.entry.config, f.folder or "-", cell(f, "train"), cell(f, "val"), cell(f, "test"),
                     missing, len(f.unreadable), f.extra, "ok" if f.ok else "NOT READY"))
    return tabulate(rows, headers=["dataset", "image folder", "train", "val", "test", "missing",
                                   "unreadable", "not in split", "status"])


def cmd_check(args) -> int:
    import datasets
    from dassl_compat import get_cfg_default

    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        raise DatasetError(f"{root} is not a folder: pass the data folder (DATASET.ROOT), or "
                           f"make it with `python -m tools.datasets download {root}`.")
    cfg = get_cfg_default()
    datasets.add_dataset_config(cfg)
    cfg.DATASET.ROOT = root
    entries = select(args.dataset)
    findings = []
    for entry in entries:
        print(f"checking {entry.config} ...", file=sys.stderr, flush=True)
        findings.append(check_dataset(entry, cfg, root, args.verify_images, args.workers))
    print(check_table(findings))
    bad = [f for f in findings if not f.ok]
    if not bad:
        how = "decoded" if args.verify_images else "present and non-empty (--verify-images decodes them)"
        print(f"\nAll {len(findings)} dataset(s) complete: every image of every split is {how}.")
        return 0
    print()
    for f in bad:
        for problem in f.problems:
            print(problem)
    print(f"ERROR: {len(bad)} of {len(findings)} dataset(s) not ready: "
          f"{', '.join(f.entry.config for f in bad)}. Fix what each line above says, then run "
          f"`python -m tools.datasets check {root}` again.", file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------- command line


def split_file_targets(root, names):
    """``(dataset class name, path, Google Drive id)`` of every split and class-name file of
    the named datasets (all for none)."""
    root = os.path.abspath(os.path.expanduser(root))
    for entry in select(names):
        for filename, drive_id in entry.cls.downloads.items():
            yield entry.name, os.path.join(root, entry.cls.dataset_dir, filename), drive_id


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m tools.datasets", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help_):
        q = sub.add_parser(name, help=help_, description=help_)
        q.add_argument("root", metavar="DATA", help="the data folder (DATASET.ROOT, the scripts' DATA)")
        q.add_argument("--dataset", nargs="+", default=[], metavar="NAME",
                       help="config or class names, e.g. oxford_pets EuroSAT (default: all 15)")
        q.set_defaults(func=func)
        return q

    q = add("download", cmd_download, "download the split files and images, and convert the images")
    q.add_argument("--splits-only", action="store_true",
                   help="only the split and class-name files (Google Drive), not the images")
    q.add_argument("--force", action="store_true", help="download the split files again even if present")
    q.add_argument("--dry-run", action="store_true",
                   help="list every file, where it comes from and where it goes; fetch nothing")
    q = add("convert", cmd_convert, "convert downloaded images to the layout the datasets read")
    q.add_argument("--from", dest="source", metavar="DIR",
                   help="a torchvision root downloaded before (default: DATA/downloads/<name>/extracted)")
    q.add_argument("--link", action="store_true", help="symbolic links instead of moving")
    q = add("check", cmd_check, "check a data folder against the split files")
    q.add_argument("--verify-images", action="store_true",
                   help="decode every image with training's reader (slow on large trees)")
    q.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="processes that decode images with --verify-images (default: up to 8)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to go on from here", file=sys.stderr)
        return 130
    except OSError as exc:  # a folder that cannot be written: read-only, full, no permission
        where = exc.filename or args.root
        print(f"ERROR: cannot write {where} ({exc.strerror or exc}): check the folder's "
              f"permissions and free space, then run the same command again.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
