"""The Proxy-FDA defaults sweep's table (benchmark/sweep_proxyfda.py) on hand-made run records."""
import json
import os

import pytest

from benchmark import sweep_proxyfda
from benchmark.run_benchmark import SETS, cfg_name, run_dirs


def write_record(output, dataset, cfg, seed, base, novel, forget):
    path = os.path.join(output, "benchmark", "runs", f"{dataset}_MaPLe_{cfg}_seed{seed}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"dataset": dataset, "seed": seed, "base": base, "novel": novel,
                   "eval": {"forgetting": {"mean": forget}}}, f)


@pytest.fixture
def output(tmp_path):
    out = str(tmp_path)
    for ds in SETS:  # zero-shot novel 90 everywhere, read from Dassl-format logs
        d = run_dirs(out, ds, "ZeroshotCLIP", "bench_tiny_clip", 1)["test_new"]
        os.makedirs(d)
        with open(os.path.join(d, "log.txt"), "w") as f:
            f.write("=> result\n* accuracy: 90.0%\n")
    return out


def test_table_means_over_sets_and_seeds_with_score(output):
    for ds in SETS:
        for seed, fg in ((1, -4.0), (2, -2.0)):
            write_record(output, ds, cfg_name("none"), seed, 80.0, 80.0, fg)
            write_record(output, ds, cfg_name("proxyfda", "w3"), seed, 90.0, 85.0,
                         -1.0 if ds == "digits" else 0.0)
    text = sweep_proxyfda.table(output, "MaPLe", [1, 2], ["w3", "k2"])
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines()
            if line.startswith("| ") and "---" not in line and "variant" not in line}
    assert set(rows) == {"none", "w3"}  # variants without records are left out
    none = rows["none"]
    assert none[2:7] == ["8", "80.0", "80.0", "80.0", "-10.0"]
    assert none[7] == "-3.0 ± 1.0"  # per-seed means -4 and -2
    assert none[10].rstrip(" |") == "77.0"  # HM + forget
    w3 = rows["w3"]
    hm = 2 * 90 * 85 / 175
    assert w3[1] == "`PROXYFDA.TEXT_WEIGHT 3.0 PROXYFDA.IMAGE_WEIGHT 3.0`"
    assert w3[6] == "-5.0" and w3[7] == "-0.2 ± 0.0" and w3[8] == "-1.0" and w3[9] == "+0.0"
    assert w3[10].rstrip(" |") == f"{hm - 0.25:.1f}"
    assert os.path.isfile(os.path.join(output, "benchmark", "sweep_MaPLe.md"))


def test_every_variant_sets_only_proxyfda_keys():
    for name, opts in sweep_proxyfda.ALL.items():
        keys, values = opts[::2], opts[1::2]
        assert len(keys) == len(values), name
        assert all(k.startswith("PROXYFDA.") for k in keys), name
