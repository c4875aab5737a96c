"""The sweep launcher runs a grid through submitit locally and resumes where it stopped.

The real trainers are not needed: ``python -m tools.dassl_log`` stands in for train.py. It
writes Dassl-format logs and checkpoints, resumes from its last checkpoint, and stops after
one epoch (exit 1) while a "crash" marker file exists, which is how a run gets interrupted.
"""
import os
import shlex
import sys

import pytest

from tests.helpers.tiny import HANG_GUARD
from tools import results, sweep
from tools.logparse import read_run

STAND_IN_TRAIN = ("{python} -m tools.dassl_log --output-dir {train_dir} --seed {seed} "
                  "--crash-if-exists {output}/crash_{dataset}_seed{seed} "
                  "--record {output}/calls.txt")
STAND_IN_TEST = ("{python} -m tools.dassl_log --eval-only --output-dir {test_dir} "
                 "--model-dir {train_dir} --load-epoch {load_epoch} --seed {seed} "
                 "--record {output}/calls.txt")


def grid_yaml(tmp_path, output):
    path = tmp_path / "grid.yaml"
    path.write_text(
        "trainers: [CoOp/vit_b16_ep2]\n"
        "datasets: [dtd, eurosat]\n"
        "seeds: [1, 2]\n"
        "shots: [16]\n"
        f"output: {output}\n"
        f"train_cmd: \"{STAND_IN_TRAIN}\"\n"
        f"test_cmd: \"{STAND_IN_TEST}\"\n")
    return str(path)


def calls(output):
    path = os.path.join(output, "calls.txt")
    return open(path).read().splitlines() if os.path.exists(path) else []


def test_two_by_two_grid_runs_locally_and_resumes_only_the_unfinished_run(tmp_path, capsys):
    output = str(tmp_path / "output")
    os.makedirs(output)
    grid = grid_yaml(tmp_path, output)
    crash = os.path.join(output, "crash_dtd_seed2")
    open(crash, "w").close()

    # First sweep: dtd seed2 is interrupted after its first epoch; the other three finish.
    assert sweep.main(["--grid", grid, "--cpu", "--no-progress"]) == 1
    first = calls(output)
    assert sum(c.startswith("train start_epoch=0") for c in first) == 4
    assert sum(c.startswith("test") for c in first) == 3
    out = capsys.readouterr().out
    assert "4 to run" in out and "1 run(s) failed" in out and "dtd shots_16 seed2" in out

    # Second sweep: only the interrupted run runs again, from its checkpoint, then its test.
    os.remove(crash)
    assert sweep.main(["--grid", grid, "--cpu", "--no-progress"]) == 0
    again = calls(output)[len(first):]
    train_dir = os.path.join(output, "base2new", "train_base", "dtd", "shots_16", "CoOp",
                             "vit_b16_ep2", "seed2")
    test_dir = train_dir.replace("train_base", "test_new")
    assert again == [f"train start_epoch=1 {train_dir}", f"test {test_dir}"]
    assert "3 already finished, 1 to run" in capsys.readouterr().out
    # Dassl never overwrites log.txt: the resumed training logged to log.txt-<timestamp>.
    assert os.path.basename(read_run(train_dir).log_file).startswith("log.txt-")

    # Third sweep: nothing left to do; the results tool sees all four seeds.
    assert sweep.main(["--grid", grid, "--cpu", "--no-progress"]) == 0
    assert len(calls(output)) == len(first) + 2
    report = results.summarize(output, seeds=[1, 2])
    assert report.missing == []
    assert [r.n_seeds for r in report.rows] == [2, 2, 2]


def test_grid_follows_the_peers_output_layout_and_train_py_cli(tmp_path):
    points = sweep.build_grid(["PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx"], ["dtd"], [3], [16],
                              str(tmp_path / "output"), "/data")
    (p,) = points
    assert p.train_dir.endswith(os.path.join(
        "output", "base2new", "train_base", "dtd", "shots_16", "PromptSRC",
        "vit_b16_c2_ep20_batch4_4+4ctx", "seed3"))
    train = sweep._command(p.train_cmd, p.fields, ["OPTIM.MAX_EPOCH", "2"])
    assert train[:2] == [sys.executable, "train.py"]
    joined = shlex.join(train)
    assert "--config-file configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml" in joined
    assert "--dataset-config-file configs/datasets/dtd.yaml" in joined
    assert joined.endswith("DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH 2")
    test = sweep._command(p.test_cmd, dict(p.fields, load_epoch="20"), [])
    assert "--eval-only" in test and "--load-epoch" in test and test[-1] == "new"


