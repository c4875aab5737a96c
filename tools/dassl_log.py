"""Dassl-format logs, written without training anything.

Two uses:
* tests build training and eval-only logs with ``training_log`` / ``eval_log``;
* ``python -m tools.dassl_log`` is a stand-in for ``train.py`` (same ``--output-dir``,
  ``--seed``, ``--eval-only``, ``--model-dir``, ``--load-epoch`` options and trailing
  ``KEY VALUE`` opts). It writes checkpoints per epoch, resumes from the last one, and
  names its log as Dassl's ``setup_logger`` does (``log.txt``, then
  ``log.txt-YYYY-MM-DD-HH-MM-SS``), so the sweep launcher can be tried without trainers.

The lines follow Dassl 0.6.3's (TrainerX.run_epoch, the classification evaluator): ``epoch [e/E] batch [b/B] ...``,
``Finish training`` (older Dassl: ``Finished training``), ``Deploy the last-epoch model``,
``Evaluate on the *test* set``, ``=> result`` and the ``* total/correct/accuracy/error/
macro_f1`` block.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence


def result_block(accuracy: float, decimals: int = 1, total: int = 1000) -> List[str]:
    correct = round(total * accuracy / 100)
    return [
        "=> result",
        f"* total: {total:,}",
        f"* correct: {correct:,}",
        f"* accuracy: {accuracy:.{decimals}f}%",
        f"* error: {100 - accuracy:.{decimals}f}%",
        f"* macro_f1: {max(0.0, accuracy - 0.5):.{decimals}f}%",
    ]


def header(output_dir: str, seed: int, eval_only: bool, trainer: str = "CoOp",
           config_file: Optional[str] = None, dataset_config_file: Optional[str] = None,
           shots: Optional[int] = None) -> List[str]:
    """train.py's header: the arguments, sorted, then the config (only the keys the results
    tool reads: ``config_file`` etc. are left out when not given, as a log cut short)."""
    args = {"eval_only": eval_only, "output_dir": output_dir, "seed": seed, "trainer": trainer,
            "config_file": config_file, "dataset_config_file": dataset_config_file}
    lines = ["***************", "** Arguments **", "***************"]
    lines += [f"{k}: {v}" for k, v in sorted(args.items()) if v is not None]
    lines += ["************", "** Config **", "************", "DATASET:"]
    lines += [f"  NUM_SHOTS: {shots}"] if shots is not None else []
    lines += [f"SEED: {seed}"] + (["TRAINER:", f"  NAME: {trainer}"] if trainer else [])
    return lines + ["Collecting env info ...", f"Loading trainer: {trainer}",
                    "Building transform_train"]


def epoch_lines(epoch: int, max_epoch: int, batches: int = 3) -> List[str]:
    return [f"epoch [{epoch}/{max_epoch}] batch [{b}/{batches}] time 0.101 (0.120) data 0.001 "
            f"(0.003) loss 1.{epoch}{b}00 (1.2000) acc 50.0000 (50.0000) lr 2.0000e-03 "
            f"eta 0:00:0{b}" for b in range(1, batches + 1)]


def training_log(accuracy: Optional[float], max_epoch: int = 2, start_epoch: int = 0,
                 end_line: str = "Finish training", decimals: int = 1,
                 stop_after_epoch: Optional[int] = None, output_dir: str = "out",
                 seed: int = 1, val_accuracy: Optional[float] = None, **run) -> str:
    """A training log. ``stop_after_epoch`` cuts it there (an interrupted run);
    ``val_accuracy`` adds a per-epoch validation result, which is not the final one;
    ``run``: ``header``'s trainer, config_file, dataset_config_file, shots."""
    lines = ["Setting fixed seed: %d" % seed] + header(output_dir, seed, eval_only=False, **run)
    lines.append("No checkpoint found, train from scratch" if start_epoch == 0 else
                 f"Successfully loaded checkpoint (epoch = {start_epoch})")
    for e in range(start_epoch + 1, max_epoch + 1):
        lines += epoch_lines(e, max_epoch)
        if val_accuracy is not None:
            lines += ["Evaluate on the *val* set"] + result_block(val_accuracy, decimals)
        lines.append(f"Checkpoint saved to {output_dir}/prompt_learner/model.pth.tar-{e}")
        if stop_after_epoch is not None and e >= stop_after_epoch:
            return "\n".join(lines) + "\n"
    lines += [end_line, "Deploy the last-epoch model", "Evaluate on the *test* set"]
    if accuracy is not None:
        lines += result_block(accuracy, decimals)
    lines.append("Elapsed: 0:00:42")
    return "\n".join(lines) + "\n"


def eval_log(accuracy: Optional[float], decimals: int = 1, output_dir: str = "out",
             seed: int = 1, load_epoch: int = 2, **run) -> str:
    """An eval-only log (``train.py --eval-only``); ``run`` as in ``training_log``."""
    lines = header(output_dir, seed, eval_only=True, **run)
    lines.append(f'Loading weights to prompt_learner from "{output_dir}/prompt_learner/'
                 f'model.pth.tar-{load_epoch}" (epoch = {load_epoch})')
    lines.append("Evaluate on the *test* set")
    if accuracy is not None:
        lines += result_block(accuracy, decimals)
    return "\n".join(lines) + "\n"


