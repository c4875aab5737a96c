"""Fault injection: a bad input or a broken file ends the run in exactly one ``ERROR:`` line
that names the fix, with no traceback, and nothing that was already written is lost or
changed.

One table, ``FAULTS``. Each row gets a fresh workspace (``Case``: a copy of a small data root
with an image-folder dataset and a split-file dataset, and an output folder), injects its
fault, runs ``train.py`` (in this process; in a fresh interpreter where the fault is in the
imports) or a tool, and is checked the same way:

* the exit code (1 for train.py's ERROR);
* exactly one line starting with ``ERROR:`` (or the row's ``level``), and the message holds
  every phrase of ``fix``: what was wrong and what to do;
* no ``Traceback`` on the console or in any log;
* every file that existed once the fault was in place (a finished run, its checkpoints, the
  dataset's caches) still exists, byte for byte. A row with ``during`` injects its fault
  after an epoch of the run itself, and the files of that moment are the ones kept.

To add a case, add a ``Fault`` row: ``inject(case)`` makes the bad state (``case.train()`` makes
a finished run first where the case is about not harming one), ``argv(case)`` the train.py
arguments (default ``case.args()``), ``fix`` the phrases, ``after(case)`` any further check.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import pytest

from tests.helpers.contract import HookIgnoringCoOp, StepOverridingCoOp, register_for_test
from tests.helpers.tiny import HANG_GUARD, REPO, TINY, train_in_process

CONFIG = "configs/trainers/CoOp/tiny_ctxv1.yaml"
DATASET_CONFIGS = {"toy": "configs/datasets/image_folder.yaml",
                   "digits": "configs/datasets/digits.yaml"}
SHORT = ["OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1"]


# ----------------------------------------------------------------------------- workspace


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A data root with ``toy/`` (an image folder: 4 classes, 4 train and 2 test images each)
    and ``digits/`` (the same images as the benchmark's Digits layout: images/ plus
    split_Digits.json), made once and copied for every case."""
    from datasets.make_toy_dataset import make_toy_dataset

    root = tmp_path_factory.mktemp("faults") / "data"
    make_toy_dataset(str(root / "toy"), classes=4, train_per_class=4, test_per_class=2)
    split = {"train": [], "val": [], "test": []}
    classes = sorted(os.listdir(root / "toy" / "train"))
    for label, folder in enumerate(classes):
        for part in ("train", "test"):
            for name in sorted(os.listdir(root / "toy" / part / folder)):
                rel = f"{folder}/{part}_{name}"
                os.makedirs(root / "digits" / "images" / folder, exist_ok=True)
                shutil.copy(root / "toy" / part / folder / name, root / "digits" / "images" / rel)
                split[part].append([rel, label, folder.replace("_", " ")])
    split["val"] = split["train"][::4]
    (root / "digits" / "split_Digits.json").write_text(json.dumps(split))
    return root


class Case:
    """One row's workspace: ``root`` (the data), ``out`` (the run's output folder, not made)."""

    def __init__(self, tmp_path, template, monkeypatch):
        self.tmp = tmp_path
        self.root = tmp_path / "data"
        shutil.copytree(template, self.root)
        self.out = tmp_path / "output" / "run"
        self.monkeypatch = monkeypatch
        self.saved: Dict[str, bytes] = {}

    def args(self, *extra, dataset="toy", out=None, seed=1, trainer="CoOp", config=CONFIG):
        return ["--root", self.root, "--seed", seed, "--trainer", trainer,
                "--dataset-config-file", DATASET_CONFIGS[dataset], "--config-file", config,
                "--output-dir", out or self.out, *SHORT, *extra]

    def train(self, *extra, dataset="toy", out=None):
        """A run that must succeed (the finished work a fault must not harm)."""
        out = out or self.tmp / "output" / "finished"
        assert train_in_process([str(a) for a in self.args(*extra, dataset=dataset, out=out)]) == 0
        return out

    def images(self, dataset="toy", part="train"):
        base = self.root / dataset / (part if dataset == "toy" else "images")
        paths = sorted(p for p in base.rglob("*.png") if dataset == "toy" or p.name.startswith(part))
        assert paths
        return paths

    def corrupt(self, path, data=b"\x89PNG\r\n\x1a\n this is not an image"):
        self.saved.setdefault(str(path), path.read_bytes())
        path.write_bytes(data)

    def restore(self):
        for path, data in self.saved.items():
            with open(path, "wb") as f:
                f.write(data)


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- runners


