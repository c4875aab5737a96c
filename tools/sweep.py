"""Run a base-to-novel grid (trainers × datasets × seeds × shots: train, then test on novel).

Usage:
    python tools/sweep.py --trainers CoOp/vit_b16_ep50 PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx \\
        --datasets caltech101 dtd --seeds 1 2 3 [--shots 16] --root $DATA [--output output]
        [--gpus 0 1 | --cpu] [--slurm --partition P --time-min 600 --parallel 16]
        [--grid grid.yaml] [--dry-run] [--opts KEY VALUE ...]

A grid YAML holds the same keys (command-line values win)::

    trainers: [CoOp/vit_b16_ep50, PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx]
    datasets: [caltech101, dtd]
    seeds: [1, 2, 3]
    shots: [16]
    root: /data            # else $DATA
    output: output
    opts: [OPTIM.MAX_EPOCH, "2"]
    train_cmd: "..."       # command templates (default: tools/protocol.py's commands)
    test_cmd: "..."

One grid point = one job: train on the base classes into
``<output>/base2new/train_base/<DATASET>/shots_<K>/<TRAINER>/<CFG>/seed<S>`` (skipped when its
log already has the final result), then evaluate the last checkpoint on the novel classes
into ``.../test_new/...`` (skipped likewise). A trainer named ZeroshotCLIP is not trained:
both steps are evaluations.

Resuming: a finished step is recognised from its log (tools/logparse.py), so running the same
sweep again runs only what is left; an interrupted training resumes from its output
directory's last checkpoint, because train.py does. On SLURM, wait for (or cancel) queued
jobs before re-running a sweep, or those runs are started twice.

Launching is submitit's (https://github.com/facebookincubator/submitit):
* local (default): ``submitit.LocalExecutor``, one job per slot. The slots are the GPUs
  (``--gpus``, else ``CUDA_VISIBLE_DEVICES``, else every visible CUDA device), each job sees
  only its own GPU through ``CUDA_VISIBLE_DEVICES``; on a machine without a GPU (or with
  ``--cpu``) there is one CPU slot. LocalExecutor starts whatever it is given at once, so
  a thread pool with one worker per slot hands the slots out.
* ``--slurm``: ``submitit.AutoExecutor`` submits a job array (one GPU per job, at most
  ``--parallel`` at a time).
Job logs (stdout/stderr of each run) go to ``<output>/sweep_logs/``. Progress is a tqdm bar
plus one line per finished point; failures are listed at the end (exit status 1).
"""
from __future__ import annotations

import argparse
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import protocol
from tools.logparse import read_run, run_finished
from tools.protocol import RunKey, base2new_dirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The default commands are the protocol's (tools/protocol.py); a grid may give its own
# templates instead ({python}, {root}, {train_dir}, {test_dir}, {load_epoch}, ...).
@dataclass(frozen=True)
class Point:
    """One grid point, with everything a job needs (it is pickled to the worker)."""
    key: RunKey
    train_dir: str
    test_dir: str
    train_cmd: str
    test_cmd: str
    fields: Dict[str, str] = field(default_factory=dict)
    opts: Sequence[str] = ()
    workdir: str = REPO

    def __str__(self) -> str:
        return str(self.key)


