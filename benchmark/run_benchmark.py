"""Run the CPU benchmark: base-to-novel on each set with the tiny CLIP, forgetting on the
other sets, and feature distances (L2, OTDD) between pre-trained and tuned features.

    OMP_NUM_THREADS=1 python benchmark/run_benchmark.py --root /tmp/bench_data --output output \
        --seeds 1 2 3 [--sets fashion_mnist ...] [--trainers CoOp MaPLe PromptSRC] \
        [--regs none proxyfda fda ldifs] [--tag NAME] [--opts KEY VALUE ...]

What it does (run from the repository root):

1. ZeroshotCLIP, every set: ``train.py --eval-only`` on the base and on the novel classes,
   into ``OUTPUT/base2new/{train_base,test_new}/<set>/shots_16/ZeroshotCLIP/bench_tiny_clip/seed<S>``.
2. Every trainer x regularizer x set x seed: ``train.py`` on the 16-shot base classes into
   ``train_base/.../<TRAINER>/<CFG>/seed<S>``, then ``train.py --eval-only`` of the last
   epoch on the novel classes into ``test_new/...``. CFG is ``bench_tiny_clip`` plus
   ``_proxyfda`` (PROXYFDA.ENABLE True), ``_fda`` (+ PROXYFDA.PROXY.ENABLE False) or
   ``_ldifs`` (LDIFS.ENABLE True), plus ``_<tag>`` when --tag is given. So
   ``python tools/results.py OUTPUT`` tabulates base / novel / HM / ΔNew as for the real 11.
   A run whose last checkpoint exists is not trained again.
3. In-process, for each tuned run and each set S (its own and the other three): the
   trainer is built on S with all 10 classes (the tuned prompts, S's class names), the
   last-epoch weights are loaded, and S's 500 test images are evaluated. The zero-shot
   reference is ZeroshotCLIP (prompt "a photo of a {}.") on the same images and classes.

   * acc(S): top-1 over S's 10 classes. Forgetting on S = acc_tuned(S) - acc_zeroshot(S)
     for S != the training set (negative = forgotten); "forget" in the table is the mean
     over the three other sets.
   * Features of a test image x of S: z(x) = the cosine similarities between x's image
     feature and the 10 class text features of S (10 numbers). Both towers enter z, so a
     text-only method (CoOp) moves it too; the tuned z uses the tuned prompts in both towers,
     the pre-trained z the frozen CLIP with the hand prompt. Also reported: ``img_l2``,
     the same L2 on the L2-normalised image features alone (0 for CoOp, which leaves the
     image tower alone).
   * L2(S) = mean over test images of ||z_tuned(x) - z_pre(x)||_2.
   * OTDD(S) (Alvarez-Melis & Fusi 2020, label-aware, exact, p = 2): the datasets are
     {(z_pre(x), y)} and {(z_tuned(x), y)} with uniform weights. Label distance
     W(y, y') = ot.emd2 between the class-y pre-trained and class-y' tuned features with
     squared Euclidean cost; ground cost c((z, y), (z', y')) = ||z - z'||^2 + W(y, y');
     OTDD = sqrt(ot.emd2(uniform, uniform, c)). (No Gaussian approximation; 500 points.)
   * Correlation: over all (run, other set) pairs, Pearson and Spearman between the
     distance on S and the accuracy change on S.

Writes ``OUTPUT/benchmark/runs/*.json`` (one per run) and ``OUTPUT/benchmark/summary.md`` /
``summary.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETS = ("fashion_mnist", "animal_mnist", "mnist", "digits")
TRAINERS = ("CoOp", "MaPLe", "PromptSRC")
REGS = {
    "none": [],
    "proxyfda": ["PROXYFDA.ENABLE", "True"],
    "fda": ["PROXYFDA.ENABLE", "True", "PROXYFDA.PROXY.ENABLE", "False"],
    "ldifs": ["LDIFS.ENABLE", "True"],
}
BASE_CFG = "bench_tiny_clip"
SHOTS = 16


# ---------------------------------------------------------------- arithmetic (tested)

def l2_distance(z_pre: np.ndarray, z_tuned: np.ndarray) -> float:
    """Mean over rows of the Euclidean distance between matching rows."""
    return float(np.linalg.norm(np.asarray(z_tuned, float) - np.asarray(z_pre, float),
                                axis=1).mean())


def otdd(x: np.ndarray, y: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> float:
    """Label-aware OTDD, exact (ot.emd2), p = 2, uniform weights; see the module docstring."""
    import ot
    x, x2 = np.asarray(x, float), np.asarray(x2, float)
    y, y2 = np.asarray(y), np.asarray(y2)
    labels, labels2 = np.unique(y), np.unique(y2)
    w = np.zeros((len(labels), len(labels2)))
    for i, a in enumerate(labels):
        xa = x[y == a]
        for j, b in enumerate(labels2):
            xb = x2[y2 == b]
            w[i, j] = ot.emd2(ot.unif(len(xa)), ot.unif(len(xb)), ot.dist(xa, xb))
    yi = np.searchsorted(labels, y)
    yj = np.searchsorted(labels2, y2)
    cost = ot.dist(x, x2) + w[yi][:, yj]
    return float(np.sqrt(max(ot.emd2(ot.unif(len(x)), ot.unif(len(x2)), cost), 0.0)))


def forgetting(acc_tuned: Dict[str, float], acc_zs: Dict[str, float], trained_on: str) -> dict:
    """Accuracy change on every set but the training set, and their mean."""
    deltas = {s: acc_tuned[s] - acc_zs[s] for s in acc_tuned if s != trained_on}
    return {"per_set": deltas, "mean": float(np.mean(list(deltas.values()))) if deltas else
            float("nan")}


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v), float)
    ranks[order] = np.arange(len(v), dtype=float)
    for val in np.unique(v):  # average ranks over ties
        m = v == val
        ranks[m] = ranks[m].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return pearson(_ranks(a), _ranks(b))


# ---------------------------------------------------------------- running

def cfg_name(reg: str, tag: str = "") -> str:
    name = BASE_CFG if reg == "none" else f"{BASE_CFG}_{reg}"
    return f"{name}_{tag}" if tag else name


def run_dirs(output: str, dataset: str, trainer: str, cfg: str, seed: int) -> dict:
    rel = os.path.join(dataset, f"shots_{SHOTS}", trainer, cfg, f"seed{seed}")
    return {k: os.path.join(output, "base2new", k, rel) for k in ("train_base", "test_new")}


def _config_file(trainer: str) -> str:
    folder = "CoOp" if trainer == "ZeroshotCLIP" else trainer
    return os.path.join("configs", "trainers", folder, f"{BASE_CFG}.yaml")


def _train_args(root, dataset, trainer, seed, out_dir, subsample, opts, eval_only=False,
                model_dir="", load_epoch=None) -> List[str]:
    args = ["--root", root, "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", os.path.join("configs", "datasets", f"{dataset}.yaml"),
            "--config-file", _config_file(trainer), "--output-dir", out_dir]
    if eval_only:
        args.append("--eval-only")
    if model_dir:
        args += ["--model-dir", model_dir, "--load-epoch", str(load_epoch)]
    return args + ["DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", subsample,
                   *opts]


def _has_result(out_dir: str) -> bool:
    for name in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []:
        if name.startswith("log.txt"):
            with open(os.path.join(out_dir, name), errors="replace") as f:
                if "* accuracy:" in f.read():
                    return True
    return False


def _has_checkpoint(out_dir: str, epoch: int) -> bool:
    return os.path.isdir(out_dir) and any(
        os.path.exists(os.path.join(out_dir, n, f"model.pth.tar-{epoch}"))
        for n in os.listdir(out_dir))


def _train_py(args: List[str]) -> None:
    cmd = [sys.executable, os.path.join(REPO, "train.py"), *args]
    res = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    if res.returncode != 0:
        raise RuntimeError(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-3000:]}")


def _max_epoch(opts: List[str], trainer: str) -> int:
    for k, v in zip(opts[::2], opts[1::2]):
        if k == "OPTIM.MAX_EPOCH":
            return int(v)
    import yaml
    with open(os.path.join(REPO, _config_file(trainer))) as f:
        return int(yaml.safe_load(f)["OPTIM"]["MAX_EPOCH"])


def build_eval_trainer(root, dataset, trainer, seed, opts):
    """A trainer on ``dataset`` with all its classes (stdout silenced).

    Seeded as ``train.py`` seeds a run, before the dataset is built: when the (set, seed)
    few-shot draw is not cached yet, this build draws and caches it, and the draw must be a
    function of the seed, not of what this process did before (an unseeded build here once
    wrote draws that a fresh run does not reproduce).
    """
    sys.path.insert(0, REPO)
    import train as train_mod
    from dassl_compat import build_trainer, set_random_seed
    args = train_mod.build_parser().parse_args(
        _train_args(root, dataset, trainer, seed, "", "all", opts))
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = train_mod.setup_cfg(args)
        set_random_seed(cfg.SEED)
        return build_trainer(cfg)


def features(tr) -> dict:
    """Image features, class text features, z (cosine similarities) and labels on the test set."""
    import torch
    import torch.nn.functional as F
    model = tr.model
    model.eval()
    imgs, labels = [], []
    with torch.no_grad():
        text = F.normalize(model.encode_text_features().float(), dim=-1)
        for batch in tr.test_loader:
            x, y = tr.parse_batch_test(batch)
            imgs.append(F.normalize(model.encode_image_features(x).float(), dim=-1))
            labels.append(y)
    img = torch.cat(imgs)
    z = img @ text.t()
    y = torch.cat(labels).numpy()
    return {"img": img.numpy(), "z": z.numpy(), "y": y,
            "acc": float((z.argmax(1).numpy() == y).mean() * 100)}


def zeroshot_reference(root, sets, seed, output, cache) -> Dict[str, dict]:
    ref = {}
    for s in sets:
        path = os.path.join(cache, f"zeroshot_{s}.npz")
        if not os.path.exists(path):
            with contextlib.redirect_stdout(io.StringIO()):
                tr = build_eval_trainer(root, s, "ZeroshotCLIP", seed, [])
                np.savez(path, **features(tr))
        ref[s] = dict(np.load(path))
        ref[s]["acc"] = float(ref[s]["acc"])
    return ref


def evaluate_run(root, sets, trained_on, trainer, seed, model_dir, epoch, ref, opts) -> dict:
    rec = {"acc": {}, "l2": {}, "img_l2": {}, "otdd": {}}
    for s in sets:
        with contextlib.redirect_stdout(io.StringIO()):
            tr = build_eval_trainer(root, s, trainer, seed, opts)
            tr.load_model(model_dir, epoch=epoch)
            f = features(tr)
        r = ref[s]
        assert (f["y"] == r["y"]).all(), "test order differs from the zero-shot reference"
        rec["acc"][s] = f["acc"]
        rec["l2"][s] = l2_distance(r["z"], f["z"])
        rec["img_l2"][s] = l2_distance(r["img"], f["img"])
        rec["otdd"][s] = otdd(r["z"], r["y"], f["z"], f["y"])
    acc_zs = {s: ref[s]["acc"] for s in sets}
    rec["acc_zeroshot"] = acc_zs
    rec["forgetting"] = forgetting(rec["acc"], acc_zs, trained_on)
    return rec


def last_accuracy(out_dir: str) -> float:
    """The last ``* accuracy: X%`` line of the newest log in out_dir."""
    logs = sorted(n for n in os.listdir(out_dir) if n.startswith("log.txt"))
    val = float("nan")
    for name in logs:
        with open(os.path.join(out_dir, name), errors="replace") as f:
            for line in f:
                if line.startswith("* accuracy:"):
                    val = float(line.split(":")[1].strip().rstrip("%"))
    return val


def correlations(pairs: Dict[str, list]) -> Dict[str, dict]:
    """Pearson and Spearman of each distance against the accuracy change, over all pairs
    ("all") and over each trainer's pairs alone (which removes the between-trainer step-size
    differences that dominate the pooled numbers)."""
    trainers = np.asarray(pairs["trainer"])
    out = {}
    for group in ["all"] + sorted(set(pairs["trainer"])):
        keep = np.ones(len(trainers), bool) if group == "all" else trainers == group
        dacc = np.asarray(pairs["dacc"], float)[keep]
        out[group] = {}
        for k in ("l2", "otdd", "img_l2"):
            dist = np.asarray(pairs[k], float)[keep]
            out[group][k] = {"n": int(keep.sum()), "pearson": pearson(dist, dacc),
                             "spearman": spearman(dist, dacc)}
    return out


def summarize(records: List[dict], out_dir: str, zs: Dict[str, dict]) -> str:
    groups: Dict[tuple, List[dict]] = {}
    for r in records:
        groups.setdefault((r["trainer"], r["cfg"]), []).append(r)
    lines = ["| trainer | cfg | runs | base | novel | HM | ΔNew | own-set Δacc (10 cls) | "
             "forget (Δacc other sets) | L2 other | OTDD other | img L2 other |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    zs_rows = [z for z in zs.values()]
    if zs_rows:
        b = np.mean([z["base"] for z in zs_rows]); n = np.mean([z["novel"] for z in zs_rows])
        lines.append(f"| ZeroshotCLIP | {BASE_CFG} | {len(zs_rows)} | {b:.1f} | {n:.1f} | "
                     f"{2*b*n/(b+n):.1f} | 0 | 0 | 0 | 0 | 0 | 0 |")

    def ms(vals, dec=1):
        vals = np.asarray(vals, float)
        return f"{vals.mean():.{dec}f} ± {vals.std():.{dec}f}"

    pairs = {"l2": [], "otdd": [], "img_l2": [], "dacc": [], "trainer": []}
    for (trainer, cfg), rs in sorted(groups.items()):
        base = [r["base"] for r in rs]; novel = [r["novel"] for r in rs]
        dnew = [r["novel"] - zs[r["dataset"]]["novel"] for r in rs]
        own = [r["eval"]["acc"][r["dataset"]] - r["eval"]["acc_zeroshot"][r["dataset"]]
               for r in rs]
        fg = [r["eval"]["forgetting"]["mean"] for r in rs]
        others = lambda key: [np.mean([v for s, v in r["eval"][key].items()
                                       if s != r["dataset"]]) for r in rs]
        b, n = np.mean(base), np.mean(novel)
        lines.append(f"| {trainer} | {cfg} | {len(rs)} | {ms(base)} | {ms(novel)} | "
                     f"{2*b*n/(b+n):.1f} | {ms(dnew)} | {ms(own)} | {ms(fg)} | "
                     f"{ms(others('l2'), 4)} | {ms(others('otdd'), 4)} | {ms(others('img_l2'), 4)} |")
        for r in rs:
            for s, d in r["eval"]["forgetting"]["per_set"].items():
                pairs["dacc"].append(d)
                pairs["trainer"].append(trainer)
                for k in ("l2", "otdd", "img_l2"):
                    pairs[k].append(r["eval"][k][s])
    corr = correlations(pairs)
    lines += ["", "Correlation with the accuracy change on the other sets, over (run, other "
              "set) pairs, all trainers pooled and per trainer (negative = larger distance, "
              "more forgetting):", "", "| pairs | n | distance | Pearson | Spearman |",
              "|---|---|---|---|---|"]
    for group, cs in corr.items():
        for k, c in cs.items():
            lines.append(f"| {group} | {c['n']} | {k} | {c['pearson']:.3f} | "
                         f"{c['spearman']:.3f} |")
    lines += ["", "± is the population std over runs (seeds x sets), ddof=0; base / novel / "
              "ΔNew are means over sets and seeds."]
    md = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"correlation": corr, "pairs": pairs, "zeroshot": zs}, f, indent=1)
    return md


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--output", default="output")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    p.add_argument("--regs", nargs="+", default=list(REGS), choices=list(REGS))
    p.add_argument("--tag", default="", help="suffix of the CFG directory name (for --opts)")
    p.add_argument("--opts", nargs="*", default=[], help="extra KEY VALUE config options")
    p.add_argument("--summary-only", action="store_true")
    a = p.parse_args(argv)
    root = os.path.abspath(a.root)
    output = os.path.abspath(a.output)
    bench = os.path.join(output, "benchmark")
    os.makedirs(os.path.join(bench, "runs"), exist_ok=True)
    os.chdir(REPO)

    # 1. zero-shot, base and novel, through train.py (evaluation is seed-independent)
    zs = {}
    for s in a.sets:
        d = run_dirs(output, s, "ZeroshotCLIP", BASE_CFG, 1)
        for split, sub in (("train_base", "base"), ("test_new", "new")):
            if not _has_result(d[split]) and not a.summary_only:
                _train_py(_train_args(root, s, "ZeroshotCLIP", 1, d[split], sub, [],
                                      eval_only=True))
        zs[s] = {"base": last_accuracy(d["train_base"]), "novel": last_accuracy(d["test_new"])}
    ref = zeroshot_reference(root, SETS, 1, output, bench)

    records = []
    for trainer in a.trainers:
        for reg in a.regs:
            cfg = cfg_name(reg, a.tag)
            opts = REGS[reg] + list(a.opts)
            epoch = _max_epoch(a.opts, trainer)
            for s in a.sets:
                for seed in a.seeds:
                    rec_path = os.path.join(bench, "runs", f"{s}_{trainer}_{cfg}_seed{seed}.json")
                    if os.path.exists(rec_path):
                        with open(rec_path) as f:
                            records.append(json.load(f))
                        continue
                    if a.summary_only:
                        continue
                    t0 = time.time()
                    d = run_dirs(output, s, trainer, cfg, seed)
                    if not _has_checkpoint(d["train_base"], epoch):
                        _train_py(_train_args(root, s, trainer, seed, d["train_base"], "base",
                                              opts))
                    if not _has_result(d["test_new"]):
                        _train_py(_train_args(root, s, trainer, seed, d["test_new"], "new",
                                              list(a.opts), eval_only=True,
                                              model_dir=d["train_base"], load_epoch=epoch))
                    ev = evaluate_run(root, SETS, s, trainer, seed, d["train_base"], epoch,
                                      ref, list(a.opts))
                    rec = {"dataset": s, "trainer": trainer, "cfg": cfg, "reg": reg,
                           "seed": seed, "opts": opts, "base": last_accuracy(d["train_base"]),
                           "novel": last_accuracy(d["test_new"]), "eval": ev,
                           "seconds": round(time.time() - t0, 1)}
                    with open(rec_path, "w") as f:
                        json.dump(rec, f, indent=1)
                    records.append(rec)
                    print(f"{s} {trainer} {cfg} seed{seed}: base {rec['base']:.1f} novel "
                          f"{rec['novel']:.1f} forget {ev['forgetting']['mean']:+.2f} "
                          f"({rec['seconds']} s)", flush=True)
    print(summarize(records, bench, zs))


if __name__ == "__main__":
    main()
