"""The benchmark runner's arithmetic and run wiring on tiny fixed inputs
(benchmark/run_benchmark.py, benchmark/select_defaults.py)."""
import math
import os

import numpy as np
import pytest

from benchmark import run_benchmark as rb
from tools.protocol import RunKey, base2new_dirs, base2new_steps

# A tiny fixed table: one trainer, two sets x two seeds, "none" and "proxyfda".
TABLE = [
    {"trainer": "CoOp", "dataset": "a", "seed": 1, "reg": "none", "novel": 50.0, "base": 80.0},
    {"trainer": "CoOp", "dataset": "a", "seed": 2, "reg": "none", "novel": 52.0, "base": 81.0},
    {"trainer": "CoOp", "dataset": "b", "seed": 1, "reg": "none", "novel": 60.0, "base": 70.0},
    {"trainer": "CoOp", "dataset": "b", "seed": 2, "reg": "none", "novel": 58.0, "base": 72.0},
    {"trainer": "CoOp", "dataset": "a", "seed": 1, "reg": "proxyfda", "novel": 53.0, "base": 80.0},
    {"trainer": "CoOp", "dataset": "a", "seed": 2, "reg": "proxyfda", "novel": 54.0, "base": 80.0},
    {"trainer": "CoOp", "dataset": "b", "seed": 1, "reg": "proxyfda", "novel": 61.0, "base": 71.0},
    {"trainer": "CoOp", "dataset": "b", "seed": 2, "reg": "proxyfda", "novel": 62.0, "base": 70.0},
    # another trainer's rows never pair with CoOp's
    {"trainer": "MaPLe", "dataset": "a", "seed": 1, "reg": "none", "novel": 0.0, "base": 0.0},
]


def test_paired_differences_match_set_and_seed():
    d = rb.paired_differences([r for r in TABLE if r["trainer"] == "CoOp"], "novel", "proxyfda")
    assert d == [3.0, 2.0, 1.0, 4.0]  # (a,1), (a,2), (b,1), (b,2)
    assert rb.paired_differences(TABLE, "base", "proxyfda") == [0.0, -1.0, 1.0, -2.0]
    # a regularizer run without its "none" partner is left out, not paired with another
    assert rb.paired_differences(TABLE[:3] + TABLE[4:], "novel", "proxyfda") == [3.0, 2.0, 1.0]


def test_mean_and_95_percent_t_interval():
    ci = rb.mean_ci([3.0, 2.0, 1.0, 4.0])
    # mean 2.5, sd (n-1) = sqrt(5/3), t(0.975, 3) = 3.182446
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert ci["n"] == 4 and ci["mean"] == pytest.approx(2.5)
    assert ci["lo"] == pytest.approx(2.5 - half, abs=1e-5)
    assert ci["hi"] == pytest.approx(2.5 + half, abs=1e-5)
    assert rb.fmt_ci(ci) == "+2.5 [+0.4, +4.6] *"  # excludes 0
    # the mark is decided on the unrounded bounds: -0.67 [-1.35, +0.02] rounds to +0.0
    near = rb.mean_ci([-0.8, -0.4, -0.8, 0.4, -0.8, -1.6])
    assert near["hi"] == pytest.approx(0.019, abs=1e-3)
    assert rb.fmt_ci(near) == "-0.7 [-1.4, +0.0]" and not rb.excludes_zero(near)
    assert rb.t_quantile(5) == pytest.approx(2.570582, abs=1e-6)
    one = rb.mean_ci([7.0])
    assert one["mean"] == 7.0 and math.isnan(one["lo"]) and rb.fmt_ci(one) == "+7.0"
    flat = rb.mean_ci([-1.0, -1.0, -1.0])
    assert (flat["lo"], flat["hi"]) == (-1.0, -1.0)