def last_checkpoint_epoch(model_dir: str) -> Optional[int]:
    """Highest N over ``<model_dir>/<model name>/model.pth.tar-N`` (Dassl's checkpoint names)."""
    best = None
    if not os.path.isdir(model_dir):
        return None
    for sub in os.listdir(model_dir):
        d = os.path.join(model_dir, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            head, _, tail = name.rpartition("-")
            if head == "model.pth.tar" and tail.isdigit():
                best = max(best or 0, int(tail))
    return best


def _command(template: str, fields: Dict[str, str], opts: Sequence[str]) -> List[str]:
    return [tok.format(**fields) for tok in shlex.split(template)] + [str(o) for o in opts]


def _step(name: str, template: str, run_dir: str, fields: Dict[str, str],
          opts: Sequence[str]) -> str:
    if run_finished(run_dir):
        return "skipped"
    cmd = _command(template, fields, opts)
    print(f"[sweep] {name}: {shlex.join(cmd)}", flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        raise RuntimeError(f"{name} exited with status {rc}: {shlex.join(cmd)}")
    if not run_finished(run_dir):
        raise RuntimeError(f"{name} exited 0 but {run_dir} has no log with a final result")
    return "ran"


def run_point(point: Point) -> Dict[str, object]:
    """The job: train (unless finished), then test (unless finished). Runs on the worker."""
    os.chdir(point.workdir)
    fields = dict(point.fields)
    status = {"train": _step("train", point.train_cmd, point.train_dir, fields, point.opts)}
    if "{load_epoch}" in point.test_cmd and not run_finished(point.test_dir):
        epoch = last_checkpoint_epoch(point.train_dir)
        if epoch is None:
            raise RuntimeError(f"no model.pth.tar-N checkpoint under {point.train_dir}")
        fields["load_epoch"] = str(epoch)
    status["test"] = _step("test", point.test_cmd, point.test_dir, fields, point.opts)
    status["base"] = read_run(point.train_dir).accuracy
    status["novel"] = read_run(point.test_dir).accuracy
    return status


def point_done(point: Point) -> bool:
    return run_finished(point.train_dir) and run_finished(point.test_dir)


# ---------------------------------------------------------------------------------------
# Grid


def _protocol_templates(trainer, cfg, dataset, seed, shots, output):
    """Train and test command templates of one point, from the protocol's steps."""
    train, test = protocol.base2new_steps(trainer, cfg, dataset, seed, output, "{root}", shots,
                                          load_epoch_arg="{load_epoch}")
    return tuple(shlex.join(["{python}", "train.py", "--output-dir", dir_field, *step.args])
                 for step, dir_field in ((train, "{train_dir}"), (test, "{test_dir}")))


def build_grid(trainers: Sequence[str], datasets: Sequence[str], seeds: Sequence[int],
               shots: Sequence[int], output: str, root: str,
               train_cmd: Optional[str] = None, test_cmd: Optional[str] = None,
               opts: Sequence[str] = (), workdir: str = REPO) -> List[Point]:
    points = []
    output = os.path.abspath(output)
    for spec in trainers:
        if "/" not in spec:
            raise SystemExit(f"trainer {spec!r}: write TRAINER/CFG (the config file name "
                             f"under configs/trainers/TRAINER/, without .yaml)")
        trainer, cfg = spec.split("/", 1)
        for k in shots:
            for ds in datasets:
                for s in seeds:
                    key = RunKey(trainer, cfg, ds, int(k), int(s))
                    dirs = base2new_dirs(output, key)
                    fields = dict(python=sys.executable, root=root, trainer=trainer, cfg=cfg,
                                  dataset=ds, shots=str(k), seed=str(s), output=output,
                                  train_dir=dirs["train_base"], test_dir=dirs["test_new"])
                    train, test = train_cmd, test_cmd
                    if not (train and test):
                        try:
                            default = _protocol_templates(trainer, cfg, ds, s, int(k), output)
                        except protocol.ProtocolError as exc:
                            raise SystemExit(f"ERROR: {exc}") from None
                        train, test = train or default[0], test or default[1]
                    points.append(Point(key, dirs["train_base"], dirs["test_new"], train, test,
                                        fields, tuple(opts), workdir))
    return points


def local_slots(gpus: Optional[Sequence[int]], cpu: bool) -> List[Optional[int]]:
    """GPU ids to run on, one run per GPU at a time; ``[None]`` = one CPU slot."""
    if cpu:
        return [None]
    if gpus:
        return list(gpus)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [int(x) for x in visible.split(",") if x.strip().isdigit()]
        return ids or [None]
    try:
        import torch
        n = torch.cuda.device_count()
    except Exception:  # no torch or no driver: CPU
        n = 0
    return list(range(n)) or [None]


# ---------------------------------------------------------------------------------------
# Launch


def _progress(total: int, initial: int):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="run", dynamic_ncols=True, file=sys.stderr)


def _report_line(point: Point, result: Dict[str, object], started: float) -> str:
    acc = " ".join(f"{k} {result[k]:.2f}" for k in ("base", "novel")
                   if isinstance(result.get(k), float))
    return f"done {point} ({result['train']}/{result['test']}) {acc} [{time.time() - started:.0f}s]"


def run_local(points: Sequence[Point], slots: Sequence[Optional[int]], log_dir: str,
              timeout_min: int, bar=None, poll_s: float = 0.2) -> Dict[str, str]:
    """Run points on local slots through submitit's LocalExecutor; returns failures."""
    import submitit

    free: "queue.Queue[Optional[int]]" = queue.Queue()
    for s in slots:
        free.put(s)
    stop = threading.Event()
    failures: Dict[str, str] = {}

    def one(point: Point):
        slot = free.get()
        try:
            if stop.is_set():
                raise RuntimeError("interrupted")
            ex = submitit.LocalExecutor(folder=log_dir)
            ex.update_parameters(timeout_min=timeout_min,
                                 gpus_per_node=0 if slot is None else 1,
                                 visible_gpus=() if slot is None else (slot,))
            started = time.time()
            job = ex.submit(run_point, point)
            while not job.done():
                if stop.is_set():
                    job.cancel(check=False)  # the run resumes next time from its checkpoint
                    raise RuntimeError("interrupted")
                time.sleep(poll_s)
            try:
                return job.result(), started
            except Exception as e:
                raise RuntimeError(f"{_short_error(e)} (log: {job.paths.stderr})") from None
        finally:
            free.put(slot)

    pool = ThreadPoolExecutor(max_workers=len(slots))
    futures = {pool.submit(one, p): p for p in points}
    try:
        for fut in as_completed(futures):
            point = futures[fut]
            try:
                result, started = fut.result()
                msg = _report_line(point, result, started)
            except Exception as e:  # a failed run does not stop the sweep
                failures[str(point)] = _short_error(e)
                msg = f"FAILED {point}: {failures[str(point)]}"
            _emit(bar, msg)
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return failures


def run_slurm(points: Sequence[Point], log_dir: str, timeout_min: int, parallel: int,
              partition: Optional[str], extra: Dict[str, object], bar=None) -> Dict[str, str]:
    import submitit

    ex = submitit.AutoExecutor(folder=log_dir, cluster="slurm")
    params = dict(timeout_min=timeout_min, gpus_per_node=1, tasks_per_node=1, nodes=1,
                  slurm_array_parallelism=parallel, name="b2n-sweep")
    if partition:
        params["slurm_partition"] = partition
    params.update(extra)
    ex.update_parameters(**params)
    with ex.batch():
        jobs = [ex.submit(run_point, p) for p in points]
    print(f"submitted {len(jobs)} SLURM jobs ({jobs[0].job_id.split('_')[0]}_*); "
          f"cancel with scancel if needed", flush=True)
    failures: Dict[str, str] = {}
    pending = dict(zip(jobs, points))
    while pending:
        for job in [j for j in pending if j.done()]:
            point = pending.pop(job)
            try:
                msg = _report_line(point, job.result(), time.time())
            except Exception as e:
                failures[str(point)] = _short_error(e)
                failures[str(point)] += f" (log: {job.paths.stderr})"
                msg = f"FAILED {point}: {failures[str(point)]}"
            _emit(bar, msg)
        time.sleep(10)
    return failures


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit): ")


