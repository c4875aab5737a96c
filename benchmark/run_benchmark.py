"""Run the CPU benchmark's grid: base-to-novel with the tiny CLIP on the noisy sets, forgetting
on the other sets, and each regularizer's paired difference against no regularizer.

    OMP_NUM_THREADS=1 python benchmark/run_benchmark.py --root DATA --output OUT [--jobs 2]
    OMP_NUM_THREADS=1 python benchmark/run_benchmark.py --root DATA --output OUT --quick --jobs 2

Grid: CoOp, MaPLe, PromptSRC x {none, Proxy-FDA, FDA, LDIFS, PACE} x the report sets
(ClothesAnimals, 20 classes; NoisyMNIST, 10) x seeds 1-3, with the configs
``configs/trainers/<T>/bench_tiny_clip[_<reg>].yaml`` (the Proxy-FDA settings were chosen by
benchmark/select_defaults.py on the held-out NoisyDigits' val split, never on these sets).
``--quick``: NoisyMNIST, CoOp and MaPLe, none and Proxy-FDA, seeds 1-3.

Every number comes from a ``train.py`` run through the protocol (tools/protocol.py):

1. Zero-shot CLIP: ``base2new_steps("ZeroshotCLIP", ...)`` on the base and novel classes of
   each report set, and the same step with ``DATASET.SUBSAMPLE_CLASSES all`` on every set
   (the reference for forgetting).
2. Each grid point: ``base2new_steps(trainer, cfg, set, seed, ...)``: train on the 16-shot
   base classes (train.py's final test is the base accuracy), then test on the novel classes.
3. Forgetting: the trained model evaluated by train.py on every *other* set (report sets
   and NoisyDigits), all its classes, test split: ``tools.protocol.base2new_transfer_step``,
   into ``OUT/base2new/forget/<trained on>/<set>/shots_16/<T>/<cfg>/seed<S>``.

Quantities, per run (set s, seed k):

* base, novel: top-1 on the test split's base / novel classes; HM = 2 b n / (b + n);
* ΔNew = novel - zero-shot novel on s (negative: the novel classes lost);
* forget = mean over the other sets S of acc(S) - zero-shot acc(S), all of S's classes
  (negative: forgotten);
* paired difference of a regularizer against none: d(s, k) = metric(reg, s, k) -
  metric(none, s, k); the table gives the mean over the n = sets x seeds pairs and its 95%
  interval mean ± t(0.975, n - 1) * sd / sqrt(n) (sd with n - 1). The same interval for
  ΔNew (paired against zero-shot).

Writes ``OUT/benchmark/runs/<set>_<T>_<cfg>_seed<S>.json`` (one per run) and
``OUT/benchmark/summary.md``. A finished step is never run again.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Sequence

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.logparse import read_run, run_finished  # noqa: E402
from tools.protocol import (RunKey, Step, base2new_dirs, base2new_steps,  # noqa: E402
                            base2new_transfer_step)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT_SETS = ("clothes_animals", "animals_digits")
SELECTION_SETS = ("noisy_digits",)  # held out: select_defaults.py trains here, on val
#: forgetting is measured on the clean sources (the pretraining domain) that share no source
#: with the training set (benchmark/sets.py)
FORGET_SETS = {"clothes_animals": ("mnist", "digits"),
               "animals_digits": ("fashion_mnist", "mnist")}
ALL_SETS = REPORT_SETS + tuple(sorted({s for v in FORGET_SETS.values() for s in v}))
TRAINERS = ("CoOp", "MaPLe", "PromptSRC")
REGS = ("none", "proxyfda", "fda", "ldifs", "pace")
BASE_CFG = "bench_tiny_clip"
SHOTS = 16
SEEDS = (1, 2, 3)
QUICK = {"sets": ("animals_digits",), "trainers": ("CoOp", "MaPLe"), "regs": ("none", "proxyfda"),
         "seeds": SEEDS}


def cfg_name(reg: str) -> str:
    return BASE_CFG if reg == "none" else f"{BASE_CFG}_{reg}"


# ---------------------------------------------------------------- arithmetic (tested)

def hm(base: float, novel: float) -> float:
    return 2 * base * novel / (base + novel) if base + novel else 0.0


def t_quantile(df: int) -> float:
    """t(0.975, df): the two-sided 95% quantile of Student's t."""
    from scipy.stats import t
    return float(t.ppf(0.975, df))