def test_hm_and_forgetting():
    assert rb.hm(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert rb.hm(0.0, 0.0) == 0.0
    f = rb.forgetting({"b": 70.0, "c": 81.0}, {"b": 75.0, "c": 80.0})
    assert f["per_set"] == {"b": -5.0, "c": 1.0}
    assert f["mean"] == pytest.approx(-2.0)


def test_summary_tables_carry_the_intervals():
    rows = []
    for r in TABLE[:8]:
        rows.append(dict(r, hm=rb.hm(r["base"], r["novel"]), dnew=r["novel"] - 55.0,
                         dbase=r["base"] - 75.0, forget=-1.0 if r["reg"] == "none" else 0.0))
    zs = {s: {"base": 75.0, "novel": 55.0, "all": 50.0} for s in rb.ALL_SETS + ("a", "b")}
    md = rb.summarize(rows, zs, ["a", "b"])
    line = next(l for l in md.splitlines() if l.startswith("| CoOp | proxyfda | 4 | +2.5"))
    assert "| +2.5 [+0.4, +4.6] * |" in line  # Δ novel against none
    assert line.endswith("| +1.0 [+1.0, +1.0] * |")  # Δ forget: +1 in every pair
    none = next(l for l in md.splitlines() if l.startswith("| CoOp | none | 4 |"))
    assert "| 55.0 |" in none  # mean novel
    # ΔNew = novel - 55: -5, -3, 5, 3; sd sqrt(68/3), half 3.1824 * 4.761 / 2 = 7.58
    assert "| +0.0 [-7.6, +7.6] |" in none


def test_grid_steps_go_through_the_protocol():
    out, root = "/o", "/d"
    steps = rb.run_steps_of("MaPLe", "proxyfda", "animals_digits", 2, out, root)
    train, test = base2new_steps("MaPLe", "bench_tiny_clip_proxyfda", "animals_digits", 2, out,
                                 root, 16)
    assert [s.args for s in steps[:2]] == [train.args, test.args]
    assert [s.out_dir for s in steps[:2]] == [train.out_dir, test.out_dir]
    forget = steps[2:]
    assert rb.FORGET_SETS["animals_digits"] == ("fashion_mnist", "mnist")  # no shared source
    assert len(forget) == 2
    dirs = base2new_dirs(out, RunKey("MaPLe", "bench_tiny_clip_proxyfda", "animals_digits", 16, 2))
    for step, target in zip(forget, rb.FORGET_SETS["animals_digits"]):
        a = step.args
        assert a[a.index("--model-dir") + 1] == dirs["train_base"] == step.model_dir
        assert a[a.index("--dataset-config-file") + 1] == f"configs/datasets/{target}.yaml"
        assert a[a.index("--config-file") + 1] == \
            "configs/trainers/MaPLe/bench_tiny_clip_proxyfda.yaml"
        assert a[-2:] == ["DATASET.SUBSAMPLE_CLASSES", "all"] and "--eval-only" in a
        assert step.out_dir == os.path.join(out, "base2new", "forget", "animals_digits", target,
                                            "shots_16", "MaPLe", "bench_tiny_clip_proxyfda",
                                            "seed2")


def test_every_grid_config_exists_and_the_quick_subset_is_inside_the_grid():
    from tools.protocol import trainer_config, trainer_entry
    for t in rb.TRAINERS:
        for reg in rb.REGS:
            trainer_config(trainer_entry(t), rb.cfg_name(reg))  # raises when missing
    assert set(rb.QUICK["sets"]) <= set(rb.REPORT_SETS)
    assert set(rb.QUICK["regs"]) <= set(rb.REGS)
    assert not set(rb.SELECTION_SETS) & set(rb.REPORT_SETS)


def test_selection_reads_only_the_held_out_set_and_its_val_split():
    from benchmark import select_defaults as sd
    assert sd.SELECTION_SET in rb.SELECTION_SETS
    for trainer, cands in sd.CANDIDATES.items():
        for name in cands:
            for step in sd.candidate_steps(trainer, name, 1, "/o", "/d"):
                a = step.args
                assert a[a.index("--dataset-config-file") + 1].endswith(f"/{sd.SELECTION_SET}.yaml")
                assert a[-2:] == ["TEST.SPLIT", "val"]


def test_cfg_names():
    assert rb.cfg_name("none") == "bench_tiny_clip"
    assert rb.cfg_name("proxyfda") == "bench_tiny_clip_proxyfda"
    assert np.all([rb.cfg_name(r).startswith("bench_tiny_clip") for r in rb.REGS])


def test_transfer_step_loads_what_the_novel_step_loads():
    """The forgetting evaluation loads the same training and epoch as the protocol's
    novel-class step (also under an OPTIM.MAX_EPOCH option); zero-shot loads nothing."""
    from tools.protocol import base2new_transfer_step

    opts = ["OPTIM.MAX_EPOCH", "3"]
    test = base2new_steps("CoOp", "bench_tiny_clip", "animals_digits", 1, "/o", "/d", 16,
                          opts=opts)[1]
    step = base2new_transfer_step("CoOp", "bench_tiny_clip", "animals_digits", "mnist", 1,
                                  "/o", "/d", 16, opts=opts)
    for flag in ("--model-dir", "--load-epoch"):
        assert step.args[step.args.index(flag) + 1] == test.args[test.args.index(flag) + 1]
    assert step.args[step.args.index("--load-epoch") + 1] == "3"
    assert step.requires == "base2new_train.sh animals_digits 1 bench_tiny_clip"
    zs = base2new_transfer_step("ZeroshotCLIP", "bench_tiny_clip", "mnist", "mnist", 1, "/o",
                                "/d", 16)
    assert "--model-dir" not in zs.args and "--load-epoch" not in zs.args
    assert zs.model_dir is None
