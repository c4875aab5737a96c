"""Datum, DatasetBase and the dataset registry (dassl/data/datasets)."""
import os.path as osp
import random
from collections import defaultdict

from errors import DatasetError

from ..utils import Registry, check_availability

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    check_availability(cfg.DATASET.NAME, DATASET_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


class Datum:
    """One image: path, class label, domain label and class name (read-only)."""

    def __init__(self, impath="", label=0, domain=0, classname=""):
        if not isinstance(impath, str):
            raise TypeError(f"impath must be a str, got {type(impath).__name__}")
        if not osp.isfile(impath):
            raise DatasetError(f"Image file not found: {impath}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname

    def __repr__(self):
        return f"Datum({self._impath!r}, label={self._label}, classname={self._classname!r})"


class DatasetBase:
    """Lists of Datum for train_x, train_u, val and test.

    ``num_classes``, ``lab2cname`` and ``classnames`` come from train_x.
    """

    dataset_dir = ""
    domains = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self):
        return self._lab2cname

    @property
    def classnames(self):
        return self._classnames

    @property
    def num_classes(self):
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source):
        """max label + 1; 0 for an empty split (the DataManager then says so)."""
        return max((item.label for item in data_source or ()), default=-1) + 1

    @staticmethod
    def get_lab2cname(data_source):
        mapping = {item.label: item.classname for item in data_source or ()}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains):
        assert len(source_domains) > 0, "source_domains (list) is empty"
        assert len(target_domains) > 0, "target_domains (list) is empty"
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains):
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(
                    f"Input domain must belong to {self.domains}, but got [{domain}]"
                )

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        """Keep ``num_shots`` random items per class of each source.

        Uses the global ``random`` state with Dassl's exact sequence of calls
        (classes in order of first appearance, one ``random.sample`` per class
        with enough items, ``random.choices`` for short classes if ``repeat``),
        so a given seed yields Dassl's subset.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources

        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            subset = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    subset.extend(random.sample(items, num_shots))
                elif repeat:
                    subset.extend(random.choices(items, k=num_shots))
                else:
                    subset.extend(items)
            output.append(subset)
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source):
        groups = defaultdict(list)
        for item in data_source:
            groups[item.label].append(item)
        return groups

    def split_dataset_by_domain(self, data_source):
        groups = defaultdict(list)
        for item in data_source:
            groups[item.domain].append(item)
        return groups
