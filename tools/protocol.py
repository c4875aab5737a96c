"""The evaluation protocols, written once: which datasets, which config per trainer, the output
folders of a run and the ``train.py`` arguments of each step.

The per-trainer shell scripts (``scripts/<trainer>/<protocol>.sh``), the sweep launcher
(``tools/sweep.py``: ``grid_jobs``, a protocol's jobs), the results tool (``find_*_keys``: the
runs there are) and the CPU benchmark all go through this module. A trainer is one row of
``TRAINERS``: its registered name, config folder, and its config per protocol group (a name,
or a rule by dataset and shots; few-shot and xd default to the base-to-novel one).

    python -m tools.protocol PROTOCOL TRAINER_DIR [--root DATA] ARGS... [CFG]

PROTOCOL and its ARGS (CFG defaults to the trainer's config for that protocol, dataset and
shots, ``default_config``):

    base2new_train  DATASET SEED [CFG]   train on the base classes (SHOTS per class, default 16)
    base2new_test   DATASET SEED [CFG]   evaluate that training on the novel classes
    few_shot        DATASET SHOTS SEED [CFG]   train on all classes; the final test is the result
    xd_train        SEED [CFG]           train on ImageNet, all classes, SHOTS (16) per class
    xd_test         DATASET|all SEED [CFG]   that model on another dataset (all: the 10 others)
    dg_test         DATASET|all SEED [CFG]   that model on an ImageNet variant (all: the 4)

Environment: DATA (dataset root, or --root), OUTPUT (default output), SHOTS (base2new and xd,
default 16), PYTHON (the interpreter of train.py, default this one), DRY_RUN=1 (print the
train.py commands, run nothing).

Output layout (the peers'):

    base2new  OUTPUT/base2new/{train_base,test_new}/DATASET/shots_K/TRAINER/CFG/seedS
    few-shot  OUTPUT/DATASET/TRAINER/CFG_Kshots/seedS     (xd_train: DATASET = imagenet)
    xd, dg    OUTPUT/evaluation/TRAINER/CFG_Kshots/DATASET/seedS

A run whose log already has its final result is skipped; an unfinished one is run again into
the same folder, and train.py resumes it from its last checkpoint. An evaluation loads the
last epoch of the training (the config's OPTIM.MAX_EPOCH). Zero-shot CLIP is evaluated, never
trained, with CoOp's configs.

This module imports no torch: a script that only skips finished runs starts in a blink.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.logparse import RunIdentity, log_files, run_finished

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------
# Datasets, by their config-file (output folder) names

#: the 11 base-to-novel datasets, in the papers' table order
DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
            "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
XD_SOURCE = "imagenet"
XD_TARGETS = tuple(d for d in DATASETS if d != XD_SOURCE)
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
DEFAULT_SHOTS = 16

# ---------------------------------------------------------------------------------------
# Trainers: their script folder, registered name, config folder and default configs

PROTOCOLS = ("base2new_train", "base2new_test", "few_shot", "xd_train", "xd_test", "dg_test")
# A trainer's config for a protocol group: base2new (train and test), few_shot, xd (xd_train,
# xd_test, dg_test). A rule is a config name, or (dataset, shots) -> config name.
CfgRule = Union[str, Callable[[str, int], str]]


@dataclass(frozen=True)
class Trainer:
    """One row of the trainer table. ``few_shot`` and ``xd`` default to the base2new rule:
    a trainer without a reference protocol of its own runs its base-to-novel config there."""
    name: str  # registered trainer name (--trainer)
    config_dir: str  # folder under configs/trainers/
    base2new: CfgRule
    few_shot: Optional[CfgRule] = None
    xd: Optional[CfgRule] = None
    zeroshot: bool = False  # evaluated, never trained

    def config(self, group: str, dataset: str, shots: int) -> str:
        rule = getattr(self, group) or self.base2new
        return rule if isinstance(rule, str) else rule(dataset, int(shots))


def _coop_base2new(dataset, shots):
    # CoOp's base-to-novel on ImageNet uses the 50-epoch config (the CoCoOp repository's
    # base2new_train.sh, "uncomment this when TRAINER=CoOp and DATASET=imagenet")
    return "vit_b16_ep50_ctxv1" if dataset == "imagenet" else "vit_b16_ctxv1"


def _coop_few_shot(dataset, shots):
    # CoOp's schedule by shots (COOP.md): 50 epochs for 1 shot and for ImageNet, 100 for 2 and
    # 4 shots, 200 for 8 and 16. The paper's backbone is RN50 (configs rn50*); ours ViT-B/16.
    if dataset == "imagenet" or shots <= 1:
        return "vit_b16_ep50"
    return "vit_b16_ep100" if shots <= 4 else "vit_b16"


PROMPTSRC_GPA45 = ("stanford_cars", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat")


def _promptsrc_few_shot(dataset, shots):
    # its few-shot config: GPA 45/5 for these five datasets, 30/30 for the others
    cfg = "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"
    return cfg + "_gpa45" if dataset in PROMPTSRC_GPA45 else cfg


def _mma_base2new(dataset, shots):
    # MMA's run_examples.sh: batch 128 on ImageNet (vit_b16_ep5_imnet), 16 elsewhere
    return "vit_b16_ep5_imnet" if dataset == "imagenet" else "vit_b16_ep5"


def _prograd_base2new(dataset, shots):
    # its README: rn50_ep100 for base-to-novel, rn50_ep50 on ImageNet (ours: the ViT-B/16 twins)
    return "vit_b16_ep50" if dataset == "imagenet" else "vit_b16_ep100"


PROGRAD_LAMBDA08 = ("oxford_flowers", "dtd", "eurosat")


def _prograd_few_shot(dataset, shots):
    # its README: CoOp's epochs by shots (50 for 1 shot and ImageNet, 100 for 2 and 4, 200 for
    # 8 and 16), LAMBDA 0.8 for 8 and 16 shots on Flowers102, DTD and EuroSAT
    if dataset == "imagenet" or shots <= 1:
        return "vit_b16_ep50"
    if shots <= 4:
        return "vit_b16_ep100"
    return "vit_b16_lambda0.8" if dataset in PROGRAD_LAMBDA08 else "vit_b16"


def _tcp(dataset, shots):
    # its train.py trains ImageNet and SUN397 for 25 epochs, the other datasets for 50
    return "vit_b16_ep25_ctxv1" if dataset in ("imagenet", "sun397") else "vit_b16_ep100_ctxv1"


def _cliplora_few_shot(dataset, shots):
    # CLIP-LoRA trains n_iters x shots = 500 x K iterations on every dataset: K epochs of 500
    # (vit_b16: 16); other shot counts take the next config up
    epochs = next((k for k in (1, 2, 4, 8) if shots <= k), 16)
    return "vit_b16" if epochs == 16 else f"vit_b16_ep{epochs}"


#: script folder -> trainer. A new trainer is one row (and its scripts/<folder>/ scripts).
TRAINERS: Dict[str, Trainer] = {
    "zsclip": Trainer("ZeroshotCLIP", "CoOp", "vit_b16", zeroshot=True),
    "coop": Trainer("CoOp", "CoOp", _coop_base2new, _coop_few_shot, "vit_b16_ep50_ctxv1"),
    "cocoop": Trainer("CoCoOp", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"),
    "kgcoop": Trainer("KgCoOp", "KgCoOp", "vit_b16_ep100_ctxv1"),
    "maple": Trainer("MaPLe", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx",
                     xd="vit_b16_c2_ep5_batch4_2ctx_cross_datasets"),
    "ivlp": Trainer("IVLP", "IVLP", "vit_b16_c2_ep5_batch4_2+2ctx"),
    "promptsrc": Trainer("PromptSRC", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx",
                         _promptsrc_few_shot, "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"),
    # xd and DG train on ImageNet, so with MMA's ImageNet config (its xd scripts take the
    # config as an argument and name none)
    "mmadapter": Trainer("MultiModalAdapter", "MultiModalAdapter", _mma_base2new,
                         xd="vit_b16_ep5_imnet"),
    "prograd": Trainer("ProGrad", "ProGrad", _prograd_base2new, _prograd_few_shot, "vit_b16_ep50"),
    "tcp": Trainer("TCP", "TCP", _tcp, xd="vit_b16_ep25_ctxv1"),
    "cliplora": Trainer("CLIPLoRA", "CLIPLoRA", "vit_b16", _cliplora_few_shot),
}


def trainer_entry(name: str) -> Trainer:
    """A trainer by script folder (``coop``) or registered name (``CoOp``)."""
    if name in TRAINERS:
        return TRAINERS[name]
    for entry in TRAINERS.values():
        if entry.name == name:
            return entry
    raise ProtocolError(f"unknown trainer {name!r}; one of {', '.join(TRAINERS)} "
                        f"(or {', '.join(t.name for t in TRAINERS.values())})")


_GROUPS = {"base2new_train": "base2new", "base2new_test": "base2new", "few_shot": "few_shot",
           "xd_train": "xd", "xd_test": "xd", "dg_test": "xd"}


def default_config(trainer: str, protocol: str, dataset: str = "", shots: int = DEFAULT_SHOTS):
    """The config a script (or the sweep) runs when none is named: the trainer table's rule
    for this protocol, dataset and shots."""
    return trainer_entry(trainer).config(_GROUPS[protocol], dataset, int(shots))


def is_default_config(trainer: str, protocol: str, dataset: str, shots: int, cfg: str) -> bool:
    """Whether ``cfg`` is what ``default_config`` picks (False for a trainer not in the table)."""
    try:
        return default_config(trainer, protocol, dataset, shots) == cfg
    except ProtocolError:
        return False


# ---------------------------------------------------------------------------------------
# Runs: key -> folders


@dataclass(frozen=True, order=True)
class RunKey:
    """One base-to-novel grid point."""
    trainer: str
    cfg: str
    dataset: str
    shots: int
    seed: int

    def relpath(self) -> str:
        return os.path.join(self.dataset, f"shots_{self.shots}", self.trainer, self.cfg,
                            f"seed{self.seed}")

    def __str__(self) -> str:
        return f"{self.trainer}/{self.cfg} {self.dataset} shots_{self.shots} seed{self.seed}"


BASE2NEW_SPLITS = ("train_base", "test_new", "test_base")


def base2new_split_root(output_root: str, split: str) -> str:
    """The folder that holds one split's runs (``OUTPUT/base2new/<split>``)."""
    return os.path.join(output_root, "base2new", split)