def run_in_process(case, argv, env):
    rc = train_in_process([str(a) for a in argv], env=env)
    return rc


def run_subprocess(case, argv, env):
    full_env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", **env)
    proc = subprocess.run([sys.executable, "train.py", *map(str, argv)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=HANG_GUARD)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


# ----------------------------------------------------------------------------- the table


@dataclass
class Fault:
    id: str
    fix: Sequence[str]  # phrases the message must hold: the fault, the file, the fix
    inject: Callable[[Case], None] = lambda case: None
    argv: Callable[[Case], list] = lambda case: case.args()
    env: Dict[str, str] = field(default_factory=dict)
    run: Callable = run_in_process  # (case, argv, env) -> exit code; output on the console
    during: Optional[Callable[[Case, object], None]] = None  # (case, trainer) after each epoch
    after: Optional[Callable[[Case], None]] = None  # further checks once it failed
    exit_code: int = 1
    level: str = "ERROR"


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def drop_key(path, key):
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))


def fewshot_cache(case, shots=2, dataset="toy"):
    return case.root / dataset / "split_fewshot" / f"shot_{shots}-seed_1.json"


def state_dict_without(case, key):
    import torch

    from tests.helpers.tiny import tiny_clip

    state = tiny_clip(seed=0).state_dict()
    del state[key]
    path = case.tmp / "weights" / "clip-without-proj.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path


def corrupt_after_first_epoch(case, trainer):
    if trainer.epoch == 0:
        for path in case.images("toy", "train"):
            case.corrupt(path)


def all_checkpoints_kept(case, epochs):
    for epoch in range(1, epochs + 1):
        assert (case.out / "prompt_learner" / f"model.pth.tar-{epoch}").is_file()


def rerun_after_the_fix_finishes(case):
    ckpt = case.out / "prompt_learner" / "model.pth.tar-1"
    assert ckpt.is_file()  # the finished epoch's checkpoint is still there
    case.restore()
    assert train_in_process([str(a) for a in case.args("DATASET.NUM_SHOTS", "2")]) == 0
    assert (case.out / "prompt_learner" / "model.pth.tar-2").is_file()


def mixed_logs(case):
    """A base-to-novel folder whose novel side holds, beside its own eval log, a newer log of
    another seed's evaluation (copied there by hand)."""
    from tools.dassl_log import eval_log, training_log

    rel = os.path.join("dtd", "shots_16", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "seed1")
    run = dict(trainer="MaPLe", config_file="configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
               dataset_config_file="configs/datasets/dtd.yaml", shots=16)
    train_dir = case.tmp / "output" / "base2new" / "train_base" / rel
    test_dir = case.tmp / "output" / "base2new" / "test_new" / rel
    train_dir.mkdir(parents=True)
    test_dir.mkdir(parents=True)
    (train_dir / "log.txt").write_text(training_log(80.0, seed=1, **run))
    (test_dir / "log.txt").write_text(eval_log(74.4, seed=1, **run))
    (test_dir / "log.txt-2030-01-01-00-00-00").write_text(eval_log(98.6, seed=2, **run))


def run_results(case, argv, env):
    from tools import results

    return results.main([str(case.tmp / "output"), "--out", str(case.tmp / "results")])


def results_use_the_matching_log(case):
    data = json.loads((case.tmp / "results" / "results.json").read_text())
    (row,) = [r for r in data["rows"] if r["dataset"] == "dtd"]
    assert row["novel"] == pytest.approx(74.4)


def dassl_is_installed():
    import importlib.util

    return importlib.util.find_spec("dassl") is not None


def refuse_connections(case):
    import socket

    case.lookups = []

    def no_network(host, *args, **kwargs):
        case.lookups.append(host)
        raise socket.gaierror(-2, "Name or service not known")

    case.monkeypatch.setattr(socket, "getaddrinfo", no_network)
    case.monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def tried_the_network_once(case):
    # One reachability probe, then the error: no download tried, no retries with back-off
    # (which took 45-80 s offline before the probe). Counted, not timed.
    assert len(case.lookups) == 1, case.lookups