def mean_ci(values: Sequence[float]) -> dict:
    """Mean and 95% t-interval of ``values`` (sd with n - 1; no interval for n < 2)."""
    v = np.asarray(values, float)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    if n < 2:
        return {"n": n, "mean": mean, "lo": float("nan"), "hi": float("nan")}
    half = t_quantile(n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return {"n": n, "mean": mean, "lo": mean - half, "hi": mean + half}


def paired_differences(rows: List[dict], metric: str, reg: str, ref: str = "none") -> List[float]:
    """metric(reg) - metric(ref) for every (trainer, set, seed) present in both."""
    by_key = {(r["trainer"], r["dataset"], r["seed"], r["reg"]): r[metric] for r in rows}
    return [v - by_key[(t, s, k, ref)] for (t, s, k, g), v in sorted(by_key.items())
            if g == reg and (t, s, k, ref) in by_key]


def forgetting(acc_tuned: Dict[str, float], acc_zs: Dict[str, float]) -> dict:
    """Accuracy change on every set evaluated (the other sets), and their mean."""
    deltas = {s: acc_tuned[s] - acc_zs[s] for s in acc_tuned}
    return {"per_set": deltas,
            "mean": float(np.mean(list(deltas.values()))) if deltas else float("nan")}


def excludes_zero(ci: dict) -> bool:
    return ci["n"] >= 2 and (ci["lo"] > 0 or ci["hi"] < 0)


def fmt_ci(ci: dict, sign: bool = True) -> str:
    """``mean [lo, hi]``, one decimal; `` *`` when the interval excludes 0 (decided on the
    unrounded bounds: [-1.4, +0.0] may or may not)."""
    f = "{:+.1f}" if sign else "{:.1f}"
    if ci["n"] < 2:
        return f.format(ci["mean"])
    mark = " *" if excludes_zero(ci) else ""
    return f"{f.format(ci['mean'])} [{f.format(ci['lo'])}, {f.format(ci['hi'])}]{mark}"


# ---------------------------------------------------------------- running train.py

def last_accuracy(out_dir: str) -> float:
    """The run's result as the results tool reads it (``tools.logparse.read_run``: the newest
    log of this run with a final accuracy), nan if it has none."""
    acc = read_run(out_dir).accuracy
    return float("nan") if acc is None else acc


def run_steps(steps: Sequence[Step]) -> None:
    """Run each unfinished step's train.py, in order (stdout into its own log)."""
    for step in steps:
        if run_finished(step.out_dir):
            continue
        res = subprocess.run(step.command(), cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"failed ({res.returncode}): {' '.join(step.command())}\n"
                               f"{res.stderr[-3000:]}")


def transfer_step(trainer, cfg, trained_on, target, seed, output, root, opts=()) -> Step:
    """train.py evaluating the base-class training of ``trained_on`` on all classes of
    ``target`` (test split): the protocol's ``base2new_transfer_step``."""
    return base2new_transfer_step(trainer, cfg, trained_on, target, seed, output, root, SHOTS,
                                  opts=opts)


def zeroshot_steps(output, root) -> List[Step]:
    """Zero-shot CLIP: base and novel of each report set, all classes of each set."""
    steps = []
    for s in REPORT_SETS:
        steps += base2new_steps("ZeroshotCLIP", BASE_CFG, s, 1, output, root, SHOTS)
    return steps + [transfer_step("ZeroshotCLIP", BASE_CFG, s, s, 1, output, root)
                    for s in ALL_SETS]


def zeroshot_numbers(output) -> Dict[str, dict]:
    out = {}
    for s in ALL_SETS:
        d = base2new_dirs(output, RunKey("ZeroshotCLIP", BASE_CFG, s, SHOTS, 1))
        out[s] = {"base": last_accuracy(d["train_base"]), "novel": last_accuracy(d["test_new"]),
                  "all": last_accuracy(transfer_step("ZeroshotCLIP", BASE_CFG, s, s, 1, output,
                                                     "").out_dir)}
    return out


def run_steps_of(trainer, reg, dataset, seed, output, root) -> List[Step]:
    cfg = cfg_name(reg)
    steps = base2new_steps(trainer, cfg, dataset, seed, output, root, SHOTS)
    return steps + [transfer_step(trainer, cfg, dataset, other, seed, output, root)
                    for other in FORGET_SETS[dataset]]


def record(trainer, reg, dataset, seed, output, zs) -> dict:
    cfg = cfg_name(reg)
    d = base2new_dirs(output, RunKey(trainer, cfg, dataset, SHOTS, seed))
    acc = {other: last_accuracy(transfer_step(trainer, cfg, dataset, other, seed, output,
                                              "").out_dir)
           for other in FORGET_SETS[dataset]}
    base, novel = last_accuracy(d["train_base"]), last_accuracy(d["test_new"])
    fg = forgetting(acc, {s: zs[s]["all"] for s in acc})
    return {"dataset": dataset, "trainer": trainer, "cfg": cfg, "reg": reg, "seed": seed,
            "base": base, "novel": novel, "hm": hm(base, novel),
            "dnew": novel - zs[dataset]["novel"], "dbase": base - zs[dataset]["base"],
            "forget": fg["mean"], "forget_per_set": fg["per_set"]}


def summarize(rows: List[dict], zs: Dict[str, dict], sets: Sequence[str]) -> str:
    lines = []
    zrows = [zs[s] for s in sets]
    if zrows:
        b, n = np.mean([z["base"] for z in zrows]), np.mean([z["novel"] for z in zrows])
        lines += ["Zero-shot CLIP (test): " + "; ".join(
            f"{s} base {zs[s]['base']:.1f} / novel {zs[s]['novel']:.1f} / all "
            f"{zs[s]['all']:.1f}" for s in REPORT_SETS) + "; all classes: " + ", ".join(
            f"{s} {zs[s]['all']:.1f}" for s in ALL_SETS if s not in REPORT_SETS) + f". Mean over {', '.join(sets)}: "
            f"base {b:.1f}, novel {n:.1f}, HM {hm(b, n):.1f}.", ""]
    lines += ["Means over sets x seeds; [lo, hi] = 95% t-interval over the n = sets x seeds "
              "runs (ΔNew, Δbase: paired against zero-shot; forget: mean Δacc on the other "
              "sets); * = the interval excludes 0.", "",
              "| trainer | reg | n | base | novel | HM | Δbase | ΔNew | forget |",
              "|---|---|---|---|---|---|---|---|---|"]
    trainers = [t for t in TRAINERS if any(r["trainer"] == t for r in rows)]
    for t in trainers:
        for reg in REGS:
            rs = [r for r in rows if r["trainer"] == t and r["reg"] == reg]
            if not rs:
                continue
            b, n = np.mean([r["base"] for r in rs]), np.mean([r["novel"] for r in rs])
            lines.append(f"| {t} | {reg} | {len(rs)} | {b:.1f} | {n:.1f} | {hm(b, n):.1f} | "
                         f"{fmt_ci(mean_ci([r['dbase'] for r in rs]))} | "
                         f"{fmt_ci(mean_ci([r['dnew'] for r in rs]))} | "
                         f"{fmt_ci(mean_ci([r['forget'] for r in rs]))} |")
    lines += ["", "Paired difference against no regularizer (same trainer, set, seed): mean "
              "[95% t-interval] over the n pairs.", "",
              "| trainer | reg | n | Δ novel | Δ base | Δ HM | Δ forget |",
              "|---|---|---|---|---|---|---|"]
    for t in trainers:
        trows = [r for r in rows if r["trainer"] == t]
        for reg in REGS[1:]:
            diffs = {m: paired_differences(trows, m, reg) for m in ("novel", "base", "hm",
                                                                    "forget")}
            if not diffs["novel"]:
                continue
            lines.append(f"| {t} | {reg} | {len(diffs['novel'])} | " + " | ".join(
                fmt_ci(mean_ci(diffs[m])) for m in ("novel", "base", "hm", "forget")) + " |")
    lines += ["", "Per set (mean over seeds; seeds 1 / 2 / 3 in brackets):", "",
              "| trainer | reg | set | base | novel | forget |", "|---|---|---|---|---|---|"]
    for t in trainers:
        for reg in REGS:
            for s in sets:
                rs = sorted((r for r in rows if r["trainer"] == t and r["reg"] == reg
                             and r["dataset"] == s), key=lambda r: r["seed"])
                if not rs:
                    continue
                cell = lambda m: f"{np.mean([r[m] for r in rs]):.1f} (" + " / ".join(
                    f"{r[m]:.1f}" for r in rs) + ")"
                lines.append(f"| {t} | {reg} | {s} | {cell('base')} | {cell('novel')} | "
                             f"{cell('forget')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--output", default="output")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--sets", nargs="+", default=list(REPORT_SETS), choices=REPORT_SETS)
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    p.add_argument("--regs", nargs="+", default=list(REGS), choices=REGS)
    p.add_argument("--quick", action="store_true",
                   help="the subset " + ", ".join(f"{k} {' '.join(map(str, v))}"
                                                  for k, v in QUICK.items()))
    p.add_argument("--jobs", type=int, default=1, help="grid points run side by side")
    p.add_argument("--summary-only", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.sets, a.trainers, a.regs, a.seeds = (list(QUICK[k]) for k in
                                               ("sets", "trainers", "regs", "seeds"))
    root, output = os.path.abspath(a.root), os.path.abspath(a.output)
    bench = os.path.join(output, "benchmark")
    os.makedirs(os.path.join(bench, "runs"), exist_ok=True)
    os.chdir(REPO)
    start = time.time()
    if not a.summary_only:
        run_steps(zeroshot_steps(output, root))
    zs = zeroshot_numbers(output)
    # every trainer without a regularizer and with Proxy-FDA first (the headline comparison),
    # then the other regularizers trainer by trainer: a grid cut short still has whole rows
    points = sorted(((t, reg, s, seed) for reg in a.regs for t in a.trainers for s in a.sets
                     for seed in a.seeds),
                    key=lambda p: (p[1] not in ("none", "proxyfda"),
                                   REGS.index(p[1]) if p[1] in ("none", "proxyfda") else 0,
                                   TRAINERS.index(p[0]), REGS.index(p[1]),
                                   REPORT_SETS.index(p[2]), p[3]))

    def one(point):
        t, reg, s, seed = point
        path = os.path.join(bench, "runs", f"{s}_{t}_{cfg_name(reg)}_seed{seed}.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if a.summary_only:
            return None
        t0 = time.time()
        run_steps(run_steps_of(t, reg, s, seed, output, root))
        rec = record(t, reg, s, seed, output, zs)
        rec["seconds"] = round(time.time() - t0, 1)
        with open(path, "w") as f:
            json.dump(rec, f, indent=1)
        print(f"{s} {t} {cfg_name(reg)} seed{seed}: base {rec['base']:.1f} novel "
              f"{rec['novel']:.1f} forget {rec['forget']:+.1f} ({rec['seconds']} s)",
              flush=True)
        return rec

    with ThreadPoolExecutor(a.jobs) as pool:
        rows = [r for r in pool.map(one, points) if r is not None]
    md = summarize(rows, zs, a.sets)
    name = "summary_quick.md" if a.quick else "summary.md"
    with open(os.path.join(bench, name), "w") as f:
        f.write(md)
    print(md)
    import resource
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{len(rows)} runs; wall {time.time() - start:.0f} s; CPU time of the train.py "
          f"subprocesses {child.ru_utime + child.ru_stime:.0f} s")


if __name__ == "__main__":
    main()
