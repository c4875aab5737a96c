"""The results tool reads Dassl logs in the peers' output layout and does the protocol's
arithmetic: seed means, population std, HM of the means, average row = HM of the averages."""
import json
import os

import numpy as np
import pytest

from tools import results
from tools.dassl_log import eval_log, training_log
from tools.logparse import final_accuracy, read_run

CFG = "vit_b16_ep2"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def run_dir(root, split, dataset, trainer, seed, cfg=CFG, shots=16):
    return os.path.join(root, "base2new", split, dataset, f"shots_{shots}", trainer, cfg,
                        f"seed{seed}")


def identity(trainer, cfg, dataset, shots):
    """The header fields train.py prints for this run (what the results tool checks)."""
    folder = "CoOp" if trainer == "ZeroshotCLIP" else trainer
    return dict(trainer=trainer, config_file=f"configs/trainers/{folder}/{cfg}.yaml",
                dataset_config_file=f"configs/datasets/{dataset}.yaml", shots=shots)


def add_run(root, trainer, dataset, seed, base, novel, cfg=CFG, decimals=1,
            end_line="Finish training", shots=16):
    run = identity(trainer, cfg, dataset, shots)
    if base is not None:
        write(os.path.join(run_dir(root, "train_base", dataset, trainer, seed, cfg, shots),
                           "log.txt"),
              training_log(base, decimals=decimals, end_line=end_line, seed=seed, **run))
    if novel is not None:
        write(os.path.join(run_dir(root, "test_new", dataset, trainer, seed, cfg, shots),
                           "log.txt"),
              eval_log(novel, decimals=decimals, seed=seed, **run))


def add_zeroshot(root, dataset, base, novel):
    # Zero-shot CLIP has no training: both sides are eval-only logs.
    run = identity("ZeroshotCLIP", "vit_b16", dataset, 16)
    write(os.path.join(run_dir(root, "train_base", dataset, "ZeroshotCLIP", 1, "vit_b16"),
                       "log.txt"), eval_log(base, **run))
    write(os.path.join(run_dir(root, "test_new", dataset, "ZeroshotCLIP", 1, "vit_b16"),
                       "log.txt"), eval_log(novel, **run))


# ---------------------------------------------------------------------------------------
# Log parsing


def test_training_log_result_is_the_test_after_finish_training():
    text = training_log(81.3, val_accuracy=55.5)
    assert final_accuracy(text.splitlines()) == 81.3


def test_older_finished_training_line_is_accepted():
    text = training_log(77.25, end_line="Finished training", decimals=2)
    assert final_accuracy(text.splitlines()) == 77.25


def test_eval_only_log_gives_the_last_result():
    assert final_accuracy(eval_log(74.2).splitlines()) == 74.2


def test_interrupted_training_log_has_no_result_even_with_val_results():
    text = training_log(90.0, max_epoch=5, stop_after_epoch=2, val_accuracy=60.0)
    assert final_accuracy(text.splitlines()) is None


def test_resumed_run_result_comes_from_the_newest_log_with_a_result(tmp_path):
    d = tmp_path / "seed1"
    write(str(d / "log.txt"), training_log(50.0, stop_after_epoch=1))
    write(str(d / "log.txt-2024-01-02-03-04-05"), training_log(88.8, start_epoch=1))
    write(str(d / "log.txt.bak"), training_log(11.1))  # not a Dassl log name: ignored
    r = read_run(str(d))
    assert r.accuracy == 88.8 and r.log_file.endswith("log.txt-2024-01-02-03-04-05")
    assert r.n_results == 1


# ---------------------------------------------------------------------------------------
# Arithmetic


def test_per_dataset_means_population_std_and_hm_of_means(tmp_path):
    root = str(tmp_path)
    bases, novels = [80.0, 82.0, 84.0], [70.0, 71.0, 75.0]
    for seed, (b, n) in enumerate(zip(bases, novels), start=1):
        add_run(root, "CoOp", "caltech101", seed, b, n)
    row = results.summarize(root).row("CoOp", "caltech101")
    assert row.n_seeds == 3 and row.seeds == [1, 2, 3]
    assert row.base == pytest.approx(82.0)
    assert row.base_std == pytest.approx(np.std(bases, ddof=0))
    assert row.novel == pytest.approx(72.0)
    assert row.novel_std == pytest.approx(np.std(novels, ddof=0))
    assert row.hm == pytest.approx(2 * 82.0 * 72.0 / (82.0 + 72.0))
    per_seed_hm = [2 * b * n / (b + n) for b, n in zip(bases, novels)]
    assert row.hm_std == pytest.approx(np.std(per_seed_hm, ddof=0))


def test_clip_published_average_hm(tmp_path):
    assert results.harmonic_mean(69.34, 74.22) == pytest.approx(71.70, abs=0.005)