def base2new_dirs(output_root: str, key: RunKey) -> dict:
    """Run folders of one base-to-novel point: train_base, test_new (and test_base, where
    the CPU benchmark evaluates the base classes)."""
    return {split: os.path.join(base2new_split_root(output_root, split), key.relpath())
            for split in BASE2NEW_SPLITS}


_SHOTS_RE = re.compile(r"^shots_(\d+)$")
_SEED_RE = re.compile(r"^seed(\d+)$")


def _subdirs(path: str) -> List[str]:
    try:
        return sorted(n for n in os.listdir(path)
                      if not n.startswith(".") and os.path.isdir(os.path.join(path, n)))
    except FileNotFoundError:
        return []


def find_run_keys(split_root: str) -> List[RunKey]:
    """Every ``<DATASET>/shots_<K>/<TRAINER>/<CFG>/seed<S>`` folder under ``split_root`` (a
    base2new split) that holds a log file, finished or not."""
    keys = []
    for ds in _subdirs(split_root):
        for shots_dir in _subdirs(os.path.join(split_root, ds)):
            m_shots = _SHOTS_RE.match(shots_dir)
            if not m_shots:
                continue
            for trainer in _subdirs(os.path.join(split_root, ds, shots_dir)):
                for cfg in _subdirs(os.path.join(split_root, ds, shots_dir, trainer)):
                    cfg_dir = os.path.join(split_root, ds, shots_dir, trainer, cfg)
                    for seed_dir in _subdirs(cfg_dir):
                        m_seed = _SEED_RE.match(seed_dir)
                        if m_seed and log_files(os.path.join(cfg_dir, seed_dir)):
                            keys.append(RunKey(trainer, cfg, ds, int(m_shots.group(1)),
                                               int(m_seed.group(1))))
    return sorted(keys)


