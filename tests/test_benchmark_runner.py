"""The benchmark runner's arithmetic on tiny known inputs (benchmark/run_benchmark.py)."""
import math

import numpy as np
import pytest

from benchmark.run_benchmark import (cfg_name, correlations, forgetting, l2_distance, otdd,
                                     pearson, spearman)


def two_clusters():
    # class 0 around the origin, class 1 far away; 3 points each
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1],
                  [10.0, 10.0], [10.1, 10.0], [10.0, 10.1]])
    y = np.array([0, 0, 0, 1, 1, 1])
    return x, y


def test_l2_distance_is_mean_row_norm():
    a = np.zeros((2, 2))
    b = np.array([[3.0, 4.0], [0.0, 1.0]])
    assert l2_distance(a, b) == pytest.approx(3.0)  # (5 + 1) / 2
    assert l2_distance(b, b) == 0.0


def test_otdd_zero_for_identical_sets():
    x, y = two_clusters()
    assert otdd(x, y, x, y) == pytest.approx(0.0, abs=1e-9)


def test_otdd_of_a_translation():
    # Shifting every point by v: the feature cost is |v|^2 and the label distance between
    # matching classes is |v|^2 too, so OTDD = sqrt(2) |v| (the clusters are far apart,
    # so the identity coupling is optimal).
    x, y = two_clusters()
    v = np.array([0.3, 0.4])  # |v| = 0.5
    assert otdd(x, y, x + v, y) == pytest.approx(math.sqrt(2) * 0.5, rel=1e-6)


def test_otdd_ignores_a_consistent_relabelling():
    # OTDD compares datasets, not label ids: swapping the two class names maps each
    # cluster onto itself (label distance W(0, 1') = 0), so the distance stays 0.
    x, y = two_clusters()
    assert otdd(x, y, x, 1 - y) == pytest.approx(0.0, abs=1e-9)


def test_otdd_label_cost_counts():
    # One point of class 0 is relabelled 1 in the second set: the points are equal, but
    # the class-conditional distributions now differ, so OTDD > 0.
    x, y = two_clusters()
    y2 = y.copy()
    y2[0] = 1
    assert otdd(x, y, x, y2) > 1.0


def test_otdd_symmetric_in_sample_order():
    x, y = two_clusters()
    perm = np.array([5, 0, 3, 1, 4, 2])
    v = np.array([0.0, 1.0])
    assert otdd(x, y, x[perm] + v, y[perm]) == pytest.approx(otdd(x, y, x + v, y))


def test_forgetting_excludes_the_training_set():
    tuned = {"a": 90.0, "b": 70.0, "c": 81.0}
    zs = {"a": 80.0, "b": 75.0, "c": 80.0}
    f = forgetting(tuned, zs, "a")
    assert f["per_set"] == {"b": -5.0, "c": 1.0}
    assert f["mean"] == pytest.approx(-2.0)


def test_correlations():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))


def test_per_trainer_correlations_are_taken_within_each_trainer():
    # Pooled, the two trainers' offsets make L2 look predictive; within each trainer it is
    # exactly anti-predictive for A and perfectly predictive for B.
    pairs = {"trainer": ["A"] * 3 + ["B"] * 3,
             "l2": [1, 2, 3, 10, 11, 12], "otdd": [1, 2, 3, 4, 5, 6],
             "img_l2": [0, 0, 0, 1, 1, 1], "dacc": [-3, -2, -1, -20, -21, -22]}
    c = correlations(pairs)
    assert set(c) == {"all", "A", "B"}
    assert c["all"]["l2"]["n"] == 6 and c["A"]["l2"]["n"] == 3
    assert c["all"]["l2"]["pearson"] < -0.9
    assert c["A"]["l2"]["pearson"] == pytest.approx(1.0)
    assert c["B"]["l2"]["spearman"] == pytest.approx(-1.0)
    assert math.isnan(c["A"]["img_l2"]["pearson"])  # constant within A


def test_cfg_names_match_the_results_table_marks():
    assert cfg_name("none") == "bench_tiny_clip"
    assert cfg_name("proxyfda") == "bench_tiny_clip_proxyfda"
    assert "proxyfda" not in cfg_name("fda")
    assert cfg_name("ldifs", "lr0.02") == "bench_tiny_clip_ldifs_lr0.02"


def test_eval_build_draws_the_few_shot_split_as_a_function_of_the_seed(tmp_path):
    # The runner's in-process evaluation builds a trainer per set; when it is the first to
    # need a (set, seed) few-shot draw it caches it, and a later train.py run reads that cache.
    # The draw must not depend on what the process did before.
    import random

    from benchmark.prepare_data import main as prepare
    from benchmark.run_benchmark import build_eval_trainer
    from datasets.common import fewshot_cache_path

    drawn = []
    for i, root in enumerate((tmp_path / "a", tmp_path / "b")):
        prepare(["--out", str(root), "--sets", "Digits"])
        random.seed(100 + i)  # different state left by earlier work in the process
        [random.random() for _ in range(i + 1)]
        build_eval_trainer(str(root), "digits", "CoOp", 3, [])
        with open(fewshot_cache_path(str(root / "digits"), 16, 3)) as f:
            drawn.append(f.read())
    assert drawn[0] == drawn[1]
