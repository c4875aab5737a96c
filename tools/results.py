"""Results tables from Dassl logs, one per protocol, as the papers print them.

Usage:
    python tools/results.py OUTPUT_ROOT [--protocol base2new|few_shot|xd|dg] [--out DIR]
        [--plot] [--seeds 1 2 3] [--datasets caltech101 dtd ...] [--shots 1 2 4 8 16]
        [--trainers CoOp PromptSRC/cfg ...] [--zeroshot ZeroshotCLIP/CFG] [--decimals 2]

OUTPUT_ROOT is the run folders' root (the repo's ``output/``). Without ``--protocol`` every
protocol found there is printed: base-to-novel (``base2new/``), few-shot
(``DATASET/TRAINER/CFG_Kshots/``), cross-dataset and domain generalization
(``evaluation/``, with the ImageNet trainings). Each writes ``results.csv``, ``results.json``,
``results.md`` (and ``results.png`` with ``--plot``, error bars over seeds) into
``OUTPUT_ROOT/results/<protocol>``; ``--out DIR`` is that folder when one protocol is
printed, else the folder of the per-protocol folders. The few-shot, cross-dataset and DG
tables are tools/results_protocols.py's (its docstring says how they are made);
``--datasets`` is what those expect (xd/dg: the targets of their own kind), ``--shots`` the
few-shot columns.

Base-to-novel: base, novel and HM per trainer/config and dataset.

How the numbers are made (docs/DESIGN.md, section 9):
* Base accuracy of a seed: the final test of its training log in ``train_base/`` (or, when
  that directory has no log, the eval-only log in ``test_base/``, as ``reproduce_*.sh``
  writes it). Novel accuracy: the eval-only log in ``test_new/``. See tools/logparse.py for
  which line and which log file count.
* Only seeds that have both a base and a novel result enter the averages. Every other seed
  is listed as missing, by name, with the reason.
* Per dataset: base and novel are seed means; ``± std`` is the population standard
  deviation over seeds (np.std, ddof=0, as the peers' parse_test_res.py). HM = 2BN/(B+N)
  of the seed-averaged B and N; its ``± std`` is the ddof=0 std of the per-seed HMs.
* Average row: base and novel are means over datasets of the per-dataset means, and its HM
  is the HM of those two averages (not the mean of per-dataset HMs). It has no std. When a
  dataset is missing for a trainer, the row says ``Average (k/n, incomplete)``.
* ΔNew = novel − zero-shot CLIP novel. The reference is our own zero-shot runs (trainer
  ``ZeroshotCLIP``, or ``--zeroshot TRAINER/CFG``) on the same dataset(s) when present; for
  the average row, failing that, the published CLIP novel 74.22 if the row covers exactly
  the 11 datasets. The ``ΔNew ref`` column says which.
* Published numbers (CLIP ViT-B/16, 16 shots, 11-dataset averages, from the papers) appear beside
  our average row. A trainer maps to a published row by its name (CoOp, CoCoOp, KgCoOp, MaPLe,
  PromptSRC, ProGrad, TCP; ZeroshotCLIP→CLIP, MultiModalAdapter→MMA), plus "+ Proxy-FDA" when its config name contains
  ``proxyfda``/``proxy_fda``/``pfda`` ("+ DePT" when it contains ``dept``); only for 16-shot runs on datasets of the 11, as the
  published ones are (not beside the CPU benchmark's sets, for example).
* The expected datasets are ``--datasets`` or else every dataset seen for any trainer; the
  expected seeds of a trainer/config are ``--seeds`` or else every seed seen for it.

"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import published
from tools.logparse import log_files, read_run
from tools.protocol import DATASETS as BASE2NEW_DATASETS
from tools.protocol import (BASE2NEW_SPLITS, GRID_PROTOCOLS, RunKey, base2new_dirs,
                            base2new_split_root, find_run_keys, found_protocols)

# Published numbers: CLIP ViT-B/16, 16 shots, averages over the 11 datasets (tools/published.py
# says where each was read; docs/DESIGN.md, section 9).
PUBLISHED: Dict[str, Tuple[Optional[float], Optional[float], Optional[float]]] = \
    published.BASE2NEW
PUBLISHED_CLIP_NOVEL = PUBLISHED["CLIP"][1]
PUBLISHED_SHOTS = 16  # the published rows are 16-shot; other shot counts get none beside them
ZEROSHOT_TRAINERS = ("zeroshotclip", "zsclip")
_METHOD_NAMES = {"coop": "CoOp", "cocoop": "CoCoOp", "kgcoop": "KgCoOp", "maple": "MaPLe",
                 "promptsrc": "PromptSRC", "zeroshotclip": "CLIP", "zsclip": "CLIP",
                 "multimodaladapter": "MMA"}
_PROXYFDA_MARKS = ("proxyfda", "proxy_fda", "proxy-fda", "pfda")
AVERAGE = "Average"
STD_NOTE = "± is the population std over seeds (np.std, ddof=0)"


def harmonic_mean(base: float, novel: float) -> float:
    return 2.0 * base * novel / (base + novel) if base + novel > 0 else 0.0


def published_label(trainer: str, cfg: str) -> Optional[str]:
    # a trainer whose registered name is a published row's needs no entry in _METHOD_NAMES
    method = _METHOD_NAMES.get(trainer.lower()) or next(
        (name for name in PUBLISHED if name.lower() == trainer.lower()), None)
    if method is None:
        return None
    if published.BASE2NEW_CONFIG.get(method, cfg) != cfg:
        return None
    if any(m in cfg.lower() for m in _PROXYFDA_MARKS):
        method += " + Proxy-FDA"
    elif "dept" in cfg.lower():  # the DePT plug-in's configs (*_dept.yaml)
        method += " + DePT"
    return method if method in PUBLISHED else None


def is_zeroshot(trainer: str) -> bool:
    return trainer.lower() in ZEROSHOT_TRAINERS


@dataclass
class Row:
    trainer: str
    cfg: str
    shots: int
    dataset: str  # a dataset name, or "Average"
    n_seeds: int
    seeds: List[int]
    base: Optional[float]
    base_std: Optional[float]
    novel: Optional[float]
    novel_std: Optional[float]
    hm: Optional[float]
    hm_std: Optional[float]
    delta_new: Optional[float] = None
    delta_new_ref: str = ""
    complete: bool = True
    datasets: List[str] = field(default_factory=list)  # average row: datasets averaged
    n_expected: int = 0  # average row: datasets expected
    published: Optional[str] = None
    pub_base: Optional[float] = None
    pub_novel: Optional[float] = None
    pub_hm: Optional[float] = None

    @property
    def method(self) -> Tuple[str, str, int]:
        return (self.trainer, self.cfg, self.shots)


@dataclass
class Missing:
    trainer: str
    cfg: str
    shots: int
    dataset: str
    seed: Optional[int]  # None: the whole dataset is missing
    what: str  # "base", "novel", "base+novel", or "dataset"
    reason: str

    def __str__(self) -> str:
        where = f"{self.trainer}/{self.cfg} shots_{self.shots} {self.dataset}"
        if self.seed is not None:
            where += f" seed{self.seed}"
        return f"{where}: {self.what} {self.reason}"


@dataclass
class Report:
    output_root: str
    rows: List[Row]
    missing: List[Missing]
    notes: List[str]

    def row(self, trainer: str, dataset: str, cfg: Optional[str] = None) -> Row:
        hits = [r for r in self.rows if r.trainer == trainer and r.dataset == dataset
                and (cfg is None or r.cfg == cfg)]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} rows for {trainer}/{cfg} {dataset}")
        return hits[0]

    def to_json(self) -> dict:
        return {"protocol": "base2new", "std": "population std over seeds (np.std, ddof=0)",
                "rows": [asdict(r) for r in self.rows],
                "missing": [asdict(m) | {"text": str(m)} for m in self.missing],
                "notes": self.notes}


def _seed_result(output_root: str, key: RunKey) -> Tuple[Optional[float], Optional[float], str]:
    dirs = base2new_dirs(output_root, key)
    train = read_run(dirs["train_base"])
    base = train.accuracy
    if base is None and not train.log_file:
        base = read_run(dirs["test_base"]).accuracy
    novel = read_run(dirs["test_new"]).accuracy
    return base, novel, dirs["train_base"]


def _why(output_root: str, key: RunKey, side: str) -> str:
    dirs = base2new_dirs(output_root, key)
    splits = ["test_new"] if side == "novel" else ["train_base", "test_base"]
    logs = [p for split in splits for p in log_files(dirs[split])]
    skipped = {p for split in splits for p in read_run(dirs[split]).skipped}
    if logs and all(p in skipped for p in logs):
        return "only logs of another run (skipped, see the warnings)"
    if logs:
        return "unfinished (log has no final result)"
    return "no log"


def _std(values: Sequence[float]) -> float:
    return float(np.std(np.asarray(values, dtype=float), ddof=0))


def summarize(output_root: str, seeds: Optional[Sequence[int]] = None,
              datasets: Optional[Sequence[str]] = None,
              trainers: Optional[Sequence[str]] = None,
              zeroshot: Optional[str] = None) -> Report:
    """Collect every base-to-novel run under ``output_root`` into per-dataset and average rows."""
    keys = set()
    for split in BASE2NEW_SPLITS:
        keys.update(find_run_keys(base2new_split_root(output_root, split)))

    def selected(k: RunKey) -> bool:
        if not trainers:
            return True
        return any(t in (k.trainer, f"{k.trainer}/{k.cfg}") for t in trainers)

    keys = sorted(k for k in keys if selected(k) or (zeroshot is None and is_zeroshot(k.trainer))
                  or (zeroshot and f"{k.trainer}/{k.cfg}" == zeroshot))
    methods = sorted({(k.trainer, k.cfg, k.shots) for k in keys})
    seen_datasets = sorted({k.dataset for k in keys})
    expected_datasets = list(datasets) if datasets else seen_datasets
    notes: List[str] = [STD_NOTE + "; HM ± is the std of per-seed HMs."]

    rows: List[Row] = []
    missing: List[Missing] = []
    per_seed: Dict[Tuple[str, str, int, str], Dict[int, Tuple[float, float]]] = {}
    for trainer, cfg, shots in methods:
        mine = [k for k in keys if (k.trainer, k.cfg, k.shots) == (trainer, cfg, shots)]
        expected_seeds = sorted(seeds) if seeds else sorted({k.seed for k in mine})
        for ds in expected_datasets:
            ds_seeds = sorted(set(expected_seeds) | {k.seed for k in mine if k.dataset == ds})
            if not any(k.dataset == ds for k in mine):
                missing.append(Missing(trainer, cfg, shots, ds, None, "dataset",
                                       "no runs"))
                continue
            complete: Dict[int, Tuple[float, float]] = {}
            for s in ds_seeds:
                key = RunKey(trainer, cfg, ds, shots, s)
                base, novel, _ = _seed_result(output_root, key)
                if base is not None and novel is not None:
                    complete[s] = (base, novel)
                    continue
                by_reason: Dict[str, List[str]] = {}
                for side, v in (("base", base), ("novel", novel)):
                    if v is None:
                        by_reason.setdefault(_why(output_root, key, side), []).append(side)
                for reason, sides in by_reason.items():
                    missing.append(Missing(trainer, cfg, shots, ds, s, "+".join(sides), reason))
            per_seed[(trainer, cfg, shots, ds)] = complete
            if not complete:
                continue
            b = [v[0] for v in complete.values()]
            n = [v[1] for v in complete.values()]
            bm, nm = float(np.mean(b)), float(np.mean(n))
            rows.append(Row(trainer, cfg, shots, ds, len(complete), sorted(complete),
                            bm, _std(b), nm, _std(n), harmonic_mean(bm, nm),
                            _std([harmonic_mean(x, y) for x, y in zip(b, n)]),
                            complete=len(complete) == len(ds_seeds)))

    _add_averages(rows, expected_datasets)
    _add_delta_new(rows, zeroshot, notes)
    for r in rows:
        if (r.dataset == AVERAGE and r.shots == PUBLISHED_SHOTS
                and set(r.datasets) <= set(BASE2NEW_DATASETS)):
            r.published = published_label(r.trainer, r.cfg)
            if r.published:
                r.pub_base, r.pub_novel, r.pub_hm = PUBLISHED[r.published]
    if rows and any(r.published for r in rows):
        notes.append("Published numbers: the papers, CLIP ViT-B/16, 16 shots, average over the "
                     "11 datasets; comparable only to a complete 11-dataset average.")
    rows.sort(key=lambda r: (r.method, r.dataset == AVERAGE, _dataset_order(r.dataset)))
    return Report(output_root, rows, missing, notes)


def _dataset_order(ds: str):
    return (BASE2NEW_DATASETS.index(ds) if ds in BASE2NEW_DATASETS else len(BASE2NEW_DATASETS), ds)


def _add_averages(rows: List[Row], expected_datasets: Sequence[str]) -> None:
    for method in sorted({r.method for r in rows}):
        mine = [r for r in rows if r.method == method]
        b = float(np.mean([r.base for r in mine]))
        n = float(np.mean([r.novel for r in mine]))
        covered = sorted((r.dataset for r in mine), key=_dataset_order)
        all_there = set(covered) >= set(expected_datasets) and all(r.complete for r in mine)
        rows.append(Row(*method, AVERAGE, min(r.n_seeds for r in mine),
                        sorted(set.intersection(*(set(r.seeds) for r in mine))),
                        b, None, n, None, harmonic_mean(b, n), None,
                        complete=all_there, datasets=covered,
                        n_expected=len(expected_datasets)))


def _add_delta_new(rows: List[Row], zeroshot: Optional[str], notes: List[str]) -> None:
    if zeroshot:
        zs_rows = [r for r in rows if f"{r.trainer}/{r.cfg}" == zeroshot]
    else:
        zs_methods = sorted({r.method for r in rows if is_zeroshot(r.trainer)})
        zs_rows = [r for r in rows if zs_methods and r.method == zs_methods[0]]
        if len(zs_methods) > 1:
            notes.append(f"Several zero-shot runs found; ΔNew uses "
                         f"{zs_methods[0][0]}/{zs_methods[0][1]} (choose with --zeroshot).")
    zs_novel = {r.dataset: r.novel for r in zs_rows if r.dataset != AVERAGE}
    zs_name = f"{zs_rows[0].trainer}/{zs_rows[0].cfg}" if zs_rows else ""
    if zs_rows:
        notes.append(f"ΔNew: novel minus our zero-shot {zs_name} novel on the same dataset(s).")
    for r in rows:
        if r.dataset != AVERAGE:
            if r.dataset in zs_novel:
                r.delta_new = r.novel - zs_novel[r.dataset]
                r.delta_new_ref = "ours"
            continue
        if r.datasets and all(d in zs_novel for d in r.datasets):
            ref = float(np.mean([zs_novel[d] for d in r.datasets]))
            r.delta_new = r.novel - ref
            r.delta_new_ref = f"ours ({ref:.2f})"
        elif sorted(r.datasets) == sorted(BASE2NEW_DATASETS):
            r.delta_new = r.novel - PUBLISHED_CLIP_NOVEL
            r.delta_new_ref = f"published CLIP {PUBLISHED_CLIP_NOVEL:.2f}"
        else:
            r.delta_new_ref = "n/a"
    refs = {r.delta_new_ref for r in rows if r.dataset == AVERAGE}
    if any(x.startswith("published") for x in refs):
        notes.append(f"ΔNew of an 11-dataset average without our zero-shot runs: vs the "
                     f"published CLIP novel {PUBLISHED_CLIP_NOVEL:.2f}.")
    if "n/a" in refs:
        notes.append("No ΔNew where neither our zero-shot runs nor the 11-dataset published "
                     "CLIP number cover the row's datasets.")


# ---------------------------------------------------------------------------------------
# Output


def _fmt(v: Optional[float], d: int, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:+.{d}f}" if signed else f"{v:.{d}f}"


def _pm(mean: Optional[float], std: Optional[float], d: int) -> str:
    if mean is None:
        return ""
    return _fmt(mean, d) if std is None else f"{_fmt(mean, d)} ± {_fmt(std, d)}"


HEADERS = ["dataset", "seeds", "base", "novel", "HM", "ΔNew", "published B / N / HM"]


def _published_cell(r: Row, d: int) -> str:
    if not r.published:
        return ""
    vals = " / ".join(_fmt(v, d) or "–" for v in (r.pub_base, r.pub_novel, r.pub_hm))
    return f"{vals} ({r.published})"


def table_rows(report: Report, method: Tuple[str, str, int], d: int = 2) -> List[List[str]]:
    out = []
    for r in report.rows:
        if r.method != method:
            continue
        name = r.dataset
        if r.dataset == AVERAGE:
            name = f"{AVERAGE} ({len(r.datasets)}/{r.n_expected} datasets)"
        if not r.complete:
            name += " incomplete"
        out.append([name, str(r.n_seeds), _pm(r.base, r.base_std, d),
                    _pm(r.novel, r.novel_std, d), _pm(r.hm, r.hm_std, d),
                    _fmt(r.delta_new, d, signed=True), _published_cell(r, d)])
    return out


def render(report: Report, fmt: str, d: int = 2) -> str:
    """One table per trainer/config/shots, then the missing runs and the notes."""
    from tabulate import tabulate
    md = fmt == "github"
    lines = []
    for method in sorted({r.method for r in report.rows}):
        title = f"{method[0]}/{method[1]}, {method[2]} shots"
        lines += [f"## {title}" if md else f"== {title}", ""]
        lines += [tabulate(table_rows(report, method, d), headers=HEADERS, tablefmt=fmt,
                           disable_numparse=True), ""]
    bullet = "- " if md else "  "
    if report.missing:
        lines.append(f"Missing runs ({len(report.missing)}), not averaged over:")
        lines += [bullet + str(m) for m in report.missing]
    else:
        lines.append("Missing runs: none.")
    lines.append("")
    lines += ["Notes:"] + [bullet + n for n in report.notes]
    return "\n".join(lines) + "\n"


def write_csv(report: Report, path: str) -> None:
    fields = [f for f in Row.__dataclass_fields__]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in report.rows:
            rec = asdict(r)
            rec["seeds"] = " ".join(map(str, r.seeds))
            rec["datasets"] = " ".join(r.datasets)
            w.writerow(rec)


def plot(report: Report, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({r.method for r in report.rows})
    datasets = sorted({r.dataset for r in report.rows if r.dataset != AVERAGE},
                      key=_dataset_order) + [AVERAGE]
    by_key = {(r.method, r.dataset): r for r in report.rows}
    fig, axes = plt.subplots(3, 1, figsize=(max(6.0, 1.2 * len(datasets) * max(1, len(methods)) / 2),
                                            9), sharex=True)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(datasets))
    for ax, (attr, title) in zip(axes, (("base", "Base"), ("novel", "Novel"), ("hm", "HM"))):
        for i, m in enumerate(methods):
            rows = [by_key.get((m, ds)) for ds in datasets]
            vals = [getattr(r, attr) if r else np.nan for r in rows]
            errs = [(getattr(r, attr + "_std") or 0.0) if r else 0.0 for r in rows]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, yerr=errs, capsize=2,
                   label=f"{m[0]}/{m[1]} ({m[2]} shots)")
        ax.set_ylabel(f"{title} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(datasets, rotation=30, ha="right")
    axes[0].set_title("Base-to-novel: seed means per dataset, ± std over seeds")
    handles, labels = axes[0].get_legend_handles_labels()
    legend = fig.legend(handles, labels, fontsize="small", loc="upper center",
                        bbox_to_anchor=(0.5, 0.0), ncol=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_extra_artists=[legend], bbox_inches="tight")
    plt.close(fig)


def write_all(report: Report, out_dir: str, with_plot: bool = False, d: int = 2) -> List[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"results.{e}") for e in ("csv", "json", "md")]
    write_csv(report, paths[0])
    with open(paths[1], "w", encoding="utf-8") as f:
        json.dump(report.to_json(), f, indent=2)
    with open(paths[2], "w", encoding="utf-8") as f:
        f.write("# Base-to-novel results\n\n" + render(report, "github", d))
    if with_plot:
        paths.append(os.path.join(out_dir, "results.png"))
        plot(report, paths[-1])
    return paths


TITLES = {"base2new": "Base-to-novel", "few_shot": "Few-shot", "xd": "Cross-dataset",
          "dg": "Domain generalization"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output_root", help="the run folders' root (the repo's output/)")
    p.add_argument("--protocol", choices=GRID_PROTOCOLS,
                   help="only this protocol (default: every protocol found)")
    p.add_argument("--out", help="where to write results.{csv,json,md,png} (default "
                                 "OUTPUT_ROOT/results/<protocol>; with several protocols, "
                                 "OUT/<protocol>)")
    p.add_argument("--plot", action="store_true", help="also draw results.png")
    p.add_argument("--seeds", type=int, nargs="+", help="expected seeds (missing ones are listed)")
    p.add_argument("--datasets", nargs="+", help="expected datasets (missing ones are listed); "
                                                 "for xd and dg, the expected targets")
    p.add_argument("--shots", type=int, nargs="+", help="few-shot: the expected shots")
    p.add_argument("--trainers", nargs="+", help="only these TRAINER or TRAINER/CFG")
    p.add_argument("--zeroshot", help="base2new: TRAINER/CFG of the zero-shot runs used for "
                                      "ΔNew (default: the ZeroshotCLIP runs found)")
    p.add_argument("--decimals", type=int, default=2)
    args = p.parse_args(argv)
    d = args.decimals

    protocols = [args.protocol] if args.protocol else found_protocols(args.output_root)
    if not protocols:
        print(f"No runs found under {args.output_root} (base2new/, <DATASET>/<TRAINER>/"
              f"<CFG>_<K>shots/ or evaluation/)", file=sys.stderr)
        return 1
    for name in protocols:
        if name == GRID_PROTOCOLS[0]:
            report = summarize(args.output_root, args.seeds, args.datasets, args.trainers,
                               args.zeroshot)
            empty = not report.rows and not report.missing
            text = render(report, "simple", d)
            writer = write_all
        else:
            from tools import results_protocols as rp

            if name == "few_shot":
                report = rp.summarize_few_shot(args.output_root, args.seeds, args.datasets,
                                               args.shots, args.trainers)
            else:
                report = rp.summarize_transfer(args.output_root, name, args.seeds,
                                               args.datasets, args.trainers)
            empty = not report.cells and not report.missing
            text = rp.render(report, "simple", d)
            writer = rp.write_all
        if empty:
            print(f"No {TITLES[name].lower()} runs found under {args.output_root}",
                  file=sys.stderr)
            return 1
        if len(protocols) > 1:
            print(f"#### {TITLES[name]} ({name})\n")
        print(text, end="")
        out = args.out if args.out and len(protocols) == 1 else \
            os.path.join(args.out or os.path.join(args.output_root, "results"), name)
        for path in writer(report, out, args.plot, d):
            print(f"wrote {path}")
        if len(protocols) > 1:
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
