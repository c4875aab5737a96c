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
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional

END_OF_TRAINING = ("Finish training", "Finished training")
RESULT_HEADER = "=> result"
ACCURACY_RE = re.compile(r"^\*\s*accuracy:\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*%")
TRAIN_LINE_RE = re.compile(r"^epoch \[\d+/\d+\]")
LOG_NAME = "log.txt"
BACKUP_RE = re.compile(r"^log\.txt-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})$")

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

    @property
    def finished(self) -> bool:
        return self.accuracy is not None


def read_file_accuracy(path: str) -> Optional[float]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return final_accuracy(f)


def read_run(run_dir: str) -> RunResult:
    """The result of one run directory (see the module docstring for which file counts)."""
    found = [(p, a) for p in log_files(run_dir) for a in [read_file_accuracy(p)] if a is not None]
    if not found:
        return RunResult(run_dir, None, None, 0)
    path, acc = found[-1]
    return RunResult(run_dir, acc, path, len(found))


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
