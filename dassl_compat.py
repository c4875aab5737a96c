"""The one module through which the project imports Dassl names.

If upstream Dassl (``dassl``) is importable, its own objects are used, so our
trainers and datasets land in Dassl's registries and ``train.py`` runs Dassl's
flow. Otherwise the built-in engine (``builtin_dassl``) provides the same
names with the same defaults and behaviour.

``DASSL_ENGINE=builtin`` forces the built-in engine, ``DASSL_ENGINE=dassl``
requires upstream Dassl.

A few pieces always come from the built-in engine, whichever engine runs,
because upstream's versions break on torch >= 2.6/2.7: the LR scheduler
(upstream passes the removed ``verbose`` argument) and checkpoint I/O, the
files and a trainer's save / resume / load (upstream pickles scheduler
objects that ``torch.load(weights_only=True)`` refuses).
"""
import importlib.util
import os

from errors import ConfigError

_choice = os.environ.get("DASSL_ENGINE", "auto").strip().lower() or "auto"
if _choice not in ("auto", "builtin", "dassl"):
    raise ConfigError(
        f"DASSL_ENGINE={_choice!r} is not one of 'auto', 'builtin', 'dassl'. Set it to "
        f"one of them, or unset it (auto: upstream Dassl if installed, else built-in)."
    )
if _choice == "dassl" and importlib.util.find_spec("dassl") is None:
    raise ConfigError(
        "DASSL_ENGINE=dassl but upstream Dassl is not installed. Install it "
        "(git clone Dassl.pytorch && pip install -e Dassl.pytorch "
        "--no-build-isolation) or unset DASSL_ENGINE to use the built-in engine."
    )

USE_UPSTREAM = _choice == "dassl" or (
    _choice == "auto" and importlib.util.find_spec("dassl") is not None
)

if USE_UPSTREAM:
    ENGINE = "dassl"
    from dassl.config import get_cfg_default
    from dassl.data import DataManager, DatasetWrapper
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
    from dassl.data.transforms import build_transform
    from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from dassl.evaluation import build_evaluator
    from dassl.metrics import compute_accuracy
    from dassl.utils import (
        AverageMeter,
        MetricMeter,
        check_isfile,
        collect_env_info,
        count_num_param,
        listdir_nohidden,
        mkdir_if_missing,
        read_image,
        read_json,
        set_random_seed,
        setup_logger,
        write_json,
    )
else:
    ENGINE = "builtin"
    from builtin_dassl.config import get_cfg_default
    from builtin_dassl.data import (
        DATASET_REGISTRY,
        DataManager,
        DatasetBase,
        DatasetWrapper,
        Datum,
        build_transform,
    )
    from builtin_dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from builtin_dassl.evaluation import build_evaluator
    from builtin_dassl.metrics import compute_accuracy
    from builtin_dassl.utils import (
        AverageMeter,
        MetricMeter,
        check_isfile,
        collect_env_info,
        count_num_param,
        listdir_nohidden,
        mkdir_if_missing,
        read_image,
        read_json,
        set_random_seed,
        setup_logger,
        write_json,
    )

# Always ours, whichever engine runs (see the module docstring).
from builtin_dassl.checkpoint import (  # noqa: E402
    load_checkpoint,
    load_models,
    load_pretrained_weights,
    resume_models,
    save_checkpoint,
    save_models,
)
from builtin_dassl.optim import build_lr_scheduler, build_optimizer  # noqa: E402
