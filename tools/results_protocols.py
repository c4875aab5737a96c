"""The few-shot, cross-dataset and domain-generalization tables of ``tools/results.py``.

Each is printed as the papers print it:

* few-shot (CoOp's Figure 3 as numbers, PromptSRC's few-shot table): per dataset, a row per
  method and a column per shots (1 2 4 8 16); then the average over the datasets.
* cross-dataset (MaPLe's and PromptSRC's tables): a row per method; the source (ImageNet)
  accuracy, each of the targets, and the average over the targets (not over the source).
* domain generalization: the same, the targets being the four ImageNet variants.

Where the numbers come from (tools/protocol.py's folders; tools/logparse.py reads a log):

* A few-shot cell: the final test of ``<DATASET>/<TRAINER>/<CFG>_<K>shots/seed<S>``.
* Source: the final test of the xd training, ``imagenet/<TRAINER>/<CFG>_<K>shots/seed<S>``;
  a target: the eval-only log of ``evaluation/<TRAINER>/<CFG>_<K>shots/<DATASET>/seed<S>``.
  A target among the four ImageNet variants belongs to the DG table, any other to the
  cross-dataset table; both share the source column.
* A method is a trainer run with the protocol's own config at each point (named by the
  trainer alone, e.g. ``CoOp``: its few-shot configs change with shots and dataset), or a
  trainer with one config throughout (``CoOp/vit_b16_ctxv1_proxyfda``). A run of the
  few-shot layout on ImageNet that is an xd training only (``protocol.is_xd_training_only``)
  is the source of the cross-dataset table, not a few-shot result.
* Each cell: the mean over the seeds that have a result, ``±`` the population std (np.std,
  ddof=0), as base-to-novel. A cell short of seeds says so (``2/3 seeds``); every missing
  seed, cell or dataset is listed by name with the reason.
* An average is the mean over datasets (targets) of the per-dataset means; it says how many
  of the expected datasets it covers. The expected datasets are ``--datasets`` (for xd/dg:
  those of the table's kind) or else every dataset seen; the expected seeds of a method are
  ``--seeds`` or else every seed seen for it; the expected shots ``--shots`` or else every
  shots seen.
* Published numbers (tools/published.py, each with its source) are rows of their own,
  "(published)", shown for the methods in the table, for 16-shot models, and only where the
  expected datasets are the protocol's own (not beside the CPU benchmark's sets).
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tools import published, results
from tools.logparse import log_files, read_run
from tools.protocol import (DATASETS, DG_TARGETS, XD_SOURCE, XD_TARGETS, RunKey, default_config,
                            few_shot_dir, find_few_shot_keys, find_transfer_keys,
                            is_default_config, is_xd_training_only, transfer_dir)
from tools.results import AVERAGE, STD_NOTE, _fmt, _pm, _std

SOURCE = "source"  # the transfer tables' source column (the ImageNet training's own test)
TITLES = {"few_shot": "Few-shot", "xd": "Cross-dataset", "dg": "Domain generalization"}
PUBLISHED_SHOTS = 16


@dataclass
class Cell:
    method: str  # TRAINER (the protocol's config per point) or TRAINER/CFG
    trainer: str
    shots: int  # few-shot: the column; xd/dg: the training's shots
    dataset: str  # a dataset, SOURCE, or AVERAGE
    n_seeds: int
    seeds: List[int]
    mean: Optional[float]
    std: Optional[float]
    complete: bool = True
    n_expected: int = 0  # seeds expected (a cell) or datasets expected (an average)
    datasets: List[str] = field(default_factory=list)  # an average: the datasets averaged
    cfgs: List[str] = field(default_factory=list)  # the configs the cell's runs used


@dataclass
class Missing:
    """A seed, cell or dataset a table expected and did not get, and why."""
    method: str
    dataset: str  # a dataset, or SOURCE
    shots: Optional[int]  # few-shot: the cell's shots (None: the whole dataset)
    seed: Optional[int]  # None: no seed at all
    what: str  # "result", "source result", "dataset", "shots"
    reason: str
    folder: str = ""  # the run folder, where one is named

    def __str__(self) -> str:
        where = f"{self.method} " + (f"{XD_SOURCE} (source)" if self.dataset == SOURCE
                                     else self.dataset)
        if self.shots is not None:
            where += f" shots_{self.shots}"
        if self.seed is not None:
            where += f" seed{self.seed}"
        return f"{where}: {self.what} {self.reason}"


@dataclass
class PublishedRow:
    method: str  # the published method's name
    values: Dict[str, Optional[float]]  # few-shot: str(shots) -> value; xd/dg: column -> value
    where: str


@dataclass
class TableReport:
    protocol: str  # few_shot, xd or dg
    output_root: str
    cells: List[Cell]
    missing: List[Missing]
    notes: List[str]
    datasets: List[str]  # the expected datasets (few-shot) or targets (xd/dg), in order
    shots: List[int] = field(default_factory=list)  # few-shot: the columns
    published: List[PublishedRow] = field(default_factory=list)

    @property
    def methods(self) -> List[Tuple[str, int]]:
        return sorted({(c.method, c.shots) for c in self.cells}) if self.protocol != "few_shot" \
            else [(m, 0) for m in sorted({c.method for c in self.cells})]

    def cell(self, method: str, dataset: str, shots: Optional[int] = None) -> Cell:
        hits = [c for c in self.cells if c.method == method and c.dataset == dataset
                and (shots is None or c.shots == shots)]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} cells for {method} {dataset} shots {shots}")
        return hits[0]

    def to_json(self) -> dict:
        return {"protocol": self.protocol, "std": "population std over seeds (np.std, ddof=0)",
                "datasets": self.datasets, "shots": self.shots,
                "cells": [asdict(c) for c in self.cells],
                "published": [asdict(p) for p in self.published],
                "missing": [asdict(m) | {"text": str(m)} for m in self.missing],
                "notes": self.notes}


# ---------------------------------------------------------------------------------------
# Collecting


def _selected(key: RunKey, trainers: Optional[Sequence[str]]) -> bool:
    return not trainers or any(t in (key.trainer, f"{key.trainer}/{key.cfg}") for t in trainers)


def _order(datasets) -> List[str]:
    known = list(DATASETS) + list(DG_TARGETS)
    return sorted(set(datasets), key=lambda d: (known.index(d) if d in known else len(known), d))


def _why(run_dir: str) -> str:
    logs = log_files(run_dir)
    if logs and len(read_run(run_dir).skipped) == len(logs):
        return "only logs of another run (skipped, see the warnings)"
    return "unfinished (log has no final result)" if logs else "no log"


def _seed_cell(method, trainer, shots, dataset, folders: Dict[int, Tuple[str, str]],
               missing: List[Missing], what="result", shown_shots=None) -> Optional[Cell]:
    """The cell of ``folders`` (seed -> (cfg, run folder)); a seed without a result is
    added to ``missing`` (few-shot: with ``shown_shots``; xd/dg: the method names its
    shots)."""
    values = {}
    for seed, (cfg, folder) in sorted(folders.items()):
        acc = read_run(folder).accuracy
        if acc is None:
            name = method if shown_shots is not None else _method_name(method, shots)
            missing.append(Missing(name, dataset, shown_shots, seed, what, _why(folder), folder))
        else:
            values[seed] = acc
    if not values:
        return None
    accs = list(values.values())
    return Cell(method, trainer, shots, dataset, len(values), sorted(values),
                float(np.mean(accs)), _std(accs), len(values) == len(folders), len(folders),
                cfgs=sorted({folders[s][0] for s in values}))


def _average(cells: List[Cell], expected: Sequence[str]) -> Cell:
    first = cells[0]
    covered = [c.dataset for c in cells]
    return Cell(first.method, first.trainer, first.shots, AVERAGE, min(c.n_seeds for c in cells),
                sorted(set.intersection(*(set(c.seeds) for c in cells))),
                float(np.mean([c.mean for c in cells])), None,
                set(covered) >= set(expected) and all(c.complete for c in cells),
                len(expected), datasets=_order(covered))


def summarize_few_shot(output_root: str, seeds: Optional[Sequence[int]] = None,
                       datasets: Optional[Sequence[str]] = None,
                       shots: Optional[Sequence[int]] = None,
                       trainers: Optional[Sequence[str]] = None) -> TableReport:
    keys = [k for k in find_few_shot_keys(output_root)
            if _selected(k, trainers) and not is_xd_training_only(output_root, k)]
    methods: Dict[str, Tuple[str, Optional[str]]] = {}  # label -> (trainer, cfg or None)
    runs: Dict[str, List[RunKey]] = {}
    for k in keys:
        if is_default_config(k.trainer, "few_shot", k.dataset, k.shots, k.cfg):
            methods[k.trainer] = (k.trainer, None)
            runs.setdefault(k.trainer, []).append(k)
        else:
            methods[f"{k.trainer}/{k.cfg}"] = (k.trainer, k.cfg)
    for label, (trainer, cfg) in methods.items():
        if cfg is not None:  # every run of that config, where it is also the protocol's
            runs[label] = [k for k in keys if (k.trainer, k.cfg) == (trainer, cfg)]
    expected_ds = list(datasets) if datasets else _order(k.dataset for k in keys)
    expected_shots = sorted(set(shots) if shots else {k.shots for k in keys})
    cells: List[Cell] = []
    missing: List[Missing] = []
    for label in sorted(methods):
        trainer, cfg = methods[label]
        mine = runs[label]
        want_seeds = set(seeds) if seeds else {k.seed for k in mine}
        for ds in expected_ds:
            on_ds = [k for k in mine if k.dataset == ds]
            if not on_ds:
                missing.append(Missing(label, ds, None, None, "dataset", "no runs"))
                continue
            for k in expected_shots:
                c = cfg or default_config(trainer, "few_shot", ds, k)
                seen = {r.seed for r in on_ds if r.shots == k}
                if not seen:
                    missing.append(Missing(label, ds, k, None, "shots", "no runs"))
                    continue
                folders = {s: (c, few_shot_dir(output_root, trainer, c, ds, k, s))
                           for s in sorted(want_seeds | seen)}
                cell = _seed_cell(label, trainer, k, ds, folders, missing, shown_shots=k)
                if cell:
                    cells.append(cell)
    for label in sorted(methods):
        for k in expected_shots:
            mine = [c for c in cells if c.method == label and c.shots == k]
            if mine:
                cells.append(_average(mine, expected_ds))
    report = TableReport("few_shot", output_root, cells, missing,
                         [STD_NOTE + "; an average is the mean over datasets of the seed means."],
                         expected_ds, expected_shots)
    comparable = set(expected_ds) <= set(DATASETS)
    for label, (trainer, cfg) in sorted(methods.items()):
        name = results.published_label(trainer, cfg or "")
        row = published.FEW_SHOT.get(name) if comparable and cfg is None else None
        if row and any(v is not None for v in row.by_shots.values()):
            report.published.append(PublishedRow(
                name, {str(k): row.by_shots.get(k) for k in expected_shots}, row.where))
    report.notes.append(_published_note(published.FEW_SHOT, "few-shot"))
    return report


def summarize_transfer(output_root: str, protocol: str, seeds: Optional[Sequence[int]] = None,
                       datasets: Optional[Sequence[str]] = None,
                       trainers: Optional[Sequence[str]] = None) -> TableReport:
    """The cross-dataset (``xd``) or domain-generalization (``dg``) table."""
    dg = protocol == "dg"
    evals = [k for k in find_transfer_keys(output_root)
             if (k.dataset in DG_TARGETS) == dg and _selected(k, trainers)]
    models = {(k.trainer, k.cfg, k.shots) for k in evals}
    if not dg:  # xd trainings whose evaluations have not run yet
        models |= {(k.trainer, k.cfg, k.shots) for k in find_few_shot_keys(output_root)
                   if _selected(k, trainers) and is_xd_training_only(output_root, k)}
    if datasets:
        expected = [d for d in datasets if (d in DG_TARGETS) == dg]
    else:
        expected = _order(k.dataset for k in evals)
    cells: List[Cell] = []
    missing: List[Missing] = []
    labels = {}
    for trainer, cfg, shots in sorted(models):
        default = is_default_config(trainer, "xd_train", XD_SOURCE, shots, cfg)
        label = labels[(trainer, cfg, shots)] = trainer if default else f"{trainer}/{cfg}"
        mine = [k for k in evals if (k.trainer, k.cfg, k.shots) == (trainer, cfg, shots)]
        sources = {k.seed for k in find_few_shot_keys(output_root)
                   if (k.trainer, k.cfg, k.shots, k.dataset) == (trainer, cfg, shots, XD_SOURCE)}
        want_seeds = set(seeds) if seeds else {k.seed for k in mine} | sources
        folders = {s: (cfg, few_shot_dir(output_root, trainer, cfg, XD_SOURCE, shots, s))
                   for s in sorted(want_seeds | sources)}
        cell = _seed_cell(label, trainer, shots, SOURCE, folders, missing, "result")
        if cell:
            cells.append(cell)
        targets = []
        for ds in expected:
            seen = {k.seed for k in mine if k.dataset == ds}
            if not seen:
                missing.append(Missing(_method_name(label, shots), ds, None, None, "dataset",
                                       "no runs"))
                continue
            folders = {s: (cfg, transfer_dir(output_root, trainer, cfg, shots, ds, s))
                       for s in sorted(want_seeds | seen)}
            cell = _seed_cell(label, trainer, shots, ds, folders, missing)
            if cell:
                targets.append(cell)
        cells += targets
        if targets:
            cells.append(_average(targets, expected))
    report = TableReport(protocol, output_root, cells, missing,
                         [STD_NOTE + "; the average is over the targets (the source is not in "
                                     "it), a mean of the seed means."], expected)
    table = published.DG if dg else published.XD
    order = DG_TARGETS if dg else XD_TARGETS
    comparable = set(expected) <= set(order)
    for (trainer, cfg, shots), label in sorted(labels.items()):
        name = results.published_label(trainer, cfg)
        row = table.get(name) if comparable and shots == PUBLISHED_SHOTS else None
        if row is None or any(p.method == name for p in report.published):
            continue
        by_target = dict(zip(order, row.targets))
        values = {SOURCE: row.source, **{d: by_target.get(d) for d in expected},
                  AVERAGE: row.average if set(expected) == set(order) else None}
        if any(v is not None for v in values.values()):
            report.published.append(PublishedRow(name, values, row.where))
    report.notes.append(_published_note(table, TITLES[protocol].lower()))
    return report


def _published_note(table, what: str) -> str:
    if not table:
        return (f"No published {what} numbers are recorded: none was found in a source we "
                f"could read (tools/published.py).")
    sources = sorted({row.where for row in table.values()})
    return (f"Published {what} numbers (CLIP ViT-B/16, 16 shots; empty where not found): "
            + "; ".join(sources) + ". An average is comparable only when it covers all of "
            "the protocol's datasets.")


# ---------------------------------------------------------------------------------------
# Output


def _cell_text(cell: Optional[Cell], d: int) -> str:
    if cell is None:
        return ""
    if cell.dataset == AVERAGE:
        text = _fmt(cell.mean, d)
        if not cell.complete:
            text += f" ({len(cell.datasets)}/{cell.n_expected}, incomplete)"
        return text
    text = _pm(cell.mean, cell.std, d)
    if not cell.complete:
        text += f" ({cell.n_seeds}/{cell.n_expected} seeds)"
    return text


def _method_name(method: str, shots: int) -> str:
    return method if shots in (0, PUBLISHED_SHOTS) else f"{method} ({shots} shots)"


def tables(report: TableReport, d: int = 2) -> List[Tuple[str, List[str], List[List[str]]]]:
    """(title, headers, rows) of each table the protocol prints."""
    by = {(c.method, c.shots, c.dataset): c for c in report.cells}
    if report.protocol == "few_shot":
        headers = ["method"] + [f"{k} shots" for k in report.shots]
        out = []
        for ds in report.datasets + [AVERAGE]:
            rows = [[m] + [_cell_text(by.get((m, k, ds)), d) for k in report.shots]
                    for m, _ in report.methods]
            if ds == AVERAGE:
                rows += [[f"{p.method} (published)"] + [_fmt(p.values.get(str(k)), d)
                                                         for k in report.shots]
                         for p in report.published]
                title = f"Average over {len(report.datasets)} datasets"
            else:
                title = ds
            out.append((title, headers, rows))
        return out
    columns = [SOURCE] + report.datasets + [AVERAGE]
    headers = ["method", f"{XD_SOURCE} (source)"] + report.datasets + \
        [f"Average ({len(report.datasets)} targets)"]
    rows = [[_method_name(m, k)] + [_cell_text(by.get((m, k, col)), d) for col in columns]
            for m, k in report.methods]
    rows += [[f"{p.method} (published)"] + [_fmt(p.values.get(col), d) for col in columns]
             for p in report.published]
    return [(TITLES[report.protocol], headers, rows)]


def render(report: TableReport, fmt: str, d: int = 2) -> str:
    from tabulate import tabulate
    md = fmt == "github"
    lines = []
    for title, headers, rows in tables(report, d):
        lines += [f"## {title}" if md else f"== {title}", ""]
        lines += [tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True), ""]
    bullet = "- " if md else "  "
    if report.missing:
        lines.append(f"Missing runs ({len(report.missing)}), not averaged over:")
        lines += [bullet + str(m) for m in report.missing]
    else:
        lines.append("Missing runs: none.")
    lines += ["", "Notes:"] + [bullet + n for n in report.notes]
    return "\n".join(lines) + "\n"


def write_csv(report: TableReport, path: str) -> None:
    fields = list(Cell.__dataclass_fields__)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for c in report.cells:
            rec = asdict(c)
            for key in ("seeds", "datasets", "cfgs"):
                rec[key] = " ".join(map(str, rec[key]))
            w.writerow(rec)


def plot(report: TableReport, path: str) -> None:
    """Few-shot: accuracy against shots, a line per method with error bars over seeds, a
    panel per dataset and one for the average (CoOp's Figure 3). Cross-dataset and DG: bars
    per method over the source, the targets and the average, error bars over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(c.method, c.shots, c.dataset): c for c in report.cells}
    methods = report.methods
    if report.protocol == "few_shot":
        panels = report.datasets + [AVERAGE]
        ncols = min(4, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows),
                                 squeeze=False)
        for ax, ds in zip(axes.flat, panels):
            for m, _ in methods:
                pts = [(k, by[(m, k, ds)]) for k in report.shots if (m, k, ds) in by]
                if pts:
                    ax.errorbar([k for k, _ in pts], [c.mean for _, c in pts],
                                yerr=[c.std or 0.0 for _, c in pts], marker="o", capsize=3,
                                label=m)
            if ds == AVERAGE:
                for p in report.published:
                    pts = [(k, p.values.get(str(k))) for k in report.shots]
                    pts = [(k, v) for k, v in pts if v is not None]
                    ax.plot([k for k, _ in pts], [v for _, v in pts], "--", marker="x",
                            label=f"{p.method} (published)")
            ax.set_title("Average" if ds == AVERAGE else ds, fontsize="medium")
            ax.set_xscale("log", base=2)
            ax.set_xticks(report.shots)
            ax.set_xticklabels([str(k) for k in report.shots])
            ax.set_xlabel("shots per class")
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
    else:
        columns = [SOURCE] + report.datasets + [AVERAGE]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(columns) * max(1, len(methods))), 4.5))
        width = 0.8 / max(1, len(methods))
        x = np.arange(len(columns))
        for i, (m, k) in enumerate(methods):
            cells = [by.get((m, k, col)) for col in columns]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width,
                   [c.mean if c else np.nan for c in cells], width,
                   yerr=[(c.std or 0.0) if c else 0.0 for c in cells], capsize=2,
                   label=_method_name(m, k))
        for p in report.published:
            ax.plot(x, [p.values.get(col) if p.values.get(col) is not None else np.nan
                        for col in columns], "kx", label=f"{p.method} (published)")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{XD_SOURCE} (source)"] + report.datasets + ["Average"],
                           rotation=30, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{TITLES[report.protocol]}: seed means ± std")
    handles, labels = (axes.flat[0] if report.protocol == "few_shot" else ax) \
        .get_legend_handles_labels()
    if report.protocol == "few_shot":
        for a in axes.flat:  # the average panel may hold the published lines too
            for h, lab in zip(*a.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
    legend = fig.legend(handles, labels, fontsize="small", loc="upper center",
                        bbox_to_anchor=(0.5, 0.0), ncol=min(4, max(1, len(labels))))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_extra_artists=[legend], bbox_inches="tight")
    plt.close(fig)


def write_all(report: TableReport, out_dir: str, with_plot: bool = False, d: int = 2) -> List[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"results.{e}") for e in ("csv", "json", "md")]
    write_csv(report, paths[0])
    with open(paths[1], "w", encoding="utf-8") as f:
        json.dump(report.to_json(), f, indent=2)
    with open(paths[2], "w", encoding="utf-8") as f:
        f.write(f"# {TITLES[report.protocol]} results\n\n" + render(report, "github", d))
    if with_plot:
        paths.append(os.path.join(out_dir, "results.png"))
        plot(report, paths[-1])
    return paths