def new_log_path(output_dir: str) -> str:
    """Where Dassl's ``setup_logger`` would write: never over an existing log.txt."""
    path = os.path.join(output_dir, "log.txt")
    if os.path.exists(path):
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
    return path


# ---------------------------------------------------------------------------------------
# Stand-in for train.py


def _checkpoint_epochs(output_dir: str) -> List[int]:
    d = os.path.join(output_dir, "prompt_learner")
    if not os.path.isdir(d):
        return []
    return sorted(int(n.rsplit("-", 1)[1]) for n in os.listdir(d)
                  if n.startswith("model.pth.tar-") and n.rsplit("-", 1)[1].isdigit())


def _fake_accuracy(output_dir: str, seed: int, eval_only: bool) -> float:
    return 60.0 + (sum(map(ord, output_dir)) % 300) / 10.0 + seed * 0.1 + (5 if eval_only else 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Stand-in for train.py that writes Dassl logs.")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--root", help="ignored (train.py's dataset root)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--model-dir", default="")
    p.add_argument("--load-epoch", type=int)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--accuracy", type=float)
    p.add_argument("--crash-if-exists", help="stop with exit 1 after the first epoch "
                                             "when this file exists (an interrupted run)")
    p.add_argument("--sleep-per-epoch", type=float, default=0.0)
    p.add_argument("--hold-after-first-epoch", metavar="FILE",
                   help="after the first epoch's checkpoint, wait (at most 120 s) until FILE "
                        "exists: a run that is certainly in progress, for tests that stop it")
    p.add_argument("--record", help="append one line per invocation to this file")
    p.add_argument("--trainer", help="logged, as the other run arguments below (unchecked "
                                      "by the results tool when not given)")
    p.add_argument("--config-file")
    p.add_argument("--dataset-config-file")
    p.add_argument("opts", nargs="*", help="KEY VALUE config overrides (DATASET.NUM_SHOTS is "
                                           "logged; the others are ignored)")
    args, _ = p.parse_known_args(argv)
    given = dict(zip(args.opts[::2], args.opts[1::2]))
    run = dict(trainer=args.trainer, config_file=args.config_file,
               dataset_config_file=args.dataset_config_file,
               shots=int(given["DATASET.NUM_SHOTS"]) if "DATASET.NUM_SHOTS" in given else None)

    os.makedirs(args.output_dir, exist_ok=True)
    log_path = new_log_path(args.output_dir)
    acc = args.accuracy if args.accuracy is not None else \
        _fake_accuracy(args.output_dir, args.seed, args.eval_only)
    if args.record:
        with open(args.record, "a", encoding="utf-8") as f:
            start = None if args.eval_only else (_checkpoint_epochs(args.output_dir) or [0])[-1]
            kind = "test" if args.eval_only else f"train start_epoch={start}"
            f.write(f"{kind} {os.path.abspath(args.output_dir)}\n")
    if args.eval_only:
        with open(log_path, "w", encoding="utf-8") as f:
            f.write(eval_log(acc, output_dir=args.model_dir, seed=args.seed,
                             load_epoch=args.load_epoch or 0, **run))
        return 0

    done = _checkpoint_epochs(args.output_dir)
    start = done[-1] if done else 0
    crash = bool(args.crash_if_exists and os.path.exists(args.crash_if_exists))
    text = training_log(acc, max_epoch=args.epochs, start_epoch=start,
                        stop_after_epoch=start + 1 if crash else None,
                        output_dir=args.output_dir, seed=args.seed, **run)
    ckpt_dir = os.path.join(args.output_dir, "prompt_learner")
    os.makedirs(ckpt_dir, exist_ok=True)
    # Written line by line, one checkpoint per epoch, so a killed run leaves what Dassl would.
    with open(log_path, "w", encoding="utf-8") as f:
        for line in text.splitlines():
            if line.startswith("epoch [") and " batch [1/" in line:
                time.sleep(args.sleep_per_epoch)
            if line.startswith("Checkpoint saved to"):
                epoch = line.rsplit("-", 1)[1]
                open(os.path.join(ckpt_dir, f"model.pth.tar-{epoch}"), "wb").close()
            f.write(line + "\n")
            f.flush()
            if line.startswith("Checkpoint saved to") and args.hold_after_first_epoch \
                    and int(epoch) == start + 1 and not _wait_for(args.hold_after_first_epoch):
                print(f"gave up waiting for {args.hold_after_first_epoch}", file=sys.stderr)
                return 1
    if crash:
        print("interrupted (stand-in crash)", file=sys.stderr)
        return 1
    return 0

def _wait_for(path: str, limit: float = 120.0) -> bool:
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


if __name__ == "__main__":
    sys.exit(main())