_SHOTS_CFG_RE = re.compile(r"^(.+)_(\d+)shots$")


def run_identity(run_dir: str) -> Optional[RunIdentity]:
    """The run a folder of one of the layouts above names (``None``: no layout's folder).
    Transfer evaluations pass no shots (their model's shots are in the folder's name), so
    theirs are not checked."""
    parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
    m_seed = _SEED_RE.match(parts[-1]) if parts else None
    if not m_seed or len(parts) < 5:
        return None
    seed = int(m_seed.group(1))
    # base2new/<split>/<DATASET>/shots_<K>/<TRAINER>/<CFG>/seed<S>
    if len(parts) >= 8 and parts[-7] == "base2new" and parts[-6] in BASE2NEW_SPLITS:
        m_shots = _SHOTS_RE.match(parts[-4])
        if m_shots:
            return RunIdentity(parts[-3], parts[-2], parts[-5], int(m_shots.group(1)), seed)
        return None
    # evaluation/<TRAINER>/<CFG>_<K>shots/<DATASET>/seed<S>
    m_cfg = _SHOTS_CFG_RE.match(parts[-3])
    if len(parts) >= 6 and parts[-5] == "evaluation" and m_cfg:
        return RunIdentity(parts[-4], m_cfg.group(1), parts[-2], None, seed)
    # <DATASET>/<TRAINER>/<CFG>_<K>shots/seed<S>
    m_cfg = _SHOTS_CFG_RE.match(parts[-2])
    if m_cfg:
        return RunIdentity(parts[-3], m_cfg.group(1), parts[-4], int(m_cfg.group(2)), seed)
    return None


