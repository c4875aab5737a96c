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
from tools import results, results_protocols, sweep
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
        "trainers: [CoOp/vit_b16_ep50]\n"
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
                             "vit_b16_ep50", "seed2")
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
                              str(tmp_path / "output"), "/data", opts=["OPTIM.MAX_EPOCH", "2"])
    (p,) = points
    assert p.train_dir.endswith(os.path.join(
        "output", "base2new", "train_base", "dtd", "shots_16", "PromptSRC",
        "vit_b16_c2_ep20_batch4_4+4ctx", "seed3"))
    train = p.command(p.steps[0])
    assert train[:2] == [sys.executable, "train.py"]
    joined = shlex.join(train)
    assert "--config-file configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml" in joined
    assert "--dataset-config-file configs/datasets/dtd.yaml" in joined
    assert joined.endswith("DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH 2")
    test = p.command(p.steps[1])
    # the evaluation loads the last epoch the options give the training
    assert "--eval-only" in test and test[test.index("--load-epoch") + 1] == "2"
    assert test[-3:] == ["new", "OPTIM.MAX_EPOCH", "2"]


def test_zero_shot_clip_is_evaluated_not_trained(tmp_path):
    (p,) = sweep.build_grid(["ZeroshotCLIP/vit_b16"], ["dtd"], [1], [16], str(tmp_path), "/d")
    train, test = (p.command(st) for st in p.steps)
    assert "--eval-only" in train and "--model-dir" not in test
    # Its configs are CoOp's, as in the peers' zsclip scripts and ours.
    config = train[train.index("--config-file") + 1]
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
    assert "4 to run" in out and "CoOp/vit_b16_ep50 eurosat shots_16 seed2: train=todo" in out
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
    argv = ["--trainers", "CoOp/vit_b16_ep50", "--datasets", "dtd", "--seeds", "1",
            "--output", output, "--root", "unused", "--cpu", "--no-progress",
            "--train-cmd", held_train, "--test-cmd", STAND_IN_TEST]
    proc = subprocess.Popen([sys.executable, "tools/sweep.py", *argv], cwd=sweep.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_default_sigint)
    train_dir = os.path.join(output, "base2new", "train_base", "dtd", "shots_16", "CoOp",
                             "vit_b16_ep50", "seed1")
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


# ---------------------------------------------------------------------------------------
# Every protocol: the dry run lists the scripts' steps; skipping and resuming work alike


def listed_commands(out):
    """The commands a dry run listed, one per step, split into arguments."""
    return [shlex.split(line.split("] ", 1)[1]) for line in out.splitlines()
            if line.startswith("    [")]


def script_steps(name, positionals, output, root):
    """What scripts/coop/<name>.sh runs for these arguments (tools/protocol.py steps_for)."""
    from tools import protocol

    return [[sys.executable, "train.py", "--output-dir", st.out_dir, *st.args]
            for st in protocol.steps_for(name, "CoOp", positionals, None, output, root)]


@pytest.mark.parametrize("proto", ["base2new", "few_shot", "xd", "dg"])
def test_dry_run_lists_each_protocols_steps_as_the_scripts_run_them(tmp_path, capsys, proto):
    from tools import protocol

    output, root = str(tmp_path / "output"), str(tmp_path / "data")
    assert sweep.main(["--protocol", proto, "--trainers", "CoOp", "--seeds", "1", "--dry-run",
                       "--output", output, "--root", root]) == 0
    expected = []
    if proto == "base2new":
        for ds in protocol.DATASETS:
            expected += script_steps("base2new_train", [ds, "1"], output, root)
            expected += script_steps("base2new_test", [ds, "1"], output, root)
    elif proto == "few_shot":
        for k in (1, 2, 4, 8, 16):
            for ds in protocol.DATASETS:
                expected += script_steps("few_shot", [ds, str(k), "1"], output, root)
    else:
        expected = script_steps("xd_train", ["1"], output, root) + \
            script_steps("xd_test" if proto == "xd" else "dg_test", ["all", "1"], output, root)
    assert listed_commands(capsys.readouterr().out) == expected
    assert not os.path.exists(output)


