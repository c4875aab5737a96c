"""tools/bench_speed.py is a measurement tool, not a test; this pins only that its baseline
(the batch-first, full-length towers it measures against) computes what ours computes, so
its ratios compare equal work, and that its --eval-cache mode compares equal results."""
import json

import pytest
import torch

import tools.bench_speed as bs


@pytest.mark.parametrize("trainer,classes,batch", [("CoOp", 5, 2), ("MaPLe", 5, 2),
                                                   ("CoCoOp", 3, 1)])
def test_the_baseline_computes_what_ours_computes(tmp_path, trainer, classes, batch):
    weights = str(tmp_path / "weights.pt")
    size = bs.write_weights(weights, quick=True)
    row = bs.measure(trainer, classes, batch, weights, size, steps=1)
    assert row["rel_err"] <= 1e-5  # logits of both paths
    assert row["ours_mb"] < row["base_mb"]  # the truncated text keeps less for the backward


def test_eval_cache_mode_reads_no_image_and_matches_the_full_path(capsys):
    """The tool's --eval-cache plumbing, on the narrow model (what it reports is timing,
    which no test can pin): its cached side decodes no image, its logits equal the full
    path's, and its last line is the JSON the README quotes."""
    threads = torch.get_num_threads()
    try:
        assert bs.main(["--eval-cache", "--quick", "--rounds", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"eval_first", "eval_cached", "max_rel_err"} <= set(result)
    assert result["max_rel_err"] == 0.0  # the same batch size: bit for bit
    assert result["decoded_cached"] == 0 and result["images"] == 20
