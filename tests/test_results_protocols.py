"""The results tool's few-shot, cross-dataset and domain-generalization tables: tiny output
trees of Dassl-format logs in the protocols' folders (tools/dassl_log.py writes the logs),
and the printed tables checked: seed means and std, averages, missing seeds and datasets
named, published rows only where recorded, the plot written."""
import json
import os

import numpy as np
import pytest

from tools import published, results
from tools import results_protocols as rp
from tools.dassl_log import eval_log, training_log
from tools.protocol import (DG_TARGETS, XD_SOURCE, XD_TARGETS, default_config, few_shot_dir,
                            transfer_dir)

XD_CFG = "vit_b16_ep50_ctxv1"  # CoOp's cross-dataset config (the protocol's xd default)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def identity(trainer, cfg, dataset, shots=None):
    folder = "CoOp" if trainer == "ZeroshotCLIP" else trainer
    return dict(trainer=trainer, config_file=f"configs/trainers/{folder}/{cfg}.yaml",
                dataset_config_file=f"configs/datasets/{dataset}.yaml", shots=shots)


def add_few_shot(root, trainer, dataset, shots, seed, acc, cfg=None, **log):
    cfg = cfg or default_config(trainer, "few_shot", dataset, shots)
    write(os.path.join(few_shot_dir(root, trainer, cfg, dataset, shots, seed), "log.txt"),
          training_log(acc, seed=seed, decimals=2, **identity(trainer, cfg, dataset, shots), **log))


def add_xd(root, trainer, seed, source, targets, cfg=XD_CFG, shots=16):
    """An xd training (source accuracy) and its evaluations {target: accuracy}."""
    if source is not None:
        add_few_shot(root, trainer, XD_SOURCE, shots, seed, source, cfg=cfg)
    for target, acc in targets.items():
        write(os.path.join(transfer_dir(root, trainer, cfg, shots, target, seed), "log.txt"),
              eval_log(acc, seed=seed, decimals=2, **identity(trainer, cfg, target)))


# ---------------------------------------------------------------------------------------
# Few-shot


def test_few_shot_table_is_seed_means_per_dataset_and_shots_and_the_mean_over_datasets(tmp_path):
    root = str(tmp_path)
    values = {("dtd", 1): [50.0, 52.0], ("dtd", 16): [70.0, 74.0],
              ("eurosat", 1): [60.0, 61.0], ("eurosat", 16): [80.0, 84.0]}
    for (ds, k), accs in values.items():
        for seed, acc in enumerate(accs, start=1):
            add_few_shot(root, "CoOp", ds, k, seed, acc)
    report = rp.summarize_few_shot(root)
    assert report.shots == [1, 16] and report.datasets == ["dtd", "eurosat"]
    cell = report.cell("CoOp", "dtd", 16)
    assert cell.mean == pytest.approx(72.0) and cell.std == pytest.approx(np.std([70, 74]))
    assert cell.n_seeds == 2 and cell.complete
    # CoOp picks its config by shots (50 epochs at 1 shot, 200 at 16): still one method
    assert report.cell("CoOp", "dtd", 1).cfgs == ["vit_b16_ep50"]
    assert cell.cfgs == ["vit_b16"]
    avg = report.cell("CoOp", results.AVERAGE, 16)
    assert avg.mean == pytest.approx((72.0 + 82.0) / 2) and avg.complete
    assert report.cell("CoOp", results.AVERAGE, 1).mean == pytest.approx((51.0 + 60.5) / 2)
    assert report.missing == []


def test_few_shot_missing_seed_shots_and_dataset_are_named(tmp_path):
    root = str(tmp_path)
    for ds in ("dtd", "eurosat"):
        add_few_shot(root, "CoOp", ds, 4, 1, 60.0)
        add_few_shot(root, "CoOp", ds, 4, 2, 62.0)
    add_few_shot(root, "CoOp", "dtd", 8, 1, 66.0)  # dtd 8 shots: seed 2 missing
    add_few_shot(root, "MaPLe", "dtd", 4, 1, 70.0)
    # an interrupted training: a log without the final result
    add_few_shot(root, "MaPLe", "dtd", 4, 2, None, max_epoch=5, stop_after_epoch=2)
    report = rp.summarize_few_shot(root, seeds=[1, 2])
    texts = {str(m) for m in report.missing}
    assert texts == {"CoOp dtd shots_8 seed2: result no log",
                     "CoOp eurosat shots_8: shots no runs",
                     "MaPLe dtd shots_4 seed2: result unfinished (log has no final result)",
                     "MaPLe dtd shots_8: shots no runs",
                     "MaPLe eurosat: dataset no runs"}
    cell = report.cell("CoOp", "dtd", 8)
    assert cell.mean == 66.0 and not cell.complete and cell.n_expected == 2
    avg = report.cell("CoOp", results.AVERAGE, 8)
    assert avg.datasets == ["dtd"] and not avg.complete and avg.n_expected == 2
    printed = rp.render(report, "simple")
    assert "66.00 ± 0.00 (1/2 seeds)" in printed
    assert "(1/2, incomplete)" in printed and "Average over 2 datasets" in printed


