"""Small helpers with Dassl 0.6.3's names and behaviour (dassl/utils)."""
import json
import os
import os.path as osp
import platform
import random
import sys
import time
import warnings
from collections import defaultdict
from difflib import SequenceMatcher

import numpy as np
import torch
from PIL import Image

from errors import ConfigError


class UnavailableNameError(ConfigError, ValueError):
    """A requested name that is not registered; a ValueError as in Dassl."""


class Registry:
    """Name -> class mapping, filled by the ``@REGISTRY.register()`` decorator."""

    def __init__(self, name):
        self._name = name
        self._obj_map = {}

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered '
                f'in "{self._name}" registry'
            )
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        if obj is None:
            def decorator(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return decorator
        self._do_register(obj.__name__, obj, force=force)

    def get(self, name):
        if name not in self._obj_map:
            raise KeyError(
                f'Object name "{name}" does not exist in "{self._name}" registry'
            )
        return self._obj_map[name]

    def registered_names(self):
        return list(self._obj_map.keys())


def get_most_similar_str_to_a_from_b(a, b):
    """The candidate in ``b`` most similar to ``a`` (ties go to the later one)."""
    best_ratio, chosen = 0, None
    for candidate in b:
        ratio = SequenceMatcher(None, a, candidate).ratio()
        if ratio >= best_ratio:
            best_ratio, chosen = ratio, candidate
    return chosen


def check_availability(requested, available):
    if requested not in available:
        guess = get_most_similar_str_to_a_from_b(requested, available)
        raise UnavailableNameError(
            f"The requested one is expected to belong to {available}, "
            f"but got [{requested}] (do you mean [{guess}]?)"
        )


def tolist_if_not(x):
    return x if isinstance(x, list) else [x]


def mkdir_if_missing(dirname):
    if dirname:
        os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath):
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def read_json(fpath):
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj, fpath):
    mkdir_if_missing(osp.dirname(fpath))
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def read_image(path):
    return Image.open(path).convert("RGB")


def listdir_nohidden(path, sort=False):
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def set_random_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def collect_env_info():
    """A short environment report (Dassl prints torch's much longer one)."""
    import PIL
    import torchvision

    try:
        import open_clip
        open_clip_version = open_clip.__version__
    except ImportError:
        open_clip_version = "not installed"
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible)"
    else:
        device = "cpu"
    lines = [
        f"Python: {platform.python_version()} ({platform.platform()})",
        f"PyTorch: {torch.__version__}",
        f"torchvision: {torchvision.__version__}",
        f"open_clip: {open_clip_version}",
        f"Pillow: {PIL.__version__}",
        f"Device: {device}",
    ]
    return "\n".join(lines)


class _Tee:
    """Writes to the console and to a log file."""

    def __init__(self, console, fpath):
        mkdir_if_missing(osp.dirname(fpath))
        self.console = console
        self.fpath = fpath
        self.file = open(fpath, "w")

    def write(self, msg):
        self.console.write(msg)
        if not self.file.closed:
            self.file.write(msg)

    def flush(self):
        self.console.flush()
        if not self.file.closed:
            self.file.flush()

    def close(self):
        if not self.file.closed:
            self.file.close()

    def isatty(self):
        return self.console.isatty()

    def __getattr__(self, name):
        return getattr(self.console, name)


def setup_logger(output=None):
    """Tee ``sys.stdout`` to ``<output>/log.txt`` (or to ``output`` itself if it
    ends in .txt/.log). An existing log file is never overwritten: the new one
    gets a ``-YYYY-MM-DD-HH-MM-SS`` suffix. Calling it again replaces the
    previous tee instead of stacking a second one on top."""
    if output is None:
        return
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")

    console = sys.stdout
    if isinstance(console, _Tee):
        console.close()
        console = console.console
    sys.stdout = _Tee(console, fpath)


class AverageMeter:
    """Current value and running average (or an EMA with ``ema=True``)."""

    def __init__(self, ema=False):
        self.ema = ema
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A set of AverageMeters, printed as ``name val (avg)`` pairs."""

    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict):
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            self.meters[k].update(v)

    def __str__(self):
        return self.delimiter.join(
            f"{name} {meter.val:.4f} ({meter.avg:.4f})"
            for name, meter in self.meters.items()
        )


def count_num_param(model=None, params=None):
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(
            p["params"].numel() if isinstance(p, dict) else p.numel() for p in params
        )
    raise ValueError("model and params must provide at least one.")