@pytest.mark.parametrize("script, args, proto", [
    ("coop/few_shot.sh", ["eurosat", "2", "1"], "few_shot"),
    ("coop/xd_test.sh", ["all", "1"], "xd"),
    ("coop/dg_test.sh", ["imagenet_r", "1"], "dg"),
])
def test_the_scripts_print_the_commands_the_sweep_lists(tmp_path, capsys, script, args, proto):
    """The bash scripts (DRY_RUN=1) and the sweep's listing agree, folder and arguments."""
    from tests.test_scripts import dry_run_commands, run_script

    output = str(tmp_path / "output")
    printed = dry_run_commands(run_script(script, *args, env=dict(
        DRY_RUN="1", DATA=str(tmp_path), OUTPUT=output)))
    assert sweep.main(["--protocol", proto, "--trainers", "CoOp", "--seeds", "1", "--dry-run",
                       "--output", output, "--root", str(tmp_path)]) == 0
    listed = listed_commands(capsys.readouterr().out)
    assert printed and all(cmd in listed for cmd in printed)


def test_the_exact_must_show_command_runs_without_a_dataset_root(tmp_path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "DATA"}
    for proto, n_steps in (("base2new", 22), ("few_shot", 55), ("xd", 11), ("dg", 5)):
        proc = subprocess.run([sys.executable, "tools/sweep.py", "--protocol", proto,
                               "--trainers", "CoOp", "--seeds", "1", "--dry-run",
                               "--output", str(tmp_path / "o")],
                              cwd=sweep.REPO, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert len(listed_commands(proc.stdout)) == n_steps
        assert "--root '$DATA'" in proc.stdout  # a placeholder in a listing


def test_a_trainer_without_config_gets_the_protocols_config_per_point(tmp_path):
    points = sweep.build_grid(["PromptSRC"], ["dtd", "caltech101"], [1], [4], str(tmp_path),
                              "/d", protocols=["few_shot", "xd"])
    cfgs = {(p.protocol, p.key.dataset): p.key.cfg for p in points}
    assert cfgs == {("few_shot", "dtd"): "vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45",
                    ("few_shot", "caltech101"): "vit_b16_c2_ep50_batch4_4+4ctx_few_shot",
                    ("xd", "imagenet"): "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"}


def test_xd_and_dg_of_one_model_are_one_job_that_trains_once(tmp_path):
    points = sweep.build_grid(["CoCoOp"], ["imagenet"], [1], None, str(tmp_path), "/d",
                              protocols=["few_shot", "xd", "dg"], targets=["dtd", "imagenet_r"])
    # CoCoOp's few-shot and xd configs are one: the 16-shot ImageNet run is xd's training too
    merged = [p for p in points if p.protocol == "few_shot+xd+dg"]
    assert len(merged) == 1 and [st.name for st in merged[0].steps] == \
        ["train", "dtd", "imagenet_r"]
    assert len(points) == 5  # 1, 2, 4, 8 shots alone, and the merged one


def test_datasets_and_targets_are_refused_where_they_name_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--protocol", "xd", "--trainers", "CoOp", "--seeds", "1",
                    "--datasets", "dtd", "--dry-run"])
    assert "--targets" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--protocol", "dg", "--trainers", "CoOp", "--seeds", "1",
                    "--targets", "dtd", "--dry-run"])
    assert "none of the targets dtd is a dg target" in str(exc.value)


STAND_IN_STEP = ("{python} -m tools.dassl_log --output-dir {out_dir} "
                 "--crash-if-exists {output}/crash_{dataset}_seed{seed} "
                 "--record {output}/calls.txt {args}")