def few_shot_dir(output_root, trainer, cfg, dataset, shots, seed):
    return os.path.join(output_root, dataset, trainer, f"{cfg}_{shots}shots", f"seed{seed}")


def transfer_root(output_root, trainer, cfg, shots):
    """The folder of every evaluation of one xd training config (all targets and seeds)."""
    return os.path.join(output_root, "evaluation", trainer, f"{cfg}_{shots}shots")


def transfer_dir(output_root, trainer, cfg, shots, dataset, seed):
    return os.path.join(transfer_root(output_root, trainer, cfg, shots), dataset, f"seed{seed}")


def _seed_dirs(folder: str):
    """(seed, path) of the ``seed<S>`` folders in ``folder`` that hold a log."""
    for name in _subdirs(folder):
        m_seed = _SEED_RE.match(name)
        if m_seed and log_files(os.path.join(folder, name)):
            yield int(m_seed.group(1)), os.path.join(folder, name)


def find_few_shot_keys(output_root: str) -> List[RunKey]:
    """Every ``<DATASET>/<TRAINER>/<CFG>_<K>shots/seed<S>`` folder under ``output_root`` that
    holds a log, finished or not: the few-shot runs and the xd trainings (on XD_SOURCE)."""
    keys = []
    for ds in _subdirs(output_root):
        if ds in ("base2new", "evaluation"):
            continue
        for trainer in _subdirs(os.path.join(output_root, ds)):
            for cfg_dir in _subdirs(os.path.join(output_root, ds, trainer)):
                m_cfg = _SHOTS_CFG_RE.match(cfg_dir)
                if m_cfg:
                    keys += [RunKey(trainer, m_cfg.group(1), ds, int(m_cfg.group(2)), seed)
                             for seed, _ in _seed_dirs(os.path.join(output_root, ds, trainer,
                                                                    cfg_dir))]
    return sorted(keys)


def find_transfer_keys(output_root: str) -> List[RunKey]:
    """Every ``evaluation/<TRAINER>/<CFG>_<K>shots/<DATASET>/seed<S>`` folder with a log: the
    xd training of TRAINER/CFG with K shots evaluated on DATASET (the key's dataset)."""
    keys = []
    root = os.path.join(output_root, "evaluation")
    for trainer in _subdirs(root):
        for cfg_dir in _subdirs(os.path.join(root, trainer)):
            m_cfg = _SHOTS_CFG_RE.match(cfg_dir)
            if not m_cfg:
                continue
            for ds in _subdirs(os.path.join(root, trainer, cfg_dir)):
                keys += [RunKey(trainer, m_cfg.group(1), ds, int(m_cfg.group(2)), seed)
                         for seed, _ in _seed_dirs(os.path.join(root, trainer, cfg_dir, ds))]
    return sorted(keys)


def is_xd_training_only(output_root: str, key: RunKey) -> bool:
    """Whether a run of the few-shot layout is an xd training and not a few-shot result: it is
    on XD_SOURCE, its config is not the trainer's few-shot config there, and it is the
    trainer's xd config or has transfer evaluations. (Where the two configs are the same, as
    for CoCoOp, the one run is both.)"""
    if key.dataset != XD_SOURCE or is_default_config(key.trainer, "few_shot", key.dataset,
                                                     key.shots, key.cfg):
        return False
    return (is_default_config(key.trainer, "xd_train", XD_SOURCE, key.shots, key.cfg)
            or os.path.isdir(transfer_root(output_root, key.trainer, key.cfg, key.shots)))


# ---------------------------------------------------------------------------------------
# Steps: folders -> train.py arguments


class ProtocolError(Exception):
    """Bad arguments or missing inputs: one ERROR line."""


@dataclass
class Step:
    """One train.py run: its output folder, its arguments, and the training it evaluates."""
    out_dir: str
    args: List[str]
    model_dir: Optional[str] = None  # a training that must have finished first
    requires: str = ""  # the command that makes that training
    name: str = ""  # within its job: "train", "test", "test_base", or an evaluated dataset

    def command(self, python=None) -> List[str]:
        return [python or sys.executable, "train.py", "--output-dir", self.out_dir, *self.args]