def test_few_shot_named_config_is_its_own_method_and_xd_trainings_are_not_few_shot(tmp_path):
    root = str(tmp_path)
    add_few_shot(root, "CoOp", "dtd", 16, 1, 70.0)
    add_few_shot(root, "CoOp", "dtd", 16, 1, 75.0, cfg="vit_b16_ctxv1_proxyfda")
    add_xd(root, "CoOp", 1, 71.5, {"caltech101": 93.0})  # CoOp's xd config, on ImageNet
    report = rp.summarize_few_shot(root)
    assert [m for m, _ in report.methods] == ["CoOp", "CoOp/vit_b16_ctxv1_proxyfda"]
    assert report.datasets == ["dtd"]  # the ImageNet xd training is the xd table's source
    assert report.cell("CoOp/vit_b16_ctxv1_proxyfda", "dtd", 16).mean == 75.0


# ---------------------------------------------------------------------------------------
# Cross-dataset and domain generalization


def test_cross_dataset_table_has_the_source_each_target_and_the_mean_over_targets(tmp_path):
    root = str(tmp_path)
    add_xd(root, "CoOp", 1, 71.0, {"caltech101": 93.0, "dtd": 41.0, "imagenet_r": 75.0})
    add_xd(root, "CoOp", 2, 72.0, {"caltech101": 94.0, "dtd": 43.0, "imagenet_r": 77.0})
    xd = rp.summarize_transfer(root, "xd")
    assert xd.datasets == ["caltech101", "dtd"]  # the ImageNet variant is DG's
    source = xd.cell("CoOp", rp.SOURCE)
    assert source.mean == pytest.approx(71.5) and source.std == pytest.approx(0.5)
    assert xd.cell("CoOp", "dtd").mean == pytest.approx(42.0)
    avg = xd.cell("CoOp", results.AVERAGE)
    assert avg.mean == pytest.approx((93.5 + 42.0) / 2)  # targets only, not the source
    assert avg.complete and xd.missing == []
    dg = rp.summarize_transfer(root, "dg")
    assert dg.datasets == ["imagenet_r"] and dg.cell("CoOp", rp.SOURCE).mean == 71.5
    assert dg.cell("CoOp", results.AVERAGE).mean == pytest.approx(76.0)


def test_transfer_missing_seeds_targets_and_source_are_named(tmp_path):
    root = str(tmp_path)
    add_xd(root, "CoOp", 1, 71.0, {"dtd": 41.0, "eurosat": 50.0})
    add_xd(root, "CoOp", 2, None, {"dtd": 43.0})  # its training log was lost
    add_xd(root, "MaPLe", 1, 70.0, {"dtd": 45.0}, cfg="vit_b16_c2_ep5_batch4_2ctx_cross_datasets")
    report = rp.summarize_transfer(root, "xd", seeds=[1, 2])
    assert {str(m) for m in report.missing} == {
        "CoOp imagenet (source) seed2: result no log",
        "CoOp eurosat seed2: result no log",
        "MaPLe imagenet (source) seed2: result no log",
        "MaPLe dtd seed2: result no log",
        "MaPLe eurosat: dataset no runs"}
    assert not report.cell("CoOp", results.AVERAGE).complete
    assert report.cell("MaPLe", results.AVERAGE).datasets == ["dtd"]


def test_an_xd_training_without_evaluations_shows_with_its_targets_missing(tmp_path):
    root = str(tmp_path)
    add_xd(root, "PromptSRC", 1, 71.3, {}, cfg="vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets")
    report = rp.summarize_transfer(root, "xd", datasets=["dtd"])
    assert report.cell("PromptSRC", rp.SOURCE).mean == 71.3
    assert [str(m) for m in report.missing] == ["PromptSRC dtd: dataset no runs"]


def test_published_cross_dataset_average_is_shown_beside_a_full_10_target_table(tmp_path):
    root = str(tmp_path)
    add_xd(root, "CoOp", 1, 71.0, {t: 60.0 for t in XD_TARGETS})
    report = rp.summarize_transfer(root, "xd")
    (row,) = report.published
    assert row.method == "CoOp" and row.values[results.AVERAGE] == 63.88
    # per-dataset cells were not found in a readable source: empty, not invented
    assert all(row.values[t] is None for t in XD_TARGETS) and row.values[rp.SOURCE] is None
    assert "ProText" in row.where
    printed = rp.render(report, "simple")
    assert "CoOp (published)" in printed and "63.88" in printed
    # fewer targets: the published average is not comparable, so not shown
    assert rp.summarize_transfer(root, "xd", datasets=["dtd", "eurosat"]).published == []
    # DG: nothing recorded for CoOp itself (only for CoOp + DePT), and the notes say where
    # the DG numbers that are recorded come from
    add_xd(root, "CoOp", 1, None, {t: 60.0 for t in DG_TARGETS})
    dg = rp.summarize_transfer(root, "dg")
    assert dg.published == [] and any("Published domain generalization" in n
                                      and "Koorye/DePT" in n for n in dg.notes)


