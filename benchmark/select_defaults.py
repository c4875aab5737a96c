"""Choose the benchmark's Proxy-FDA settings on data the report never sees.

    OMP_NUM_THREADS=1 python benchmark/select_defaults.py --root DATA --output OUT [--jobs 2]

Selection data: the held-out set NoisyDigits (benchmark/sets.py; never in the report's table)
and only its validation split (``TEST.SPLIT val``, 80 images: 40 base, 40 novel). Each
candidate is trained on NoisyDigits' 16-shot base classes through the protocol
(tools/protocol.py ``base2new_steps``, one output root per candidate), evaluated on the base
and the novel classes of the val split, for seeds 1 and 2. Score: the harmonic mean of the
two val accuracies, averaged over the seeds. Per trainer the highest score wins; ties go to
the earlier candidate in the list (the config.py defaults come first). The report
(run_benchmark.py) then runs the winners once on the other sets' test splits.

Writes OUT/selection/summary.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmark.run_benchmark import BASE_CFG, REPO, SHOTS, hm, last_accuracy, run_steps  # noqa: E402
from tools.protocol import base2new_steps  # noqa: E402

SELECTION_SET = "noisy_digits"
SEEDS = (1, 2)
_BOTH_TOWERS: Dict[str, List[str]] = {  # MaPLe and PromptSRC: both towers prompted
    "none": [],
    "text1_image1": ["PROXYFDA.ENABLE", "True"],
    "text10_image10": ["PROXYFDA.ENABLE", "True", "PROXYFDA.TEXT_WEIGHT", "10.0",
                       "PROXYFDA.IMAGE_WEIGHT", "10.0"],
    "image30": ["PROXYFDA.ENABLE", "True", "PROXYFDA.TEXT_WEIGHT", "0.0",
                "PROXYFDA.IMAGE_WEIGHT", "30.0"],
}
#: candidates per trainer, KEY VALUE options on top of bench_tiny_clip.yaml; the first is
#: config.py's defaults. CoOp has text prompts only, so only the class-text set applies.
CANDIDATES: Dict[str, Dict[str, List[str]]] = {
    "CoOp": {
        "none": [],
        "text1": ["PROXYFDA.ENABLE", "True", "PROXYFDA.TEXT_WEIGHT", "1.0"],
        "text10": ["PROXYFDA.ENABLE", "True", "PROXYFDA.TEXT_WEIGHT", "10.0"],
    },
    "MaPLe": dict(_BOTH_TOWERS),
    "PromptSRC": dict(_BOTH_TOWERS),
}


def candidate_steps(trainer, name, seed, output, root):
    opts = CANDIDATES[trainer][name] + ["TEST.SPLIT", "val"]
    return base2new_steps(trainer, BASE_CFG, SELECTION_SET, seed,
                          os.path.join(output, "selection", name), root, SHOTS, opts=opts)


def table(output, trainers=tuple(CANDIDATES), seeds=SEEDS) -> str:
    lines = [f"Selection set {SELECTION_SET}, val split, seeds {', '.join(map(str, seeds))}; "
             "score = mean over seeds of HM(base val, novel val).", "",
             "| trainer | candidate | base val | novel val | HM (score) | chosen |",
             "|---|---|---|---|---|---|"]
    for trainer in trainers:
        scores = {}
        for name in CANDIDATES[trainer]:
            b, n = [], []
            for seed in seeds:
                train, test = candidate_steps(trainer, name, seed, output, "")[:2]
                b.append(last_accuracy(train.out_dir))
                n.append(last_accuracy(test.out_dir))
            scores[name] = (np.mean(b), np.mean(n), np.mean([hm(x, y) for x, y in zip(b, n)]))
        ranked = [k for k in CANDIDATES[trainer] if k != "none"]
        best = max(ranked, key=lambda k: (scores[k][2], -ranked.index(k)))
        for name, (b, n, h) in scores.items():
            lines.append(f"| {trainer} | {name} | {b:.1f} | {n:.1f} | {h:.1f} | "
                         f"{'yes' if name == best else ''} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--output", default="output")
    p.add_argument("--trainers", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args(argv)
    root, output = os.path.abspath(a.root), os.path.abspath(a.output)
    os.chdir(REPO)
    jobs = [candidate_steps(t, name, seed, output, root)
            for t in a.trainers for name in CANDIDATES[t] for seed in a.seeds]
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(run_steps, jobs))
    md = table(output, a.trainers, a.seeds)
    os.makedirs(os.path.join(output, "selection"), exist_ok=True)
    with open(os.path.join(output, "selection", "summary.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
