"""Choose the Proxy-FDA defaults on the CPU benchmark: a one-knob-at-a-time sweep.

    OMP_NUM_THREADS=1 python benchmark/sweep_proxyfda.py --root /tmp/bench_data \
        --output /tmp/bench_out --jobs 2 [--trainer MaPLe] [--seeds 1 2 3] [--only w3 k2 ...]
    python benchmark/sweep_proxyfda.py --root /tmp/bench_data --output /tmp/bench_out --table-only

Each variant is one ``benchmark/run_benchmark.py --regs proxyfda --tag <name> --opts ...``
invocation (every set, every seed), so its runs land in the standard output layout under
CFG ``bench_tiny_clip_proxyfda_<name>`` and finished runs are never trained again. ``--jobs``
variants run side by side (one core each). The no-regularizer, default Proxy-FDA and plain
FDA rows come from the runner's own grid (``--regs none proxyfda fda``), run here first.

The table (``OUTPUT/benchmark/sweep_<trainer>.md``) has, per variant, means over sets and
seeds: base, novel, HM of the means, ΔNew, forgetting on the other sets (mean accuracy
change, negative = forgotten), and the Digits and FashionMNIST forgetting separately (the
sets where the unregularized trainer forgets most, and where the regularizer costs most),
and the selection score HM + forget (points; the base-to-novel trade-off and the other sets
count equally, higher is better). ± is the std over seeds of the per-seed mean over sets.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmark.run_benchmark import BASE_CFG, SETS, cfg_name, last_accuracy, run_dirs  # noqa: E402

# name -> config options on top of PROXYFDA.ENABLE True (the defaults of regularizers/config.py
# for every key not named). One knob at a time, then the combinations the first round suggests.
VARIANTS: Dict[str, List[str]] = {
    "w3": ["PROXYFDA.TEXT_WEIGHT", "3.0", "PROXYFDA.IMAGE_WEIGHT", "3.0"],
    "w10": ["PROXYFDA.TEXT_WEIGHT", "10.0", "PROXYFDA.IMAGE_WEIGHT", "10.0"],
    "w30": ["PROXYFDA.TEXT_WEIGHT", "30.0", "PROXYFDA.IMAGE_WEIGHT", "30.0"],
    "k2": ["PROXYFDA.K", "2"],
    "k10": ["PROXYFDA.K", "10"],
    "tau0.05": ["PROXYFDA.TAU", "0.05"],
    "tau0.5": ["PROXYFDA.TAU", "0.5"],
    "negone": ["PROXYFDA.NEG_WEIGHT", "one"],
    "negdissim": ["PROXYFDA.NEG_WEIGHT", "dissim"],
    "textonly": ["PROXYFDA.IMAGE_WEIGHT", "0.0"],
    "imageonly": ["PROXYFDA.TEXT_WEIGHT", "0.0"],
}
# Second round, after the first (which favoured larger loss weights, λ = 30 scoring best):
# a larger λ still, and at λ = 30 proxies off, each feature set alone, and the sharper τ.
W30 = VARIANTS["w30"]
ROUND2: Dict[str, List[str]] = {
    "w100": ["PROXYFDA.TEXT_WEIGHT", "100.0", "PROXYFDA.IMAGE_WEIGHT", "100.0"],
    "w30_fda": W30 + ["PROXYFDA.PROXY.ENABLE", "False"],
    "w30_textonly": ["PROXYFDA.TEXT_WEIGHT", "30.0", "PROXYFDA.IMAGE_WEIGHT", "0.0"],
    "w30_imageonly": ["PROXYFDA.TEXT_WEIGHT", "0.0", "PROXYFDA.IMAGE_WEIGHT", "30.0"],
    "w30_tau0.05": W30 + ["PROXYFDA.TAU", "0.05"],
}
ALL = {**VARIANTS, **ROUND2}
FIXED_ROWS = {"none": "(no regularizer)", "default": "(config.py defaults)",
              "fda": "PROXYFDA.PROXY.ENABLE False"}


def _runner(args: argparse.Namespace, extra: List[str]) -> List[str]:
    return [sys.executable, os.path.join(REPO, "benchmark", "run_benchmark.py"),
            "--root", args.root, "--output", args.output, "--trainers", args.trainer,
            "--seeds", *map(str, args.seeds)] + extra


def _run(cmd: List[str], log: str) -> int:
    with open(log, "w") as f:
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)


def table(output: str, trainer: str, seeds: List[int], names: List[str]) -> str:
    runs = os.path.join(output, "benchmark", "runs")
    rows = [("none", "bench_tiny_clip"), ("default", cfg_name("proxyfda")),
            ("fda", cfg_name("fda"))] + [(n, cfg_name("proxyfda", n)) for n in names]
    lines = [f"{trainer}, seeds {','.join(map(str, seeds))}, all four sets; means over "
             "sets and seeds (forget = accuracy change on the other three sets).", "",
             "| variant | options | runs | base | novel | HM | ΔNew | forget (± seeds) | "
             "forget Digits | forget FashionMNIST | score |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    zs_novel: Dict[str, float] = {}  # zero-shot novel accuracy, from the ZeroshotCLIP logs
    for s in SETS:
        d = run_dirs(output, s, "ZeroshotCLIP", BASE_CFG, 1)["test_new"]
        if os.path.isdir(d):
            zs_novel[s] = last_accuracy(d)
    for name, cfg in rows:
        recs = []
        for s in SETS:
            for seed in seeds:
                p = os.path.join(runs, f"{s}_{trainer}_{cfg}_seed{seed}.json")
                if os.path.exists(p):
                    with open(p) as f:
                        recs.append(json.load(f))
        if not recs:
            continue
        base = np.mean([r["base"] for r in recs])
        novel = np.mean([r["novel"] for r in recs])
        hm = 2 * base * novel / (base + novel)
        dnew = np.mean([r["novel"] - zs_novel.get(r["dataset"], np.nan) for r in recs])
        fg = np.mean([r["eval"]["forgetting"]["mean"] for r in recs])
        # seed spread: the std over seeds of the per-seed mean over sets
        per_seed = [np.mean([r["eval"]["forgetting"]["mean"] for r in recs if r["seed"] == s])
                    for s in sorted({r["seed"] for r in recs})]

        def fset(s):
            v = [r["eval"]["forgetting"]["mean"] for r in recs if r["dataset"] == s]
            return f"{np.mean(v):+.1f}" if v else ""
        opts = " ".join(ALL.get(name, [])) or FIXED_ROWS[name]
        lines.append(f"| {name} | `{opts}` | {len(recs)} | {base:.1f} | {novel:.1f} | {hm:.1f} "
                     f"| {dnew:+.1f} | {fg:+.1f} ± {np.std(per_seed):.1f} | {fset('digits')} | "
                     f"{fset('fashion_mnist')} | {hm + fg:.1f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(output, "benchmark", f"sweep_{trainer}.md"), "w") as f:
        f.write(text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--output", default="output")
    p.add_argument("--trainer", default="MaPLe")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--only", nargs="+", choices=list(ALL), help="variants to run")
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args(argv)
    a.root, a.output = os.path.abspath(a.root), os.path.abspath(a.output)
    names = a.only or list(VARIANTS)
    if not a.table_only:
        logs = os.path.join(a.output, "benchmark", "sweep_logs")
        os.makedirs(logs, exist_ok=True)
        _run(_runner(a, ["--regs", "none", "proxyfda", "fda"]),
             os.path.join(logs, f"{a.trainer}_baselines.log"))
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            codes = list(pool.map(
                lambda n: _run(_runner(a, ["--regs", "proxyfda", "--tag", n, "--opts",
                                           *ALL[n]]),
                               os.path.join(logs, f"{a.trainer}_{n}.log")), names))
        for n, c in zip(names, codes):
            if c:
                print(f"variant {n} failed (exit {c}); see {logs}/{a.trainer}_{n}.log")
    print(table(a.output, a.trainer, a.seeds, [n for n in ALL if n in names or a.table_only]))


if __name__ == "__main__":
    main()