def trainer_config(entry: Trainer, cfg: str) -> str:
    path = os.path.join("configs", "trainers", entry.config_dir, f"{cfg}.yaml")
    if not os.path.isfile(os.path.join(REPO, path)):
        folder = os.path.join(REPO, "configs", "trainers", entry.config_dir)
        names = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) \
            if os.path.isdir(folder) else []
        raise ProtocolError(f"no config {path}. Configs of {entry.config_dir}: {' '.join(names)}")
    return path


def dataset_config(dataset: str) -> str:
    path = os.path.join("configs", "datasets", f"{dataset}.yaml")
    if not os.path.isfile(os.path.join(REPO, path)):
        names = sorted(f[:-5] for f in os.listdir(os.path.join(REPO, "configs", "datasets"))
                       if f.endswith(".yaml"))
        raise ProtocolError(f"no dataset config {path}. Datasets: {' '.join(names)}")
    return path


def load_epoch(config_path: str) -> int:
    """The epoch an evaluation loads: the config's last (OPTIM.MAX_EPOCH)."""
    from tools.config_value import config_value

    return int(config_value(os.path.join(REPO, config_path), "OPTIM.MAX_EPOCH"))


def _common(entry, cfg_path, dataset, seed, root):
    return ["--root", root, "--seed", str(seed), "--trainer", entry.name,
            "--dataset-config-file", dataset_config(dataset), "--config-file", cfg_path]


def _eval_step(entry, cfg_path, out_dir, dataset, seed, root, model_dir, requires,
               extra=(), opts=(), epoch=None, name="") -> Step:
    """``train.py --eval-only`` of the training in ``model_dir`` on ``dataset``, into
    ``out_dir``; ``extra`` then ``opts`` follow ``--eval-only``. It loads ``epoch``, else
    OPTIM.MAX_EPOCH of ``opts``, else the config's; a zero-shot trainer loads nothing."""
    load = []
    if not entry.zeroshot:
        if epoch is None:
            epoch = dict(zip(opts[::2], opts[1::2])).get("OPTIM.MAX_EPOCH")
        if epoch is None:
            epoch = load_epoch(cfg_path)
        load = ["--model-dir", model_dir, "--load-epoch", str(epoch)]
    return Step(out_dir, [*_common(entry, cfg_path, dataset, seed, root), *load, "--eval-only",
                          *extra, *opts],
                model_dir=None if entry.zeroshot else model_dir, requires=requires, name=name)


def base2new_steps(trainer, cfg, dataset, seed, output, root, shots=DEFAULT_SHOTS,
                   test_base=False, load_epoch_arg=None, opts=()) -> List[Step]:
    """Train on the base classes, then evaluate on the novel ones (and, with ``test_base``,
    on the base ones too, into test_base). ``opts``: KEY VALUE config options appended to
    every step. The evaluations load the last epoch: ``load_epoch_arg``, else OPTIM.MAX_EPOCH
    of ``opts``, else the config's."""
    opts = [str(o) for o in opts]
    entry = trainer_entry(trainer)
    cfg_path = trainer_config(entry, cfg)
    dirs = base2new_dirs(output, RunKey(entry.name, cfg, dataset, int(shots), int(seed)))
    zeroshot = ["--eval-only"] if entry.zeroshot else []
    train = Step(dirs["train_base"], [*_common(entry, cfg_path, dataset, seed, root), *zeroshot,
                                      "DATASET.NUM_SHOTS", str(shots),
                                      "DATASET.SUBSAMPLE_CLASSES", "base", *opts], name="train")
    steps = [train]
    for split, classes, name in (("test_new", "new", "test"), ("test_base", "base", "test_base")):
        if split == "test_base" and not test_base:
            continue
        steps.append(_eval_step(entry, cfg_path, dirs[split], dataset, seed, root,
                                dirs["train_base"], f"base2new_train.sh {dataset} {seed} {cfg}",
                                ["DATASET.NUM_SHOTS", str(shots),
                                 "DATASET.SUBSAMPLE_CLASSES", classes],
                                opts, load_epoch_arg, name=name))
    return steps


def base2new_transfer_dir(output_root: str, trained_on: str, key: RunKey) -> str:
    """Where a base-class training on ``trained_on`` is evaluated on all classes of
    ``key.dataset``: ``OUTPUT/base2new/forget/<trained_on>/<key's relpath>``."""
    return os.path.join(output_root, "base2new", "forget", trained_on, key.relpath())