def test_zero_shot_clip_is_evaluated_not_trained(tmp_path):
    (p,) = sweep.build_grid(["ZeroshotCLIP/vit_b16"], ["dtd"], [1], [16], str(tmp_path), "/d")
    assert "--eval-only" in p.train_cmd and "{load_epoch}" not in p.test_cmd
    # Its configs are CoOp's, as in the peers' zsclip scripts and ours.
    config = sweep._command(p.train_cmd, p.fields, [])
    config = config[config.index("--config-file") + 1]
    assert config == "configs/trainers/CoOp/vit_b16.yaml"
    assert os.path.isfile(os.path.join(sweep.REPO, config))


def test_last_checkpoint_epoch_is_the_highest_saved(tmp_path):
    d = tmp_path / "prompt_learner"
    d.mkdir()
    for n in ("model.pth.tar-2", "model.pth.tar-10", "model-best.pth.tar", "checkpoint"):
        (d / n).touch()
    assert sweep.last_checkpoint_epoch(str(tmp_path)) == 10
    assert sweep.last_checkpoint_epoch(str(tmp_path / "absent")) is None


def test_slots_are_one_per_gpu_or_a_single_cpu_slot(monkeypatch):
    assert sweep.local_slots(None, cpu=True) == [None]
    assert sweep.local_slots([2, 3], cpu=False) == [2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert sweep.local_slots(None, cpu=False) == [0, 1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep.local_slots(None, cpu=False) == [None]


def test_dry_run_lists_what_is_left(tmp_path, capsys):
    output = str(tmp_path / "output")
    assert sweep.main(["--grid", grid_yaml(tmp_path, output), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 to run" in out and "CoOp/vit_b16_ep2 eurosat shots_16 seed2: train=todo" in out
    assert not os.path.exists(os.path.join(output, "base2new"))


def test_grid_without_trainers_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        sweep.main(["--datasets", "dtd", "--seeds", "1", "--root", "/d"])


def _default_sigint():
    """Ctrl-C's default action in the sweep and everything it starts: a shell that runs the
    suite in the background (``pytest &`` without job control) starts it with SIGINT ignored,
    and an ignored signal stays ignored across exec, so the sweep would never see it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_sweep_and_the_next_one_resumes_from_the_checkpoint(tmp_path):
    import signal
    import subprocess
    import time

    output = str(tmp_path / "output")
    # The stand-in stops after its first checkpoint until `release` exists, so the SIGINT
    # below always finds the training in progress, however slow or loaded the machine.
    release = os.path.join(output, "release")
    held_train = STAND_IN_TRAIN + f" --epochs 3 --hold-after-first-epoch {release}"
    argv = ["--trainers", "CoOp/vit_b16_ep2", "--datasets", "dtd", "--seeds", "1",
            "--output", output, "--root", "unused", "--cpu", "--no-progress",
            "--train-cmd", held_train, "--test-cmd", STAND_IN_TEST]
    proc = subprocess.Popen([sys.executable, "tools/sweep.py", *argv], cwd=sweep.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_default_sigint)
    train_dir = os.path.join(output, "base2new", "train_base", "dtd", "shots_16", "CoOp",
                             "vit_b16_ep2", "seed1")
    first_ckpt = os.path.join(train_dir, "prompt_learner", "model.pth.tar-1")
    while not os.path.exists(first_ckpt) and proc.poll() is None:  # however long it takes
        time.sleep(0.05)
    assert os.path.exists(first_ckpt), "the stand-in never saved its first checkpoint"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, _ = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 130, out.decode()
    assert not read_run(train_dir).finished

    open(release, "w").close()
    assert sweep.main(argv) == 0
    resumed = [c for c in calls(output) if c.startswith("train")]
    assert resumed[0] == f"train start_epoch=0 {train_dir}"
    assert resumed[1].startswith("train start_epoch=") and resumed[1] != resumed[0]
    assert read_run(train_dir).finished and len(resumed) == 2