def test_average_row_is_hm_of_averages_not_mean_of_hms(tmp_path):
    root = str(tmp_path)
    # Two datasets whose averages are CLIP's published 69.34 / 74.22, with two-decimal logs.
    add_run(root, "CoOp", "dtd", 1, 59.34, 84.22, decimals=2)
    add_run(root, "CoOp", "eurosat", 1, 79.34, 64.22, decimals=2)
    report = results.summarize(root)
    avg = report.row("CoOp", results.AVERAGE)
    assert avg.base == pytest.approx(69.34) and avg.novel == pytest.approx(74.22)
    assert round(avg.hm, 2) == 71.70
    mean_of_hms = np.mean([report.row("CoOp", d).hm for d in ("dtd", "eurosat")])
    assert abs(avg.hm - mean_of_hms) > 0.5
    assert avg.complete and avg.datasets == ["dtd", "eurosat"]


def test_finished_training_variant_counts_in_the_table(tmp_path):
    root = str(tmp_path)
    add_run(root, "MaPLe", "dtd", 1, 80.12, 60.34, decimals=2, end_line="Finished training")
    row = results.summarize(root).row("MaPLe", "dtd")
    assert (row.base, row.novel) == (80.12, 60.34)


def test_delta_new_uses_our_zero_shot_runs_when_present(tmp_path):
    root = str(tmp_path)
    add_zeroshot(root, "dtd", 53.2, 59.9)
    add_run(root, "CoOp", "dtd", 1, 79.4, 41.2)
    report = results.summarize(root)
    row = report.row("CoOp", "dtd")
    assert row.delta_new == pytest.approx(41.2 - 59.9)
    assert "ours" in row.delta_new_ref
    assert report.row("CoOp", results.AVERAGE).delta_new == pytest.approx(41.2 - 59.9)
    zs_base = report.row("ZeroshotCLIP", "dtd")
    assert zs_base.base == 53.2  # eval-only log in train_base


def test_delta_new_falls_back_to_published_clip_for_the_11_dataset_average(tmp_path):
    root = str(tmp_path)
    from tools.protocol import DATASETS as BASE2NEW_DATASETS
    for ds in BASE2NEW_DATASETS:
        add_run(root, "PromptSRC", ds, 1, 84.26, 76.10, decimals=2)
    avg = results.summarize(root).row("PromptSRC", results.AVERAGE)
    assert avg.delta_new == pytest.approx(76.10 - 74.22)
    assert avg.delta_new_ref.startswith("published CLIP 74.22")
    assert (avg.published, avg.pub_base, avg.pub_novel, avg.pub_hm) == \
        ("PromptSRC", 84.26, 76.10, 79.97)


def test_published_numbers_sit_beside_16_shot_runs_only(tmp_path):
    root = str(tmp_path)
    add_run(root, "CoOp", "dtd", 1, 80.0, 60.0, shots=16)
    add_run(root, "CoOp", "dtd", 1, 50.0, 40.0, shots=4)
    rows = {r.shots: r for r in results.summarize(root).rows if r.dataset == results.AVERAGE}
    assert rows[16].published == "CoOp" and rows[16].pub_hm == 71.66
    assert rows[4].published is None and rows[4].pub_hm is None


def test_published_numbers_are_not_shown_beside_other_datasets(tmp_path):
    # The CPU benchmark's sets are not among the 11; CLIP ViT-B/16 numbers beside them mislead.
    root = str(tmp_path)
    add_run(root, "CoOp", "digits", 1, 80.0, 60.0, shots=16)
    add_run(root, "CoOp", "dtd", 1, 80.0, 60.0, shots=16)
    avg = results.summarize(root).row("CoOp", results.AVERAGE)
    assert avg.datasets == ["dtd", "digits"] and avg.published is None
    root2 = str(tmp_path / "two")
    add_run(root2, "CoOp", "dtd", 1, 80.0, 60.0, shots=16)
    assert results.summarize(root2).row("CoOp", results.AVERAGE).published == "CoOp"


def test_proxyfda_configs_map_to_the_proxyfda_published_row():
    assert results.published_label("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx_proxyfda") == \
        "PromptSRC + Proxy-FDA"
    assert results.published_label("ZeroshotCLIP", "vit_b16") == "CLIP"
    assert results.published_label("CLIPLoRA", "vit_b16") is None  # none published
    # IVLP's published row is its 4+4-token, 20-epoch config's, not the 2+2 default's
    assert results.published_label("IVLP", "vit_b16_c2_ep20_batch4_4+4ctx") == "IVLP"
    assert results.published_label("IVLP", "vit_b16_c2_ep5_batch4_2+2ctx") is None


# ---------------------------------------------------------------------------------------
# Missing runs