def base2new_transfer_step(trainer, cfg, trained_on, target, seed, output, root,
                           shots=DEFAULT_SHOTS, opts=()) -> Step:
    """Evaluate the base-class training of ``trained_on`` (base2new_steps' first step) on all
    classes of ``target``, test split: what the training kept of another dataset. Config,
    options and loaded epoch are those of the novel-class step; a zero-shot trainer loads
    nothing (``trained_on`` then only names the folder)."""
    entry = trainer_entry(trainer)
    model_dir = base2new_dirs(
        output, RunKey(entry.name, cfg, trained_on, int(shots), int(seed)))["train_base"]
    out_dir = base2new_transfer_dir(output, trained_on,
                                    RunKey(entry.name, cfg, target, int(shots), int(seed)))
    return _eval_step(entry, trainer_config(entry, cfg), out_dir, target, seed, root, model_dir,
                      f"base2new_train.sh {trained_on} {seed} {cfg}",
                      ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", "all"],
                      [str(o) for o in opts])


def few_shot_step(trainer, cfg, dataset, shots, seed, output, root, opts=()) -> Step:
    """Train on all classes of ``dataset``, ``shots`` per class; its final test is the result
    (the few-shot protocol, and xd_train on XD_SOURCE). ``opts``: KEY VALUE appended."""
    entry = trainer_entry(trainer)
    cfg_path = trainer_config(entry, cfg)
    zeroshot = ["--eval-only"] if entry.zeroshot else []
    return Step(few_shot_dir(output, entry.name, cfg, dataset, shots, seed),
                [*_common(entry, cfg_path, dataset, seed, root), *zeroshot,
                 "DATASET.NUM_SHOTS", str(shots), *[str(o) for o in opts]], name="train")


def transfer_steps(trainer, cfg, targets, seed, output, root, shots=DEFAULT_SHOTS,
                   opts=()) -> List[Step]:
    """The XD_SOURCE model (xd_train) evaluated on each target dataset; each step is named
    after its target. ``opts`` as the training's (they also set the epoch loaded)."""
    entry = trainer_entry(trainer)
    cfg_path = trainer_config(entry, cfg)
    model_dir = few_shot_dir(output, entry.name, cfg, XD_SOURCE, shots, seed)
    return [_eval_step(entry, cfg_path, transfer_dir(output, entry.name, cfg, shots, dataset, seed),
                       dataset, seed, root, model_dir, f"xd_train.sh {seed} {cfg}",
                       opts=[str(o) for o in opts], name=dataset)
            for dataset in targets]


def steps_for(protocol, trainer, positionals, cfg, output, root, shots=DEFAULT_SHOTS):
    """The steps of one script call (``positionals`` as the script takes them)."""
    if protocol in ("base2new_train", "base2new_test"):
        dataset, seed = positionals
        cfg = cfg or default_config(trainer, protocol, dataset, shots)
        train, test = base2new_steps(trainer, cfg, dataset, seed, output, root, shots)
        return [train] if protocol == "base2new_train" else [test]
    if protocol == "few_shot":
        dataset, k, seed = positionals
        cfg = cfg or default_config(trainer, protocol, dataset, int(k))
        return [few_shot_step(trainer, cfg, dataset, int(k), seed, output, root)]
    if protocol == "xd_train":
        (seed,) = positionals
        cfg = cfg or default_config(trainer, protocol, XD_SOURCE, shots)
        return [few_shot_step(trainer, cfg, XD_SOURCE, shots, seed, output, root)]
    if protocol in ("xd_test", "dg_test"):
        dataset, seed = positionals
        everything = XD_TARGETS if protocol == "xd_test" else DG_TARGETS
        cfg = cfg or default_config(trainer, protocol, XD_SOURCE, shots)
        return transfer_steps(trainer, cfg, everything if dataset == "all" else [dataset],
                              seed, output, root, shots)
    raise ProtocolError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")


USAGE = {"base2new_train": "DATASET SEED [CFG]", "base2new_test": "DATASET SEED [CFG]",
         "few_shot": "DATASET SHOTS SEED [CFG]", "xd_train": "SEED [CFG]",
         "xd_test": "DATASET|all SEED [CFG]", "dg_test": "DATASET|all SEED [CFG]"}


def found_protocols(output_root: str) -> List[str]:
    """The protocols (GRID_PROTOCOLS' names, in order) that have run folders under
    ``output_root``: base2new/, few-shot folders, xd trainings or evaluations."""
    few_shot = find_few_shot_keys(output_root)
    transfer = find_transfer_keys(output_root)
    xd_only = [k for k in few_shot if is_xd_training_only(output_root, k)]
    found = {
        "base2new": any(find_run_keys(base2new_split_root(output_root, split))
                        for split in BASE2NEW_SPLITS),
        "few_shot": len(xd_only) < len(few_shot),
        "xd": bool(xd_only) or any(k.dataset not in DG_TARGETS for k in transfer),
        "dg": any(k.dataset in DG_TARGETS for k in transfer),
    }
    return [name for name in GRID_PROTOCOLS if found[name]]


