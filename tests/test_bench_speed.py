"""tools/bench_speed.py is a measurement tool, not a test; this pins only that its baseline
(the batch-first, full-length towers it measures against) computes what ours computes, so
its ratios compare equal work."""
import pytest

import tools.bench_speed as bs


@pytest.mark.parametrize("trainer,classes,batch", [("CoOp", 5, 2), ("MaPLe", 5, 2),
                                                   ("CoCoOp", 3, 1)])
def test_the_baseline_computes_what_ours_computes(tmp_path, trainer, classes, batch):
    weights = str(tmp_path / "weights.pt")
    size = bs.write_weights(weights, quick=True)
    row = bs.measure(trainer, classes, batch, weights, size, steps=1)
    assert row["rel_err"] <= 1e-5  # logits of both paths
    assert row["ours_mb"] < row["base_mb"]  # the truncated text keeps less for the backward