def test_missing_novel_seed_is_reported_and_not_averaged(tmp_path):
    root = str(tmp_path)
    add_run(root, "CoOp", "dtd", 1, 80.0, 60.0)
    add_run(root, "CoOp", "dtd", 2, 90.0, None)  # base only: test_new never ran
    report = results.summarize(root)
    row = report.row("CoOp", "dtd")
    assert row.n_seeds == 1 and row.base == 80.0 and not row.complete
    texts = [str(m) for m in report.missing]
    assert texts == [f"CoOp/{CFG} shots_16 dtd seed2: novel no log"]


def test_expected_seeds_and_datasets_are_reported_by_name(tmp_path):
    root = str(tmp_path)
    add_run(root, "CoOp", "dtd", 1, 80.0, 60.0)
    add_run(root, "CoOp", "eurosat", 1, 80.0, 60.0)
    add_run(root, "MaPLe", "dtd", 1, 82.0, 70.0)
    report = results.summarize(root, seeds=[1, 2])
    texts = {str(m) for m in report.missing}
    assert f"CoOp/{CFG} shots_16 dtd seed2: base+novel no log" in texts
    assert f"MaPLe/{CFG} shots_16 eurosat: dataset no runs" in texts
    avg = report.row("MaPLe", results.AVERAGE)
    assert not avg.complete and avg.datasets == ["dtd"]


def test_unfinished_training_is_reported_as_unfinished(tmp_path):
    root = str(tmp_path)
    add_run(root, "CoOp", "dtd", 1, 80.0, 60.0)
    write(os.path.join(run_dir(root, "train_base", "dtd", "CoOp", 2), "log.txt"),
          training_log(None, max_epoch=5, stop_after_epoch=1, seed=2,
                       **identity("CoOp", CFG, "dtd", 16)))
    texts = [str(m) for m in results.summarize(root).missing]
    assert texts == [f"CoOp/{CFG} shots_16 dtd seed2: base unfinished (log has no final result)",
                     f"CoOp/{CFG} shots_16 dtd seed2: novel no log"]


# ---------------------------------------------------------------------------------------
# CLI and outputs


def test_cli_writes_csv_json_markdown_and_plot(tmp_path, capsys):
    root = str(tmp_path / "output")
    add_zeroshot(root, "dtd", 53.2, 59.9)
    for seed in (1, 2):
        add_run(root, "CoOp", "dtd", seed, 79.0 + seed, 41.0 + seed)
    out = str(tmp_path / "res")
    assert results.main([root, "--out", out, "--plot", "--seeds", "1", "2", "3"]) == 0
    printed = capsys.readouterr().out
    assert "dtd" in printed and "Missing runs" in printed and "seed3" in printed
    for ext in ("csv", "json", "md", "png"):
        assert os.path.getsize(os.path.join(out, f"results.{ext}")) > 0
    data = json.load(open(os.path.join(out, "results.json")))
    assert data["std"].startswith("population")
    coop = [r for r in data["rows"] if r["trainer"] == "CoOp" and r["dataset"] == "dtd"][0]
    assert coop["base"] == pytest.approx(80.5) and coop["n_seeds"] == 2
    assert any("seed3" in m["text"] for m in data["missing"])
    md = open(os.path.join(out, "results.md")).read()
    assert "## CoOp/" in md and "| dtd " in md and "- CoOp/" in md


# ---------------------------------------------------------------------------------------
# Logs of another run in a run folder