# ---------------------------------------------------------------------------------------
# Grids: the jobs of a sweep (tools/sweep.py), per protocol

#: the protocols of a grid, which the results tool also reports, in the papers' order
GRID_PROTOCOLS = ("base2new", "few_shot", "xd", "dg")
FEW_SHOT_SHOTS = (1, 2, 4, 8, 16)  # the few-shot protocol's shots (CoOp's Figure 3)


@dataclass
class Job:
    """What one sweep job runs, in order: a training, then the evaluations of that training.
    An evaluation needs its training finished, so it runs after it in the same job; no job
    waits for another. A step whose log has its final result is skipped."""
    protocol: str  # one of GRID_PROTOCOLS, or several joined by "+" (merge_jobs)
    key: RunKey  # the training: trainer, config, dataset, shots, seed
    steps: List[Step]

    def __str__(self) -> str:
        return f"{self.protocol} {self.key}"


def grid_targets(protocol: str, chosen: Optional[Sequence[str]] = None) -> List[str]:
    """The datasets xd or dg evaluate their XD_SOURCE training on: those of ``chosen`` that
    are the protocol's (dg: the ImageNet variants; xd: any other dataset), else all of its
    own list. None for base2new and few_shot."""
    own = {"xd": XD_TARGETS, "dg": DG_TARGETS}.get(protocol, ())
    if not own or not chosen:
        return list(own)
    mine = [t for t in chosen if (t in DG_TARGETS) == (protocol == "dg")]
    if not mine:
        raise ProtocolError(f"none of the targets {' '.join(chosen)} is a {protocol} target "
                            f"(such as {' '.join(own)})")
    return mine


def grid_jobs(protocol: str, trainer: str, cfg: Optional[str], seeds: Sequence[int],
              output: str, root: str, datasets: Optional[Sequence[str]] = None,
              targets: Optional[Sequence[str]] = None, shots: Optional[Sequence[int]] = None,
              opts: Sequence[str] = ()) -> List[Job]:
    """The jobs of one trainer in a grid. ``cfg`` None: the table's config of each point
    (``default_config``), as the scripts pick it. ``opts``: KEY VALUE options of every step.

    base2new  dataset x shots x seed: train on the base classes, evaluate on the novel ones
    few_shot  dataset x shots x seed: train on all classes (its final test is the result)
    xd, dg    shots x seed: train on XD_SOURCE (xd_train), then evaluate on each target

    Defaults: ``datasets`` the 11 (base2new, few_shot); ``targets``: grid_targets;
    ``shots`` FEW_SHOT_SHOTS for few_shot, else 16. The steps are the scripts' steps."""
    if protocol not in GRID_PROTOCOLS:
        raise ProtocolError(f"unknown protocol {protocol!r}; one of {', '.join(GRID_PROTOCOLS)}")
    name = trainer_entry(trainer).name
    shots = [int(k) for k in (shots or (FEW_SHOT_SHOTS if protocol == "few_shot"
                                        else (DEFAULT_SHOTS,)))]
    opts = [str(o) for o in opts]
    jobs = []
    if protocol in ("xd", "dg"):
        targets = grid_targets(protocol, targets)
        for k in shots:
            for s in seeds:
                c = cfg or default_config(name, "xd_train", XD_SOURCE, k)
                steps = [few_shot_step(name, c, XD_SOURCE, k, s, output, root, opts),
                         *transfer_steps(name, c, targets, s, output, root, k, opts)]
                jobs.append(Job(protocol, RunKey(name, c, XD_SOURCE, k, int(s)), steps))
        return jobs
    for k in shots:
        for ds in datasets or DATASETS:
            for s in seeds:
                if protocol == "base2new":
                    c = cfg or default_config(name, "base2new_train", ds, k)
                    steps = base2new_steps(name, c, ds, s, output, root, k, opts=opts)
                else:
                    c = cfg or default_config(name, "few_shot", ds, k)
                    steps = [few_shot_step(name, c, ds, k, s, output, root, opts)]
                jobs.append(Job(protocol, RunKey(name, c, ds, k, int(s)), steps))
    return jobs