def _emit(bar, msg: str) -> None:
    if bar is None:
        print(msg, flush=True)
    else:
        bar.write(msg)
        bar.update(1)


def _short_error(e: BaseException) -> str:
    """The exception line of submitit's FailedJobError (it carries the worker's traceback)."""
    lines = [ln for ln in str(e).strip().splitlines() if _EXC_LINE.match(ln)]
    return lines[-1] if lines else (str(e).strip().splitlines() or [type(e).__name__])[0]


# ---------------------------------------------------------------------------------------
# CLI


def _load_yaml(path: Optional[str]) -> dict:
    if not path:
        return {}
    import yaml
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    unknown = set(data) - {"trainers", "datasets", "seeds", "shots", "root", "output", "opts",
                           "train_cmd", "test_cmd", "gpus"}
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}")
    return data


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for the grid YAML and "
                                       "command templates.")
    p.add_argument("--grid", help="grid YAML (keys as the options below)")
    p.add_argument("--trainers", nargs="+", help="TRAINER/CFG ...")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--shots", type=int, nargs="+")
    p.add_argument("--root", help="dataset root (default: $DATA)")
    p.add_argument("--output", help="output root (default: output)")
    p.add_argument("--train-cmd", help="train command template (default: python train.py ...)")
    p.add_argument("--test-cmd", help="test command template")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=None,
                   help="KEY VALUE config overrides appended to every command (last option)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--gpus", type=int, nargs="+", help="local GPU ids, one run per GPU")
    where.add_argument("--cpu", action="store_true", help="run locally on CPU, one at a time")
    where.add_argument("--slurm", action="store_true", help="submit to SLURM with submitit")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--parallel", type=int, default=16, help="SLURM: at most this many at once")
    p.add_argument("--cpus-per-task", type=int, default=8)
    p.add_argument("--mem-gb", type=int, default=32)
    p.add_argument("--time-min", type=int, default=24 * 60,
                   help="time limit of one run (train + test), minutes")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)

    grid = _load_yaml(args.grid)
    for key in ("trainers", "datasets", "seeds", "shots", "root", "output", "opts", "gpus",
                "train_cmd", "test_cmd"):
        if getattr(args, key) in (None, []) and key in grid:
            value = grid[key]
            if key in ("trainers", "datasets", "seeds", "shots", "gpus", "opts") and \
                    not isinstance(value, list):
                value = [value]
            setattr(args, key, value)
    args.shots = args.shots or [16]
    args.output = args.output or "output"
    args.root = args.root or os.environ.get("DATA", "")
    args.opts = [str(o) for o in (args.opts or [])]
    missing = [k for k in ("trainers", "datasets", "seeds") if not getattr(args, k)]
    if missing:
        p.error(f"missing {', '.join('--' + m for m in missing)} (on the command line or in --grid)")
    if not args.root and not (args.train_cmd and "{root}" not in args.train_cmd):
        p.error("no dataset root: pass --root or set DATA")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    points = build_grid(args.trainers, args.datasets, args.seeds, args.shots, args.output,
                        args.root, args.train_cmd, args.test_cmd, args.opts)
    todo = [p for p in points if not point_done(p)]
    print(f"grid: {len(points)} runs, {len(points) - len(todo)} already finished, "
          f"{len(todo)} to run", flush=True)
    if args.dry_run:
        for p in todo:
            print(f"  {p}: train={'done' if run_finished(p.train_dir) else 'todo'} "
                  f"test={'done' if run_finished(p.test_dir) else 'todo'}")
        return 0
    if not todo:
        return 0

    # Workers unpickle run_point by reference, so they must import tools.sweep.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [REPO] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x])
    log_dir = os.path.join(os.path.abspath(args.output), "sweep_logs")
    slots = [] if args.slurm else local_slots(args.gpus, args.cpu)
    if not args.slurm:
        print("slots: " + ", ".join("cpu" if s is None else f"gpu{s}" for s in slots),
              flush=True)
    bar = None if args.no_progress else _progress(len(points), len(points) - len(todo))
    try:
        if args.slurm:
            failures = run_slurm(todo, log_dir, args.time_min, args.parallel, args.partition,
                                 dict(cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb),
                                 bar)
        else:
            failures = run_local(todo, slots, log_dir, args.time_min, bar)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    if failures:
        print(f"{len(failures)} run(s) failed:")
        for name, err in failures.items():
            print(f"  {name}: {err}")
        return 1
    print("all runs finished")
    return 0


if __name__ == "__main__":
    # Import through the package so that submitit pickles run_point by reference.
    from tools.sweep import main as _main
    sys.exit(_main())
