"""Read final accuracies out of Dassl logs (the runs' folders are tools/protocol.py's).

Shared by ``tools/results.py``, ``tools/sweep.py``, ``tools/protocol.py`` and the tests.

What counts as a run's result
-----------------------------
* A training log (it has ``epoch [e/E] batch [b/B]`` lines): the last ``* accuracy: X%``
  after the end-of-training line. Dassl >= 0.6.1 prints ``Finish training``, older Dassl
  ``Finished training``; both are accepted. Evaluations printed before that line (e.g.
  per-epoch validation) are not the result, and a training log with no end-of-training
  line is unfinished: it has no result.
* An eval-only log (``--eval-only``: no training lines, no end-of-training line): the last
  ``* accuracy: X%`` after the last ``=> result``.
* Accuracies with any number of decimals are read (Dassl prints one since 0.6.2, two before).

Which log file of a run directory
---------------------------------
Dassl's ``setup_logger`` never overwrites ``log.txt``: a second run into the same
directory (a resumed training, a repeated evaluation) writes ``log.txt-YYYY-MM-DD-HH-MM-SS``.
So after an interrupted training is resumed, ``log.txt`` holds the unfinished part and the
result sits in the timestamped file. We therefore read ``log.txt`` and its timestamped
siblings, and take the result of the *newest* file that has one (``log.txt`` is the oldest:
it is always written first). Other names (``log.txt.bak``, ``log.txt-old``) are ignored.
``RunResult.log_file`` says which file was used and ``n_results`` how many files had one,
so a repeated evaluation is visible.

Whose log it is
---------------
A run folder's path names its run (tools/protocol.py's layouts: trainer, config, dataset,
shots, seed), and a log prints what it ran (train.py and Dassl print the arguments and the
full config at the top). A log whose trainer, config file, dataset config file, shots or
seed differs from its folder's is another run's (written into the wrong folder, or copied
there): it is skipped, with one warning naming the file, and the folder's result comes
from its own logs only. What a log does not print (a header cut short) is not held against
it. A folder named after no config file of its trainer is a variant of the config whose
name it extends (``bench_tiny_clip_ldifs``: ``bench_tiny_clip.yaml`` plus options), as the
CPU benchmark names its runs; a folder named after a config file holds that file's runs.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

END_OF_TRAINING = ("Finish training", "Finished training")
RESULT_HEADER = "=> result"
ACCURACY_RE = re.compile(r"^\*\s*accuracy:\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*%")
TRAIN_LINE_RE = re.compile(r"^epoch \[\d+/\d+\]")
LOG_NAME = "log.txt"
BACKUP_RE = re.compile(r"^log\.txt-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})$")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ARG_RE = re.compile(r"^([a-z_]+): ?(.*)$")
_CFG_RE = re.compile(r"^( *)([A-Z0-9_]+):(?: (.*))?$")
_HEADER_END = ("Collecting env info", "Loading trainer:", "epoch [")
_HEADER_MAX_LINES = 5000


@dataclass(frozen=True)
class RunIdentity:
    """What a run folder's path says its run is; ``None``: not said (not checked)."""
    trainer: Optional[str] = None
    cfg: Optional[str] = None  # config file name without .yaml
    dataset: Optional[str] = None  # dataset config file name without .yaml
    shots: Optional[int] = None
    seed: Optional[int] = None


def log_header(lines: Iterable[str]) -> Dict[str, str]:
    """The arguments (``trainer``, ``config_file``, ``seed``, ...) and the dotted config keys
    (``DATASET.NUM_SHOTS``, ``SEED``, ...) that a log prints before its run starts."""
    found: Dict[str, str] = {}
    section, stack = None, []
    for n, raw in enumerate(lines):
        line = raw.rstrip("\n")
        if n > _HEADER_MAX_LINES or line.startswith(_HEADER_END):
            break
        if line.startswith("** Arguments **"):
            section = "args"
        elif line.startswith("** Config **"):
            section, stack = "config", []
        elif section == "args" and (m := _ARG_RE.match(line)):
            found.setdefault(m.group(1), m.group(2).strip())
        elif section == "config" and (m := _CFG_RE.match(line)):
            depth = len(m.group(1)) // 2
            stack[depth:] = [m.group(2)]
            if m.group(3) is not None:
                found.setdefault(".".join(stack), m.group(3).strip())
    return found


def _name(path: str) -> str:
    base = os.path.basename(path.strip())
    return base[:-5] if base.endswith(".yaml") else base


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _config_matches(folder_cfg: str, config_file: str) -> bool:
    name = _name(config_file)
    if folder_cfg == name:
        return True
    # A variant folder (see the module docstring): it extends the config's name and is not
    # itself the name of a config file beside it.
    config_dir = os.path.dirname(config_file.strip())
    if not os.path.isabs(config_dir):
        config_dir = os.path.join(REPO, config_dir)
    return (folder_cfg.startswith(name + "_")
            and not os.path.isfile(os.path.join(config_dir, folder_cfg + ".yaml")))