def merge_jobs(jobs: Sequence[Job]) -> List[Job]:
    """One job per training folder, in first-seen order. Jobs that train into the same folder
    (xd and dg of one model; few-shot on XD_SOURCE where a trainer's few-shot and xd configs
    are one) become one job: it trains once, then runs every evaluation once."""
    merged: Dict[str, Job] = {}
    for job in jobs:
        first = job.steps[0]
        have = merged.get(first.out_dir)
        if have is None:
            merged[first.out_dir] = Job(job.protocol, job.key, list(job.steps))
            continue
        if have.steps[0].args != first.args:
            raise ProtocolError(f"two jobs train into {first.out_dir} with different arguments "
                                f"({have} and {job}); give them different configs")
        if job.protocol not in have.protocol.split("+"):
            have.protocol += "+" + job.protocol
        done = {st.out_dir for st in have.steps}
        have.steps += [st for st in job.steps[1:] if st.out_dir not in done]
    return list(merged.values())


# ---------------------------------------------------------------------------------------
# Running a script's steps


def run_step(step: Step, python=None, dry_run=False, echo=print) -> str:
    """Skip a finished run, say when one resumes, run train.py. Returns skipped/ran/printed."""
    if run_finished(step.out_dir):
        echo(f"The results exist in {step.out_dir}: skip this job (finished)")
        return "skipped"
    logs = os.path.isdir(step.out_dir) and any(
        n.startswith("log.txt") for n in os.listdir(step.out_dir))
    echo(f"Resume the unfinished run in {step.out_dir}" if logs
         else f"Run this job and save the output to {step.out_dir}")
    cmd = step.command(python)
    if dry_run:
        echo(shlex.join(cmd))
        return "printed"
    if step.model_dir and not run_finished(step.model_dir):
        raise ProtocolError(f"no finished training in {step.model_dir}; run {step.requires} first")
    rc = subprocess.run(cmd, cwd=REPO).returncode
    if rc != 0:
        raise SystemExit(rc)  # train.py has printed its own ERROR line
    return "ran"


def _data_root(data: Optional[str], caller: str) -> str:
    if not data:
        raise ProtocolError("no dataset root: set DATA=/path/to/datasets or pass --root "
                            "/path/to/datasets")
    root = os.path.abspath(os.path.join(caller, os.path.expanduser(data)))
    if not os.path.isdir(root):
        raise ProtocolError(f"dataset root {root} does not exist (from DATA or --root)")
    return root


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    protocol, trainer, rest = args[0], args[1], args[2:]
    if protocol == "folder":  # the scripts/ folder of a registered trainer (the demo's lookup)
        folders = [d for d, e in TRAINERS.items() if trainer in (d, e.name)]
        if not folders:
            print(f"ERROR: no scripts/*/ folder for TRAINER={trainer}", file=sys.stderr)
            return 1
        print(folders[0])
        return 0
    caller = os.getcwd()
    try:
        entry = trainer_entry(trainer)
        if protocol not in PROTOCOLS:
            raise ProtocolError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
        usage = f"usage: scripts/{trainer}/{protocol}.sh [--root DATA_DIR] {USAGE[protocol]}"
        data, positionals = os.environ.get("DATA"), []
        while rest:
            arg = rest.pop(0)
            if arg == "--root":
                if not rest:
                    raise ProtocolError("--root needs a directory")
                data = rest.pop(0)
            elif arg.startswith("--root="):
                data = arg.split("=", 1)[1]
            elif arg in ("-h", "--help"):
                print(usage)
                return 0
            elif arg.startswith("-"):
                raise ProtocolError(f"unknown option {arg} ({usage})")
            else:
                positionals.append(arg)
        n = len(USAGE[protocol].split()) - 1  # without [CFG]
        if not n <= len(positionals) <= n + 1:
            print(usage, file=sys.stderr)
            return 2
        cfg = positionals[n][:-5] if positionals[n:] and positionals[n].endswith(".yaml") \
            else (positionals[n] if positionals[n:] else None)
        output = os.path.abspath(os.path.join(caller, os.environ.get("OUTPUT") or "output"))
        shots = int(os.environ.get("SHOTS") or DEFAULT_SHOTS)
        os.chdir(REPO)
        steps = steps_for(protocol, entry.name, positionals[:n], cfg, output, "", shots)
        dry_run = os.environ.get("DRY_RUN") == "1"
        root = None
        for step in steps:
            if run_finished(step.out_dir):
                run_step(step)
                continue
            root = root or _data_root(data, caller)
            step.args[step.args.index("--root") + 1] = root
            run_step(step, python=os.environ.get("PYTHON"), dry_run=dry_run)
    except ProtocolError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
