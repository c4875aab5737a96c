"""train.py end to end with CoOp and ZeroshotCLIP on the tiny backbone and a
generated dataset: Dassl's log lines, learnable-only checkpoints, eval-only on
the novel classes, bitwise resume, and one clear error for each bad input."""
import os.path as osp

import pytest
import torch

from tests.helpers.tiny import make_toy_dataset, read_log, run_train, train_args

EPOCHS = ["OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def base_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "base"
    run_train(train_args(root, out, extra=["DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES",
                                           "base", *EPOCHS]))
    return out


def ckpt(out, epoch, name="prompt_learner"):
    return torch.load(osp.join(out, name, f"model.pth.tar-{epoch}"), weights_only=True)


def test_training_writes_dassl_log_lines(base_run):
    log = read_log(base_run)
    assert "epoch [1/3] batch [1/" in log and "lr 2.0000e-03" in log
    assert "Finish training" in log and "Deploy the last-epoch model" in log
    assert "Evaluate on the *test* set" in log
    assert "=> result" in log and "* accuracy: " in log and "* macro_f1: " in log
    assert "Elapsed: " in log


def test_checkpoint_holds_learnable_parameters_only(base_run):
    state = ckpt(base_run, 3)
    assert set(state["state_dict"]) == {"ctx"}  # no CLIP weights, no class buffers
    assert state["state_dict"]["ctx"].shape == (4, 64)  # "a photo of a" on width 64
    assert state["epoch"] == 3 and state["optimizer"] is not None
    assert osp.getsize(osp.join(base_run, "prompt_learner", "model.pth.tar-3")) < 100_000
    with open(osp.join(base_run, "prompt_learner", "checkpoint")) as f:
        assert f.read().strip() == "model.pth.tar-3"


def test_eval_only_on_novel_classes_loads_the_checkpoint(root, base_run, tmp_path):
    out = tmp_path / "new"
    run_train(train_args(root, out, extra=[
        "--model-dir", base_run, "--load-epoch", "3", "--eval-only",
        "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "new"]))
    log = read_log(out)
    assert f"Load {base_run}/prompt_learner/model.pth.tar-3 to prompt_learner (epoch=3" in log
    assert "* total: 12" in log  # 3 novel classes x 4 test images
    assert "* accuracy: " in log and "Finish training" not in log


def test_eval_only_with_a_wrong_epoch_names_the_missing_file(root, base_run, tmp_path):
    proc = run_train(train_args(root, tmp_path / "e", extra=[
        "--model-dir", base_run, "--load-epoch", "7", "--eval-only",
        "DATASET.SUBSAMPLE_CLASSES", "new"]), check=False)
    assert proc.returncode == 1
    assert "ERROR: No model at" in proc.stderr and "model.pth.tar-7" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_interrupted_run_resumes_and_ends_bitwise_equal(root, base_run, tmp_path):
    out = tmp_path / "resumed"
    args = train_args(root, out, extra=["DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES",
                                        "base", *EPOCHS])
    first = run_train(args, script="tests/helpers/interrupt_after_first_epoch.py", check=False)
    assert first.returncode == 3, first.stderr[-2000:]
    assert osp.exists(osp.join(out, "prompt_learner", "model.pth.tar-1"))
    assert not osp.exists(osp.join(out, "prompt_learner", "model.pth.tar-2"))

    run_train(args)  # the very same command
    log = read_log(out, latest=True)  # the re-run logs to log.txt-<timestamp>
    assert "Previous epoch: 1" in log
    assert "epoch [1/3]" not in log and "epoch [2/3] batch [1/" in log
    for epoch in (2, 3):
        assert torch.equal(ckpt(out, epoch)["state_dict"]["ctx"],
                           ckpt(base_run, epoch)["state_dict"]["ctx"])


def test_zero_shot_clip_evaluates_with_the_dataset_template(root, tmp_path):
    out = tmp_path / "zs"
    run_train(train_args(root, out, trainer="ZeroshotCLIP", extra=[
        "--eval-only", "DATASET.SUBSAMPLE_CLASSES", "new"]))
    log = read_log(out)
    assert "Prompts: ['a photo of a purple circle.'" in log
    assert "* total: 12" in log and "* accuracy: " in log


def test_fp16_on_cpu_warns_once_then_trains_in_fp32(root, tmp_path):
    out = tmp_path / "fp16"
    run_train(train_args(root, out, extra=["TRAINER.COOP.PREC", "fp16", "OPTIM.MAX_EPOCH", "1"]))
    log = read_log(out)
    assert log.count("WARNING: PREC fp16 needs CUDA") == 1
    assert ckpt(out, 1)["state_dict"]["ctx"].dtype == torch.float32


def test_nan_loss_stops_naming_epoch_and_batch(root, tmp_path):
    nan_ctx = tmp_path / "nan.pth"
    torch.save({"state_dict": {"ctx": torch.full((4, 64), float("nan"))}}, nan_ctx)
    proc = run_train(train_args(root, tmp_path / "nan", extra=["MODEL.INIT_WEIGHTS", nan_ctx]),
                     check=False)
    assert proc.returncode == 1
    assert "ERROR: Loss is nan at epoch 1/3, batch 1/" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("change, message", [
    (["--trainer", "CoOpp"], "Unknown trainer 'CoOpp' (do you mean CoOp?)"),
    (["TRAINER.COOP.N_CTXX", "4"], "Unknown config key TRAINER.COOP.N_CTXX in the command-line "
                                   "options. Did you mean TRAINER.COOP.N_CTX"),
    (["--dataset-config-file", "configs/datasets/nope.yaml"], "Config file not found"),
    (["DATASET.NAME", "OxfordPet"], "Unknown dataset 'OxfordPet' (do you mean OxfordPets?)"),
    (["--root", "/no/such/data"], "Dataset root /no/such/data does not exist"),
    (["OPTIM.MAX_EPOCH", "three"], "Invalid config"),
])
def test_bad_input_ends_in_one_clear_error(root, tmp_path, change, message):
    args = train_args(root, tmp_path / "bad")
    for i in range(0, len(change), 2):
        if change[i].startswith("--") and change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i:i + 2]
    proc = run_train(args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluation_encodes_class_text_features_once(root, tmp_path):
    import train
    from dassl_compat import build_trainer

    args = train.build_parser().parse_args(train_args(root, tmp_path / "once", extra=[
        "DATALOADER.TEST.BATCH_SIZE", "5", "TRAINER.COOP.PREC", "fp32"]))
    trainer = build_trainer(train.setup_cfg(args))
    assert len(trainer.test_loader) > 2
    calls = []
    text_forward = trainer.model.backbone.text.forward
    trainer.model.backbone.text.forward = lambda *a, **k: calls.append(1) or text_forward(*a, **k)
    trainer.test()
    assert len(calls) == 1
    trainer.test()
    assert len(calls) == 2  # once per evaluation, never stale across evaluations