def identity_mismatch(header: Dict[str, str], expect: RunIdentity) -> List[str]:
    """How a log's header differs from ``expect``, one phrase per field (empty: it matches)."""
    differs = []
    trainer = header.get("trainer") or header.get("TRAINER.NAME")
    if expect.trainer is not None and trainer and trainer != expect.trainer:
        differs.append(f"trainer {trainer}, not {expect.trainer}")
    config_file = header.get("config_file")
    if expect.cfg is not None and config_file and not _config_matches(expect.cfg, config_file):
        differs.append(f"config {config_file}, not {expect.cfg}")
    dataset_file = header.get("dataset_config_file")
    if expect.dataset is not None and dataset_file and _name(dataset_file) != expect.dataset:
        differs.append(f"dataset config {dataset_file}, not {expect.dataset}")
    shots = _int(header.get("DATASET.NUM_SHOTS"))
    if expect.shots is not None and shots is not None and shots != expect.shots:
        differs.append(f"{shots} shots, not {expect.shots}")
    seed = _int(header.get("seed"))
    seed = seed if seed is not None and seed >= 0 else _int(header.get("SEED"))
    if expect.seed is not None and seed is not None and seed != expect.seed:
        differs.append(f"seed {seed}, not {expect.seed}")
    return differs


def read_header(path: str) -> Dict[str, str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return log_header(f)


_warned = set()


def warn_once(message: str, key: str) -> None:
    """One warning per file and process: the results tool reads a folder more than once."""
    if key not in _warned:
        _warned.add(key)
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def final_accuracy(lines: Iterable[str]) -> Optional[float]:
    """The run's final test accuracy (percent) from a log's lines, or None if it has none."""
    is_training = False
    after_end = False
    after_result = False
    last_after_end = None
    last_after_result = None
    for raw in lines:
        line = raw.strip()
        if TRAIN_LINE_RE.match(line):
            is_training = True
        elif line in END_OF_TRAINING:
            after_end = True
            after_result = False
        elif line == RESULT_HEADER:
            after_result = True
        else:
            m = ACCURACY_RE.match(line)
            if m and after_result:
                value = float(m.group(1))
                last_after_result = value
                if after_end:
                    last_after_end = value
    if after_end:
        return last_after_end
    if is_training:
        return None
    return last_after_result


def log_files(run_dir: str) -> List[str]:
    """``log.txt`` and its timestamped siblings in ``run_dir``, oldest first."""
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return []
    backups = sorted((m.group(1), n) for n in names for m in [BACKUP_RE.match(n)] if m)
    files = [LOG_NAME] if LOG_NAME in names else []
    files += [n for _, n in backups]
    return [os.path.join(run_dir, n) for n in files]


@dataclass(frozen=True)
class RunResult:
    run_dir: str
    accuracy: Optional[float]  # None: no log, or no log with a result (unfinished)
    log_file: Optional[str]  # the file the accuracy came from
    n_results: int  # how many log files of the run had a result
    skipped: Tuple[str, ...] = field(default=())  # logs of another run in this folder

    @property
    def finished(self) -> bool:
        return self.accuracy is not None


def read_file_accuracy(path: str) -> Optional[float]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return final_accuracy(f)


_FROM_PATH = object()


def read_run(run_dir: str, expect=_FROM_PATH,
             warn: Optional[Callable[[str, str], None]] = warn_once) -> RunResult:
    """The result of one run directory (see the module docstring for which file counts).

    ``expect``: the ``RunIdentity`` its logs must match; by default the one its path names
    (``tools.protocol.run_identity``), ``None`` to check nothing. A log that does not match
    is skipped and passed to ``warn(message, path)``."""
    if expect is _FROM_PATH:
        from tools.protocol import run_identity  # protocol imports this module

        expect = run_identity(run_dir)
    found, skipped = [], []
    for path in log_files(run_dir):
        differs = identity_mismatch(read_header(path), expect) if expect is not None else []
        if differs:
            skipped.append(path)
            if warn is not None:
                warn(f"skipped {path}: it is not a log of the run its folder names "
                     f"({'; '.join(differs)}). Move it to its own run folder.", path)
            continue
        acc = read_file_accuracy(path)
        if acc is not None:
            found.append((path, acc))
    if not found:
        return RunResult(run_dir, None, None, 0, tuple(skipped))
    path, acc = found[-1]
    return RunResult(run_dir, acc, path, len(found), tuple(skipped))


def run_finished(run_dir: str) -> bool:
    return read_run(run_dir).finished


def main(argv=None) -> int:
    """``python -m tools.logparse DIR``: print the run's result (or "unfinished").
    ``--finished DIR``: print nothing; exit 0 if the run has a final result, else 1
    (the scripts use it to skip finished runs)."""
    import argparse

    p = argparse.ArgumentParser(description="Final accuracy of a Dassl run directory.")
    p.add_argument("run_dir")
    p.add_argument("--finished", action="store_true",
                   help="exit status only: 0 if the run has a final result, else 1")
    args = p.parse_args(argv)
    run = read_run(args.run_dir)
    if not args.finished:
        print(f"{run.accuracy:.2f} ({run.log_file})" if run.finished else "unfinished")
    return 0 if run.finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