def test_a_log_of_another_config_in_a_folder_is_skipped_with_a_warning(tmp_path, capsys):
    root = str(tmp_path / "output")
    add_run(root, "MaPLe", "dtd", 1, 80.0, 74.40, cfg="vit_b16_c2_ep5_batch4_2ctx", decimals=2)
    novel_dir = run_dir(root, "test_new", "dtd", "MaPLe", 1, cfg="vit_b16_c2_ep5_batch4_2ctx")
    stray = os.path.join(novel_dir, "log.txt-2030-01-01-00-00-00")  # newer: it used to win
    write(stray, eval_log(98.6, seed=1, **identity("MaPLe", "vit_b16_c2_ep5_batch4_2ctx_proxyfda",
                                                   "dtd", 16)))
    assert results.main([root, "--out", str(tmp_path / "res")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and stray in warnings[0]
    assert "config configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_proxyfda.yaml, not " \
           "vit_b16_c2_ep5_batch4_2ctx" in warnings[0]
    row = results.summarize(root).row("MaPLe", "dtd")
    assert row.novel == pytest.approx(74.40)


@pytest.mark.parametrize("field, value, says", [
    ("trainer", "CoOp", "trainer CoOp, not MaPLe"),
    ("config_file", "configs/trainers/MaPLe/other.yaml", "config configs/trainers/MaPLe/other.yaml"),
    ("dataset_config_file", "configs/datasets/eurosat.yaml", "dataset config configs/datasets/eurosat.yaml"),
    ("shots", 4, "4 shots, not 16"),
    ("seed", 2, "seed 2, not 1"),
])
def test_each_field_of_the_run_is_checked(tmp_path, field, value, says):
    d = run_dir(str(tmp_path), "test_new", "dtd", "MaPLe", 1)
    run = dict(identity("MaPLe", CFG, "dtd", 16), seed=1)
    run[field] = value
    write(os.path.join(d, "log.txt"), eval_log(70.0, **run))
    seen = []
    result = read_run(d, warn=lambda message, path: seen.append(message))
    assert result.accuracy is None and len(result.skipped) == 1
    assert len(seen) == 1 and says in seen[0]


def test_the_folder_holds_the_result_of_its_own_logs_only(tmp_path):
    d = run_dir(str(tmp_path), "train_base", "dtd", "CoOp", 3)
    run = identity("CoOp", CFG, "dtd", 16)
    write(os.path.join(d, "log.txt"), training_log(81.0, seed=3, **run))
    write(os.path.join(d, "log.txt-2030-01-01-00-00-00"), training_log(99.0, seed=1, **run))
    result = read_run(d, warn=None)
    assert result.accuracy == 81.0 and result.log_file.endswith("log.txt")
    assert result.skipped == (os.path.join(d, "log.txt-2030-01-01-00-00-00"),)


def test_a_variant_folder_holds_its_config_plus_options_but_a_config_folder_only_that_config(
        tmp_path):
    # A sweep's runs: bench_tiny_clip.yaml plus options, in bench_tiny_clip_k10 (no config file
    # of that name), are accepted; MaPLe has a bench_tiny_clip_proxyfda.yaml, so that folder
    # holds runs of that file only.
    import glob
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert not glob.glob(os.path.join(repo, "configs", "trainers", "CoOp", "bench_tiny_clip_k10*"))
    run = identity("CoOp", "bench_tiny_clip", "digits", 16)
    d = run_dir(str(tmp_path), "test_new", "digits", "CoOp", 1, cfg="bench_tiny_clip_k10")
    write(os.path.join(d, "log.txt"), eval_log(60.0, **run))
    assert read_run(d, warn=None).accuracy == 60.0
    run = identity("MaPLe", "bench_tiny_clip", "digits", 16)
    d = run_dir(str(tmp_path), "test_new", "digits", "MaPLe", 1, cfg="bench_tiny_clip_proxyfda")
    write(os.path.join(d, "log.txt"), eval_log(60.0, **run))
    assert read_run(d, warn=None).skipped


def test_run_identity_follows_the_protocol_folders(tmp_path):
    from tools.logparse import RunIdentity
    from tools.protocol import few_shot_dir, run_identity, transfer_dir

    out = str(tmp_path)
    assert run_identity(run_dir(out, "test_new", "dtd", "MaPLe", 2, cfg="c", shots=4)) == \
        RunIdentity("MaPLe", "c", "dtd", 4, 2)
    assert run_identity(few_shot_dir(out, "CoOp", "vit_b16", "eurosat", 8, 3)) == \
        RunIdentity("CoOp", "vit_b16", "eurosat", 8, 3)
    assert run_identity(transfer_dir(out, "CoOp", "vit_b16", 16, "dtd", 1)) == \
        RunIdentity("CoOp", "vit_b16", "dtd", None, 1)
    assert run_identity(str(tmp_path / "somewhere" / "else")) is None


def test_the_header_train_py_prints_is_read(tmp_path, capsys):
    import train

    args = train.build_parser().parse_args([
        "--root", str(tmp_path), "--seed", "3", "--trainer", "KgCoOp",
        "--dataset-config-file", "configs/datasets/dtd.yaml",
        "--config-file", "configs/trainers/KgCoOp/tiny_ctxv1.yaml", "--output-dir", "x",
        "DATASET.NUM_SHOTS", "8"])
    train.print_args(args, train.setup_cfg(args))
    from tools.logparse import log_header

    header = log_header(capsys.readouterr().out.splitlines())
    assert header["trainer"] == "KgCoOp" and header["seed"] == "3"
    assert header["config_file"] == "configs/trainers/KgCoOp/tiny_ctxv1.yaml"
    assert header["dataset_config_file"] == "configs/datasets/dtd.yaml"
    assert header["DATASET.NUM_SHOTS"] == "8" and header["TRAINER.NAME"] == "KgCoOp"
    # nesting is followed back out of deeper nodes
    assert header["DATALOADER.TRAIN_X.BATCH_SIZE"] == "8" and header["INPUT.SIZE"] == "(32, 32)"