def test_published_tables_name_their_source_and_fit_the_protocol_lists():
    for table, targets in ((published.XD, XD_TARGETS), (published.DG, DG_TARGETS)):
        for row in table.values():
            assert row.where and len(row.targets) <= len(targets)
    for row in published.FEW_SHOT.values():
        assert row.where


def test_a_zero_shot_source_is_its_eval_only_imagenet_run(tmp_path):
    root = str(tmp_path)
    write(os.path.join(few_shot_dir(root, "ZeroshotCLIP", "vit_b16", XD_SOURCE, 16, 1),
                       "log.txt"),
          eval_log(66.7, decimals=2, **identity("ZeroshotCLIP", "vit_b16", XD_SOURCE, 16)))
    write(os.path.join(transfer_dir(root, "ZeroshotCLIP", "vit_b16", 16, "imagenetv2", 1),
                       "log.txt"),
          eval_log(60.8, decimals=2, **identity("ZeroshotCLIP", "vit_b16", "imagenetv2")))
    report = rp.summarize_transfer(root, "dg")
    assert report.cell("ZeroshotCLIP", rp.SOURCE).mean == 66.7
    assert report.cell("ZeroshotCLIP", "imagenetv2").mean == 60.8


# ---------------------------------------------------------------------------------------
# CLI


def full_tree(root):
    add_few_shot(root, "CoOp", "dtd", 1, 1, 50.0)
    add_few_shot(root, "CoOp", "dtd", 16, 1, 70.0)
    add_xd(root, "CoOp", 1, 71.0, {"dtd": 41.0, "imagenet_a": 49.0})
    from tests.test_results import add_run
    add_run(root, "CoOp", "dtd", 1, 80.0, 60.0)


def test_a_config_named_for_every_shots_keeps_the_runs_where_it_is_the_protocols_too(tmp_path):
    # CoOp/vit_b16 at every shots: at 8 and 16 shots vit_b16 is also CoOp's few-shot config
    root = str(tmp_path)
    for k in (1, 2, 4, 8, 16):
        add_few_shot(root, "CoOp", "dtd", k, 1, 50.0 + k, cfg="vit_b16")
    report = rp.summarize_few_shot(root)
    assert [report.cell("CoOp/vit_b16", "dtd", k).mean for k in (1, 2, 4, 8, 16)] == \
        [51.0, 52.0, 54.0, 58.0, 66.0]
    assert report.cell("CoOp", "dtd", 16).mean == 66.0  # the protocol's config there
    assert {str(m) for m in report.missing} == {f"CoOp dtd shots_{k}: shots no runs"
                                                for k in (1, 2, 4)}


def test_cli_prints_every_protocol_found_and_writes_each_with_its_plot(tmp_path, capsys):
    root = str(tmp_path / "output")
    full_tree(root)
    out = str(tmp_path / "res")
    assert results.main([root, "--out", out, "--plot", "--seeds", "1", "2"]) == 0
    printed = capsys.readouterr().out
    for title in ("Base-to-novel", "Few-shot", "Cross-dataset", "Domain generalization"):
        assert f"#### {title}" in printed
    assert "CoOp dtd shots_16 seed2: result no log" in printed
    for name in ("base2new", "few_shot", "xd", "dg"):
        for ext in ("csv", "json", "md", "png"):
            assert os.path.getsize(os.path.join(out, name, f"results.{ext}")) > 0
    data = json.load(open(os.path.join(out, "dg", "results.json")))
    cell = [c for c in data["cells"] if c["dataset"] == "imagenet_a"][0]
    assert cell["mean"] == 49.0 and data["protocol"] == "dg"
    md = open(os.path.join(out, "few_shot", "results.md")).read()
    assert md.startswith("# Few-shot results") and "## dtd" in md


def test_cli_protocol_selects_one_into_out(tmp_path, capsys):
    root = str(tmp_path / "output")
    full_tree(root)
    out = str(tmp_path / "res")
    assert results.main([root, "--protocol", "xd", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "== Cross-dataset" in printed and "Few-shot" not in printed
    assert os.path.isfile(os.path.join(out, "results.json"))
    assert results.main([str(tmp_path / "empty"), "--protocol", "dg"]) == 1
    assert "No domain generalization runs found" in capsys.readouterr().err
    assert results.main([str(tmp_path / "empty")]) == 1
