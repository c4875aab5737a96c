"""A training's output folder is never continued by another run, never written by two at
once, and a resume after an interrupted save is exact: the run ends bitwise as if nothing
had happened. Each refusal is one ERROR line that names the fix, with nothing finished lost.
"""
import os
import os.path as osp

import pytest
import torch

import run_folder
from tests.helpers.tiny import make_toy_dataset, train_args, train_in_process

CONFIG = "configs/trainers/CoOp/tiny_ctxv1.yaml"
TWO_MODELS = ["PROXYFDA.ENABLE", "True"]  # the prompt learner and Proxy-FDA's generator
BASE = ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
        "TRAIN.CHECKPOINT_FREQ", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")), classes=4, train_per_class=4,
                            test_per_class=2)


def args(root, out, *extra, seed=1, trainer="CoOp", config=CONFIG):
    return train_args(root, out, trainer=trainer, config=config, seed=seed,
                      extra=[*BASE, *map(str, extra)])


def snapshot(folder):
    """Every file under ``folder`` with its bytes (what a refused run must not touch)."""
    out = {}
    for d, _, files in os.walk(folder):
        for name in files:
            with open(osp.join(d, name), "rb") as f:
                out[osp.relpath(osp.join(d, name), folder)] = f.read()
    return out


def refused(capfd, code, fix):
    """One ERROR line naming ``fix``, exit code 1, no traceback."""
    out, err = capfd.readouterr()
    errors = [line for line in (out + err).splitlines() if line.startswith("ERROR:")]
    assert code == 1 and len(errors) == 1 and fix in errors[0], (code, out[-2000:], err[-2000:])
    assert "Traceback" not in out + err


def ctx(out, epoch):
    return torch.load(osp.join(out, "prompt_learner", f"model.pth.tar-{epoch}"),
                      weights_only=True)["state_dict"]["ctx"]


def test_a_save_interrupted_between_two_models_resumes_from_the_epoch_both_have(
        root, tmp_path, monkeypatch, capfd):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert train_in_process(args(root, straight, *TWO_MODELS, "OPTIM.MAX_EPOCH", 3)) == 0

    import builtin_dassl.checkpoint as ckpt

    real_save = ckpt.save_checkpoint

    def killed_during_second_save(state, save_dir, **kw):
        if osp.basename(save_dir) == "proxyfda" and state["epoch"] == 2:
            open(osp.join(save_dir, "tmp-killed.part"), "w").close()  # what a kill leaves
            raise KeyboardInterrupt  # the process dies between the two saves of epoch 2
        return real_save(state, save_dir, **kw)

    monkeypatch.setattr(ckpt, "save_checkpoint", killed_during_second_save)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(args(root, broken, *TWO_MODELS, "OPTIM.MAX_EPOCH", 3))
    monkeypatch.setattr(ckpt, "save_checkpoint", real_save)
    assert osp.exists(broken / "prompt_learner" / "model.pth.tar-2")
    assert not osp.exists(broken / "proxyfda" / "model.pth.tar-2")
    capfd.readouterr()

    assert train_in_process(args(root, broken, *TWO_MODELS, "OPTIM.MAX_EPOCH", 3)) == 0
    out = capfd.readouterr().out
    assert "resuming from epoch 1, the newest epoch every model has" in out
    assert "Previous epoch: 1" in out and "tmp-killed.part, left by an interrupted save" in out
    assert not osp.exists(broken / "proxyfda" / "tmp-killed.part")
    assert torch.equal(ctx(broken, 3), ctx(straight, 3))


@pytest.fixture
def finished(root, tmp_path):
    out = tmp_path / "seed1"
    assert train_in_process(args(root, out, "OPTIM.MAX_EPOCH", 2)) == 0
    return out


@pytest.mark.parametrize("change,fix", [
    (dict(seed=2), "SEED 1 -> 2"),
    (dict(extra=("OPTIM.MAX_EPOCH", 1)), "OPTIM.MAX_EPOCH 2 -> 1"),
    (dict(extra=("OPTIM.MAX_EPOCH", 2, "DATASET.NUM_SHOTS", 1)), "DATASET.NUM_SHOTS 2 -> 1"),
    (dict(trainer="KgCoOp", config="configs/trainers/KgCoOp/tiny_ctxv1.yaml",
          extra=("OPTIM.MAX_EPOCH", 2)), "TRAINER.NAME 'CoOp' -> 'KgCoOp'"),
])
def test_a_training_into_another_runs_folder_is_refused(root, finished, capfd, change, fix):
    before = snapshot(finished)
    capfd.readouterr()
    code = train_in_process(args(root, finished, *change.get("extra", ("OPTIM.MAX_EPOCH", 2)),
                                 seed=change.get("seed", 1),
                                 trainer=change.get("trainer", "CoOp"),
                                 config=change.get("config", CONFIG)))
    refused(capfd, code, fix)
    assert snapshot(finished) == before