def test_few_shot_grid_skips_finished_runs_and_resumes_the_interrupted_ones(tmp_path, capsys):
    output = str(tmp_path / "output")
    os.makedirs(output)
    argv = ["--protocol", "few_shot", "--trainers", "CoOp", "--datasets", "dtd", "eurosat",
            "--shots", "1", "2", "--seeds", "1", "--output", output, "--root", str(tmp_path),
            "--step-cmd", STAND_IN_STEP, "--cpu", "--no-progress"]
    crash = os.path.join(output, "crash_dtd_seed1")
    open(crash, "w").close()
    assert sweep.main(argv) == 1  # dtd's two trainings stop after their first epoch
    first = calls(output)
    assert sum(c.startswith("train start_epoch=0") for c in first) == 4
    assert "2 run(s) failed" in capsys.readouterr().out
    assert sweep.main(argv + ["--dry-run"]) == 0
    assert "few_shot CoOp/vit_b16_ep50 dtd shots_1 seed1: train=resume" in \
        capsys.readouterr().out

    os.remove(crash)
    assert sweep.main(argv) == 0
    again = sorted(calls(output)[len(first):])
    dirs = [os.path.join(output, "dtd", "CoOp", f"{cfg}_{k}shots", "seed1")
            for cfg, k in (("vit_b16_ep50", 1), ("vit_b16_ep100", 2))]
    assert again == sorted(f"train start_epoch=1 {d}" for d in dirs)
    assert "2 already finished, 2 to run" in capsys.readouterr().out
    assert sweep.main(argv) == 0 and len(calls(output)) == len(first) + 2

    report = results_protocols.summarize_few_shot(output, seeds=[1])
    assert report.missing == [] and report.shots == [1, 2]
    assert report.cell("CoOp", "dtd", 2).cfgs == ["vit_b16_ep100"]


def test_transfer_grid_trains_once_then_evaluates_and_resumes(tmp_path, capsys):
    output = str(tmp_path / "output")
    os.makedirs(output)
    argv = ["--protocol", "xd", "dg", "--trainers", "CoOp", "--targets", "dtd", "eurosat",
            "imagenet_r", "--seeds", "1", "--output", output, "--root", str(tmp_path),
            "--step-cmd", STAND_IN_STEP, "--cpu", "--no-progress"]
    crash = os.path.join(output, "crash_imagenet_seed1")
    open(crash, "w").close()
    assert sweep.main(argv) == 1  # the training stops: no evaluation runs
    assert [c.split()[0] for c in calls(output)] == ["train"]
    assert "1 run(s) failed" in capsys.readouterr().out

    os.remove(crash)
    # one evaluation already finished (e.g. by xd_test.sh): it is skipped
    eval_dir = os.path.join(output, "evaluation", "CoOp", "vit_b16_ep50_ctxv1_16shots", "dtd",
                            "seed1")
    from tools.dassl_log import eval_log
    os.makedirs(eval_dir)
    with open(os.path.join(eval_dir, "log.txt"), "w") as f:
        f.write(eval_log(44.4, seed=1, trainer="CoOp",
                         config_file="configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml",
                         dataset_config_file="configs/datasets/dtd.yaml"))
    assert sweep.main(argv) == 0
    train_dir = os.path.join(output, "imagenet", "CoOp", "vit_b16_ep50_ctxv1_16shots", "seed1")
    assert calls(output)[1:] == [
        f"train start_epoch=1 {train_dir}",
        f"test {eval_dir.replace('dtd', 'eurosat')}",
        f"test {eval_dir.replace('dtd', 'imagenet_r')}"]
    out = capsys.readouterr().out
    assert "done xd+dg CoOp/vit_b16_ep50_ctxv1 imagenet shots_16 seed1" in out
    assert "dtd skipped 44.40" in out

    xd = results_protocols.summarize_transfer(output, "xd", seeds=[1])
    assert xd.datasets == ["dtd", "eurosat"] and xd.missing == []
    assert xd.cell("CoOp", "dtd").mean == 44.4
    dg = results_protocols.summarize_transfer(output, "dg", seeds=[1])
    assert dg.datasets == ["imagenet_r"] and dg.cell("CoOp", results_protocols.SOURCE).n_seeds == 1