def hide_package(name):
    """The Python package ``name`` is not installed, as far as imports can tell."""
    def inject(case):
        import importlib.util

        find_spec = importlib.util.find_spec
        case.monkeypatch.setattr(importlib.util, "find_spec",
                                 lambda n, *a, **k: None if n == name else find_spec(n, *a, **k))
    return inject


def run_prepare_data(case, argv, env):
    from benchmark import prepare_data

    return prepare_data.main([str(a) for a in argv])


def hold_the_lock(case):
    """Another process is writing to the run's folder."""
    import run_folder

    case.held = run_folder.lock(str(case.out))


def release_the_lock(case):
    case.held.__exit__(None, None, None)
    assert train_in_process([str(a) for a in case.args()]) == 0  # then the run goes ahead


def truncate_last_checkpoint(case):
    case.train(out=case.out)
    truncate(case.out / "prompt_learner" / "model.pth.tar-2")


def checkpoints_without_identity(case):
    (case.out / "prompt_learner").mkdir(parents=True)
    (case.out / "prompt_learner" / "model.pth.tar-1").write_bytes(b"from another tool")


FAULTS = [
    # ---- runs into another run's folder (run_folder.py)
    Fault("another_seed_into_a_finished_run",
          inject=lambda case: case.train(out=case.out),
          argv=lambda case: case.args(seed=2),
          fix=["belongs to another run", "SEED 1 -> 2", "Use another --output-dir"]),
    Fault("fewer_epochs_into_a_finished_run",
          inject=lambda case: case.train(out=case.out),
          argv=lambda case: case.args("OPTIM.MAX_EPOCH", "1"),
          fix=["belongs to another run", "OPTIM.MAX_EPOCH 2 -> 1", "Use another --output-dir"]),
    Fault("a_second_writer_into_the_same_folder",
          inject=hold_the_lock, after=release_the_lock,
          fix=["Another process is writing to", "use another --output-dir"]),
    Fault("checkpoints_without_an_identity",
          inject=checkpoints_without_identity,
          fix=["holds checkpoints but no run.json", "use another --output-dir"]),
    Fault("truncated_checkpoint",
          inject=truncate_last_checkpoint,
          fix=["model.pth.tar-2", "resume from epoch 1"]),
    # ---- runs that would silently do nothing
    Fault("max_epoch_0",
          argv=lambda case: case.args("OPTIM.MAX_EPOCH", "0"),
          fix=["OPTIM.MAX_EPOCH must be >= 1, got 0"]),
    Fault("proxyfda_image_set_with_a_batch_of_2",
          argv=lambda case: case.args("DATALOADER.TRAIN_X.BATCH_SIZE", "2", "PROXYFDA.ENABLE", "True",
                                      trainer="MaPLe", config="configs/trainers/MaPLe/tiny_2ctx.yaml"),
          fix=["PROXYFDA.IMAGE_WEIGHT", "a batch of 2", "DATALOADER.TRAIN_X.BATCH_SIZE to 3 or more",
               "PROXYFDA.SAMPLER"]),
    Fault("zero_shot_clip_with_a_regularizer",
          argv=lambda case: ["--eval-only", *case.args("LDIFS.ENABLE", "True", trainer="ZeroshotCLIP")],
          fix=["ZeroshotCLIP learns nothing", "LDIFS.ENABLE False"]),
    Fault("a_regularizer_the_trainer_cannot_feed",
          argv=lambda case: case.args("PACE.ENABLE", "True", trainer="CoCoOp",
                                      config="configs/trainers/CoCoOp/tiny_ctxv1.yaml"),
          fix=["PACE does not apply to CoCoOp", "PACE.ENABLE False"]),
    # ---- the extension contract: what would silently do nothing (tests/helpers/contract.py)
    Fault("a_trainer_that_overrides_the_update",
          inject=lambda case: register_for_test(case.monkeypatch, StepOverridingCoOp),
          argv=lambda case: case.args("PROXYFDA.ENABLE", "True", trainer="StepOverridingCoOp"),
          fix=["StepOverridingCoOp overrides backward_and_update", "leave out the regularizers",
               "adjust_gradients"]),
    Fault("pace_on_a_learner_that_does_not_route_the_prompt_noise",
          inject=lambda case: register_for_test(case.monkeypatch, HookIgnoringCoOp),
          argv=lambda case: case.args("PACE.ENABLE", "True", trainer="HookIgnoringCoOp"),
          fix=["PACE does not apply to HookIgnoringCoOp", "prompt-noise hook", "PACE.ENABLE False"]),
    Fault("ldifs_on_a_learner_that_does_not_return_hidden_states",
          inject=lambda case: register_for_test(case.monkeypatch, HookIgnoringCoOp),
          argv=lambda case: case.args("LDIFS.ENABLE", "True", trainer="HookIgnoringCoOp"),
          fix=["LDIFS does not apply to HookIgnoringCoOp", "'hidden'", "text tower returned 0 of",
               "LDIFS.ENABLE False"]),
    # ---- broken inputs
    Fault("split_json_truncated",
          inject=lambda case: truncate(case.root / "digits" / "split_Digits.json"),
          argv=lambda case: case.args(dataset="digits"),
          fix=["split_Digits.json", "truncated", "prepare_data.py"]),
    Fault("split_json_missing_a_key",
          inject=lambda case: drop_key(case.root / "digits" / "split_Digits.json", "test"),
          argv=lambda case: case.args(dataset="digits"),
          fix=["split_Digits.json", "has no 'test' list", "prepare_data.py"]),
    Fault("missing_images_in_several_splits",
          inject=lambda case: [case.images("digits", part)[i].unlink()
                               for part in ("train", "test") for i in (1, 2)],
          argv=lambda case: case.args(dataset="digits"),
          fix=["4 of 24 images are missing", "2 of 16 in split_Digits.json (train)",
               "2 of 8 in split_Digits.json (test)", "train_001.png", "test_001.png",
               "DATASETS.md"]),
    Fault("fewshot_cache_missing_a_key",
          inject=lambda case: (case.train("DATASET.NUM_SHOTS", "2"),
                               drop_key(fewshot_cache(case), "train")),
          argv=lambda case: case.args("DATASET.NUM_SHOTS", "2"),
          fix=["few-shot cache", "shot_2-seed_1.json", "has no 'train' list", "Delete it"]),
    Fault("fewshot_cache_truncated",
          inject=lambda case: (case.train("DATASET.NUM_SHOTS", "2"), truncate(fewshot_cache(case))),
          argv=lambda case: case.args("DATASET.NUM_SHOTS", "2"),
          fix=["few-shot cache", "shot_2-seed_1.json", "truncated", "Delete it"]),
    Fault("train_batch_size_0",
          argv=lambda case: case.args("DATALOADER.TRAIN_X.BATCH_SIZE", "0"),
          fix=["DATALOADER.TRAIN_X.BATCH_SIZE", "positive integer, got 0",
               "DATALOADER.TRAIN_X.BATCH_SIZE 4"]),
    Fault("corrupt_image_read_by_a_dataloader_worker",
          inject=lambda case: case.corrupt(case.images("toy", "train")[0]),
          argv=lambda case: case.args("DATALOADER.NUM_WORKERS", "1"),
          fix=["toy/train/", "000.png", "corrupt or not an image", "Replace it",
               "checkpoints saved so far are kept"]),
    Fault("corrupt_image_found_mid_training",
          during=corrupt_after_first_epoch,
          argv=lambda case: case.args("DATASET.NUM_SHOTS", "2"),
          fix=["toy/train/", "corrupt or not an image", "checkpoints saved so far are kept"],
          after=rerun_after_the_fix_finishes),
    Fault("corrupt_test_image_after_training",
          inject=lambda case: case.corrupt(case.images("toy", "test")[-1]),
          fix=["toy/test/", "corrupt or not an image", "checkpoints saved so far are kept"],
          after=lambda case: all_checkpoints_kept(case, epochs=2)),
    Fault("corrupt_test_image_for_zero_shot_clip",
          inject=lambda case: case.corrupt(case.images("toy", "test")[-1]),
          argv=lambda case: ["--eval-only", *case.args(trainer="ZeroshotCLIP")],
          fix=["toy/test/", "corrupt or not an image", "Replace it"]),
    Fault("output_dir_cannot_be_created",
          inject=lambda case: (case.tmp / "a_file").write_text("in the way"),
          argv=lambda case: case.args(out=case.tmp / "a_file" / "run"),
          fix=["Cannot create or write the output directory", "a_file/run",
               "Pass --output-dir with a folder you can write to"]),
    Fault("dassl_engine_unknown",
          run=run_subprocess, env={"DASSL_ENGINE": "bogus"},
          fix=["DASSL_ENGINE='bogus'", "'auto', 'builtin', 'dassl'", "unset it"]),
    Fault("dassl_engine_unavailable",
          inject=lambda case: dassl_is_installed() and pytest.skip("upstream Dassl is installed"),
          run=run_subprocess, env={"DASSL_ENGINE": "dassl"},
          fix=["upstream Dassl is not installed", "pip install", "unset DASSL_ENGINE"]),
    Fault("state_dict_without_visual_proj",
          argv=lambda case: case.args("MODEL.BACKBONE.NAME", state_dict_without(case, "visual.proj")),
          fix=["clip-without-proj.pt", "ViT CLIP state dict without 'visual.proj'",
               "original OpenAI-format weights file"]),
    Fault("openai_weights_offline",
          inject=refuse_connections,
          argv=lambda case: case.args("MODEL.BACKBONE.NAME", "ViT-B/16", "MODEL.BACKBONE.PRETRAINED", ""),
          env={"CLIP_CACHE_DIR": "/nonexistent/clip-cache"},
          fix=["Could not get CLIP weights for ViT-B/16", "cannot connect to",
               "MODEL.BACKBONE.NAME /path/to/ViT-B-16.pt"],
          after=tried_the_network_once),
    Fault("benchmark_data_package_missing",
          inject=hide_package("animal_mnist"), run=run_prepare_data,
          argv=lambda case: ["--out", case.tmp / "bench", "--sets", "AnimalsDigits"],
          fix=["'animal_mnist' is not installed", "pip install --no-deps animal-mnist==0.4"]),
    Fault("results_with_a_log_of_another_run",
          inject=mixed_logs, run=run_results, exit_code=0, level="WARNING",
          fix=["log.txt-2030-01-01-00-00-00", "seed 2, not 1", "Move it to its own run folder"],
          after=results_use_the_matching_log),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_ends_in_one_line_naming_the_fix_and_keeps_what_was_written(
        fault, template, tmp_path, monkeypatch, capsys):
    case = Case(tmp_path, template, monkeypatch)
    fault.inject(case)
    capsys.readouterr()
    kept = snapshot(case.tmp)
    if fault.during is not None:
        from dassl_compat import TrainerX

        after_epoch = TrainerX.after_epoch

        def after_epoch_then_inject(trainer):
            after_epoch(trainer)
            fault.during(case, trainer)
            # What exists now must outlive the failure, except the logs this run is writing.
            kept.update({path: digest for path, digest in snapshot(case.tmp).items()
                         if not (case.tmp / path).is_relative_to(case.out)
                         or not (case.tmp / path).name.startswith("log.txt")})

        monkeypatch.setattr(TrainerX, "after_epoch", after_epoch_then_inject)

    rc = fault.run(case, fault.argv(case), fault.env)
    out, err = capsys.readouterr()
    monkeypatch.undo()

    console = out + err
    lines = [line for line in console.splitlines() if line.startswith(f"{fault.level}:")]
    assert rc == fault.exit_code, console[-3000:]
    assert len(lines) == 1, f"{len(lines)} {fault.level} lines:\n" + "\n".join(lines)
    message = console[console.index(lines[0]):]
    for phrase in fault.fix:
        assert phrase in message, f"{phrase!r} not in:\n{message}"
    logs = [p for p in case.tmp.rglob("log.txt*") if p.is_file()]
    for text, where in [(console, "the console")] + [(p.read_text(errors="replace"), p) for p in logs]:
        assert "Traceback (most recent call last)" not in text, f"traceback in {where}"
    now = snapshot(case.tmp)
    for path, digest in kept.items():
        assert path in now, f"{path} was deleted"
        assert now[path] == digest, f"{path} was changed"
    if fault.after is not None:
        fault.after(case)