def test_the_same_run_again_is_a_resume_not_a_refusal(root, finished, capfd):
    capfd.readouterr()
    assert train_in_process(args(root, finished, "OPTIM.MAX_EPOCH", 2)) == 0
    assert "Previous epoch: 2" in capfd.readouterr().out


def test_a_second_writer_into_the_same_folder_is_refused(root, tmp_path, capfd):
    out = tmp_path / "busy"
    with run_folder.lock(str(out)):  # a run that is still writing there
        code = train_in_process(args(root, out, "OPTIM.MAX_EPOCH", 1))
    refused(capfd, code, "Another process is writing to")
    assert not osp.exists(out / "log.txt") and not osp.exists(out / "prompt_learner")
    assert train_in_process(args(root, out, "OPTIM.MAX_EPOCH", 1)) == 0  # released


def test_the_lock_file_outlives_its_release(tmp_path):
    # Were it deleted on release (filelock 3.0.0 did so), a writer that had opened the old
    # file and one that creates a new file could both hold "the" lock (py-filelock issue 31).
    out = tmp_path / "run"
    with run_folder.lock(str(out)):
        pass
    assert (out / run_folder.LOCK_FILE).is_file()
    with run_folder.lock(str(out)):  # and the next writer takes it
        with pytest.raises(run_folder.RunFolderError, match="Another process is writing to"):
            run_folder.lock(str(out))


def test_checkpoints_without_an_identity_are_not_resumed(root, tmp_path, capfd):
    out = tmp_path / "legacy"
    (out / "prompt_learner").mkdir(parents=True)
    (out / "prompt_learner" / "model.pth.tar-1").write_bytes(b"x")
    code = train_in_process(args(root, out, "OPTIM.MAX_EPOCH", 1))
    refused(capfd, code, "holds checkpoints but no run.json")


def test_a_truncated_checkpoint_names_the_file_and_the_epoch_to_resume_from(root, tmp_path,
                                                                            capfd):
    out = tmp_path / "trunc"
    assert train_in_process(args(root, out, "OPTIM.MAX_EPOCH", 2)) == 0
    path = out / "prompt_learner" / "model.pth.tar-2"
    path.write_bytes(path.read_bytes()[:100])
    (out / "prompt_learner" / "checkpoint").write_text("")  # an empty pointer is harmless
    capfd.readouterr()
    code = train_in_process(args(root, out, "OPTIM.MAX_EPOCH", 2))
    refused(capfd, code, "model.pth.tar-2")
    (out / "prompt_learner" / "model.pth.tar-2").unlink()
    capfd.readouterr()
    assert train_in_process(args(root, out, "OPTIM.MAX_EPOCH", 2)) == 0
    assert "Previous epoch: 1" in capfd.readouterr().out


@pytest.mark.parametrize("extra,fix", [
    (("OPTIM.MAX_EPOCH", 0), "OPTIM.MAX_EPOCH must be >= 1"),
    (("OPTIM.MAX_EPOCH", 1, "DATALOADER.TRAIN_X.BATCH_SIZE", 2, "PROXYFDA.ENABLE", "True",
      "PROXYFDA.IMAGE_WEIGHT", 1.0),
     "set DATALOADER.TRAIN_X.BATCH_SIZE to 3 or more"),
])
def test_runs_that_would_silently_do_nothing_are_refused(root, tmp_path, capfd, extra, fix):
    trainer, config = ("MaPLe", "configs/trainers/MaPLe/tiny_2ctx.yaml") \
        if "PROXYFDA.ENABLE" in extra else ("CoOp", CONFIG)
    code = train_in_process(args(root, tmp_path / "x", *extra, trainer=trainer, config=config))
    refused(capfd, code, fix)


def test_zero_shot_clip_refuses_a_regularizer(root, tmp_path, capfd):
    code = train_in_process(train_args(
        root, tmp_path / "zs", trainer="ZeroshotCLIP", config=CONFIG,
        extra=["--eval-only", "LDIFS.ENABLE", "True"]))
    refused(capfd, code, "set LDIFS.ENABLE False")


def test_more_epochs_extend_the_run_with_a_warning(root, finished, capfd):
    capfd.readouterr()
    assert train_in_process(args(root, finished, "OPTIM.MAX_EPOCH", 3)) == 0
    out = capfd.readouterr().out
    assert "WARNING: extending the 2-epoch run" in out and "Previous epoch: 2" in out
    assert osp.exists(finished / "prompt_learner" / "model.pth.tar-3")
