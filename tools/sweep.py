"""Run a grid of any protocol: base-to-novel, few-shot, cross-dataset, domain generalization.

Usage:
    python tools/sweep.py --protocol base2new few_shot xd dg --trainers CoOp PromptSRC \\
        --seeds 1 2 3 --root $DATA [--datasets dtd ...] [--targets imagenet_r ...] \\
        [--shots 1 2 4 8 16] [--output output] [--gpus 0 1 | --cpu]
        [--slurm --partition P --time-min 600 --parallel 16] [--grid grid.yaml] [--dry-run]
        [--opts KEY VALUE ...]

A trainer is ``TRAINER`` (each grid point gets the config the protocol's script would run:
``tools/protocol.py``'s table, e.g. CoOp few-shot by shots and dataset, PromptSRC few-shot
GPA 45/5 on five datasets) or ``TRAINER/CFG`` (that config everywhere).

Jobs per protocol (tools/protocol.py ``grid_jobs``; the folders and train.py arguments are
the scripts' for the same point):

    base2new  per dataset, shots (16) and seed: train on the base classes, then evaluate on
              the novel ones (base2new/{train_base,test_new}/DATASET/shots_K/TRAINER/CFG/seedS)
    few_shot  per dataset, shots (1 2 4 8 16) and seed: train on all classes; the training's
              final test is the result (DATASET/TRAINER/CFG_Kshots/seedS)
    xd        per shots (16) and seed: train on ImageNet, all classes (xd_train), then
              evaluate that model on each target, the 10 other datasets
              (evaluation/TRAINER/CFG_Kshots/DATASET/seedS)
    dg        as xd, the targets being imagenetv2, imagenet_sketch, imagenet_a, imagenet_r

An evaluation needs its training finished, so it runs in the training's job, after it: a
job never waits for another. Jobs that train into the same folder are one job (xd and dg of
one model; few_shot on ImageNet at 16 shots where a trainer's few-shot and xd configs are
one): it trains once and runs every evaluation once. ``--datasets`` picks what base2new and
few_shot train on (default the 11), ``--targets`` what xd and dg evaluate on (default all
of theirs), ``--shots`` overrides every protocol's shots.

A grid YAML holds the same keys (command-line values win)::

    protocol: [few_shot, xd, dg]
    trainers: [CoOp, PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx]
    datasets: [caltech101, dtd]
    targets: [dtd, imagenet_r]
    seeds: [1, 2, 3]
    shots: [16]
    root: /data            # else $DATA
    output: output
    opts: [OPTIM.MAX_EPOCH, "2"]
    step_cmd: "{python} train.py --output-dir {out_dir} {args}"   # the default
    train_cmd: "..."       # base2new only, older templates: {train_dir}, {test_dir},
    test_cmd: "..."        # {load_epoch}, {root}, {trainer}, {cfg}, {dataset}, {seed}, ...

``step_cmd`` is every step's command: ``{args}`` stands for the protocol's train.py
arguments, ``{out_dir}`` for the step's folder (``python -m tools.dassl_log`` in place of
train.py tries a grid without trainers). ``--dry-run`` lists each job left to run with each
step's state (done, resume: a log without a result, todo) and its command.

Resuming: a finished step is recognised from its log (tools/logparse.py) and skipped, so
running the same sweep again runs only what is left; an interrupted training resumes from
its output folder's last checkpoint, because train.py does. On SLURM, wait for (or cancel)
queued jobs before re-running a sweep, or those runs are started twice.

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
from typing import Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import protocol
from tools.logparse import log_files, read_run, run_finished
from tools.protocol import RunKey

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOLS = protocol.GRID_PROTOCOLS
STEP_CMD = "{python} train.py --output-dir {out_dir} {args}"


@dataclass(frozen=True)
class PointStep:
    """One command of a job. ``template``: its command line, a format string over the
    point's fields plus ``out_dir``; the token ``{args}`` stands for ``args`` (the protocol's
    train.py arguments). ``model_dir``: the training an evaluation loads (a template's
    ``{load_epoch}`` is that folder's last checkpoint epoch)."""
    name: str
    run_dir: str
    template: str
    args: Tuple[str, ...] = ()
    model_dir: Optional[str] = None


@dataclass(frozen=True)
class Point:
    """One job of the grid, with everything it needs (it is pickled to the worker): a
    training, then the evaluations of that training (tools/protocol.py ``Job``)."""
    key: RunKey
    steps: Tuple[PointStep, ...]
    fields: Dict[str, str] = field(default_factory=dict)
    opts: Sequence[str] = ()  # appended to every command (custom templates only)
    workdir: str = REPO
    protocol: str = PROTOCOLS[0]

    @property
    def train_dir(self) -> str:
        return self.steps[0].run_dir

    @property
    def test_dir(self) -> Optional[str]:
        return self.steps[1].run_dir if len(self.steps) > 1 else None

    def command(self, step: PointStep, **fields) -> List[str]:
        return _command(step.template, dict(self.fields, out_dir=step.run_dir, **fields),
                        self.opts, step.args)

    def __str__(self) -> str:
        return f"{self.protocol} {self.key}"


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


def _command(template: str, fields: Dict[str, str], opts: Sequence[str],
             args: Sequence[str] = ()) -> List[str]:
    cmd: List[str] = []
    for tok in shlex.split(template):
        if tok == "{args}":
            cmd += [str(a) for a in args]
        else:
            cmd.append(tok.format(**fields))
    return cmd + [str(o) for o in opts]


def _step(name: str, cmd: List[str], run_dir: str) -> str:
    if run_finished(run_dir):
        return "skipped"
    print(f"[sweep] {name}: {shlex.join(cmd)}", flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        raise RuntimeError(f"{name} exited with status {rc}: {shlex.join(cmd)}")
    if not run_finished(run_dir):
        raise RuntimeError(f"{name} exited 0 but {run_dir} has no log with a final result")
    return "ran"


def run_point(point: Point) -> Dict[str, object]:
    """The job: each step in order, a finished one skipped. Runs on the worker."""
    os.chdir(point.workdir)
    status: Dict[str, str] = {}
    accuracy: Dict[str, Optional[float]] = {}
    for step in point.steps:
        extra = {}
        if "{load_epoch}" in step.template and not run_finished(step.run_dir):
            epoch = last_checkpoint_epoch(step.model_dir or point.train_dir)
            if epoch is None:
                raise RuntimeError(f"no model.pth.tar-N checkpoint under {step.model_dir}")
            extra["load_epoch"] = str(epoch)
        status[step.name] = _step(step.name, point.command(step, **extra), step.run_dir)
        accuracy[step.name] = read_run(step.run_dir).accuracy
    return {"status": status, "accuracy": accuracy}


def step_state(step: PointStep) -> str:
    """done (a final result), resume (a log without one: train.py resumes it) or todo."""
    if run_finished(step.run_dir):
        return "done"
    return "resume" if log_files(step.run_dir) else "todo"


def point_done(point: Point) -> bool:
    return all(run_finished(st.run_dir) for st in point.steps)


# ---------------------------------------------------------------------------------------
# Grid


def _trainer_spec(spec: str) -> Tuple[str, Optional[str]]:
    """``TRAINER`` (the protocol's config for each point) or ``TRAINER/CFG``."""
    trainer, _, cfg = spec.partition("/")
    if cfg.endswith(".yaml"):
        cfg = cfg[:-5]
    return trainer, cfg or None


def build_grid(trainers: Sequence[str], datasets: Optional[Sequence[str]], seeds: Sequence[int],
               shots: Optional[Sequence[int]], output: str, root: str,
               train_cmd: Optional[str] = None, test_cmd: Optional[str] = None,
               opts: Sequence[str] = (), workdir: str = REPO,
               protocols: Sequence[str] = PROTOCOLS[:1],
               targets: Optional[Sequence[str]] = None,
               step_cmd: Optional[str] = None) -> List[Point]:
    """The grid's jobs: tools/protocol.py's ``grid_jobs`` for each protocol and trainer, one
    job per training folder (``merge_jobs``). ``datasets`` and ``shots`` None: each
    protocol's own; ``targets``: the xd/dg evaluation datasets (``protocol.grid_targets``).
    Commands: the protocol's train.py commands, or ``step_cmd`` for every step, or (base2new
    only) the older ``train_cmd``/``test_cmd`` templates."""
    output = os.path.abspath(output)
    legacy = bool(train_cmd or test_cmd)
    if legacy and set(protocols) - set(PROTOCOLS[:1]):
        raise SystemExit(f"ERROR: train_cmd/test_cmd are {PROTOCOLS[0]}'s command templates; "
                         f"give other protocols a step_cmd ({STEP_CMD!r} is the default)")
    jobs = []
    try:
        for proto in protocols:
            for spec in trainers:
                trainer, cfg = _trainer_spec(spec)
                jobs += protocol.grid_jobs(proto, trainer, cfg, seeds, output, root,
                                           datasets, targets, shots, () if legacy else opts)
        jobs = protocol.merge_jobs(jobs)
    except protocol.ProtocolError as exc:
        raise SystemExit(f"ERROR: {exc}") from None
    points = []
    for job in jobs:
        k = job.key
        fields = dict(python=sys.executable, root=root, trainer=k.trainer, cfg=k.cfg,
                      dataset=k.dataset, shots=str(k.shots), seed=str(k.seed), output=output,
                      train_dir=job.steps[0].out_dir)
        if legacy:
            fields["test_dir"] = job.steps[1].out_dir
            default = STEP_CMD
            templates = [train_cmd or default, test_cmd or default]
            steps = [PointStep(st.name, st.out_dir, t, tuple(st.args) if t == default else (),
                               st.model_dir or job.steps[0].out_dir)
                     for st, t in zip(job.steps, templates)]
            points.append(Point(k, tuple(steps), fields, tuple(opts), workdir, job.protocol))
            continue
        steps = [PointStep(st.name, st.out_dir, step_cmd or STEP_CMD, tuple(st.args), st.model_dir)
                 for st in job.steps]
        points.append(Point(k, tuple(steps), fields, (), workdir, job.protocol))
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
    status, accuracy = result["status"], result["accuracy"]
    steps = " ".join(f"{name} {status[name]}"
                     + (f" {accuracy[name]:.2f}" if isinstance(accuracy.get(name), float) else "")
                     for name in status)
    return f"done {point}: {steps} [{time.time() - started:.0f}s]"


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


GRID_KEYS = ("protocol", "trainers", "datasets", "targets", "seeds", "shots", "root", "output",
             "opts", "step_cmd", "train_cmd", "test_cmd")
_LIST_KEYS = ("protocol", "trainers", "datasets", "targets", "seeds", "shots", "gpus", "opts")


def _load_yaml(path: Optional[str]) -> dict:
    if not path:
        return {}
    import yaml
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    unknown = set(data) - set(GRID_KEYS) - {"gpus"}
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}")
    return data


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for the grid YAML and "
                                       "command templates.")
    p.add_argument("--grid", help="grid YAML (keys as the options below)")
    p.add_argument("--protocol", nargs="+", choices=PROTOCOLS,
                   help=f"protocols of the grid (default: {PROTOCOLS[0]})")
    p.add_argument("--trainers", nargs="+",
                   help="TRAINER (each point gets the protocol's config) or TRAINER/CFG ...")
    p.add_argument("--datasets", nargs="+", help="datasets of base2new and few_shot "
                                                 "(default: the 11)")
    p.add_argument("--targets", nargs="+", help="evaluation datasets of xd and dg (default: "
                                                "the 10 other datasets; the 4 ImageNet variants)")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--shots", type=int, nargs="+",
                   help="default: 1 2 4 8 16 for few_shot, else 16")
    p.add_argument("--root", help="dataset root (default: $DATA)")
    p.add_argument("--output", help="output root (default: output)")
    p.add_argument("--step-cmd", help=f"command template of every step (default: {STEP_CMD!r})")
    p.add_argument("--train-cmd", help="base2new train command template")
    p.add_argument("--test-cmd", help="base2new test command template")
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
                   help="time limit of one job (a training and its evaluations), minutes")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)

    grid = _load_yaml(args.grid)
    for key in GRID_KEYS + ("gpus",):
        if getattr(args, key) in (None, []) and key in grid:
            value = grid[key]
            if key in _LIST_KEYS and not isinstance(value, list):
                value = [value]
            setattr(args, key, value)
    args.protocol = args.protocol or list(PROTOCOLS[:1])
    unknown = sorted(set(args.protocol) - set(PROTOCOLS))
    if unknown:
        p.error(f"unknown protocol {' '.join(unknown)}; choose from {' '.join(PROTOCOLS)}")
    args.output = args.output or "output"
    args.root = args.root or os.environ.get("DATA", "")
    args.opts = [str(o) for o in (args.opts or [])]
    missing = [k for k in ("trainers", "seeds") if not getattr(args, k)]
    if missing:
        p.error(f"missing {', '.join('--' + m for m in missing)} (on the command line or in --grid)")
    trains_on_datasets = [x for x in args.protocol if not protocol.grid_targets(x)]
    if args.datasets and not trains_on_datasets:
        p.error(f"--datasets names what {' and '.join(PROTOCOLS[:2])} train on; "
                f"{' and '.join(args.protocol)} train on {protocol.XD_SOURCE}: "
                f"name their evaluation datasets with --targets")
    if args.targets and len(trains_on_datasets) == len(args.protocol):
        p.error("--targets names what xd and dg evaluate on; the datasets of "
                f"{' and '.join(args.protocol)} are --datasets")
    commands = [c for c in (args.step_cmd, args.train_cmd) if c]
    if not args.root and not args.dry_run and not (commands and "{root}" not in commands[0]
                                                   and "{args}" not in commands[0]):
        p.error("no dataset root: pass --root or set DATA")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    points = build_grid(args.trainers, args.datasets, args.seeds, args.shots, args.output,
                        args.root or "$DATA", args.train_cmd, args.test_cmd, args.opts,
                        protocols=args.protocol, targets=args.targets, step_cmd=args.step_cmd)
    todo = [p for p in points if not point_done(p)]
    print(f"grid: {len(points)} jobs, {len(points) - len(todo)} already finished, "
          f"{len(todo)} to run", flush=True)
    if args.dry_run:
        for p in todo:
            print(f"  {p}: " + " ".join(f"{st.name}={step_state(st)}" for st in p.steps))
            for st in p.steps:
                print(f"    [{step_state(st)}] {shlex.join(p.command(st, load_epoch='N'))}")
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
