"""The built-in engine behaves like Dassl 0.6.3: defaults, schedules, sampling,
printouts and the trainer lifecycle."""
import math
import os
import random
import re
import sys
from collections import defaultdict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from builtin_dassl.checkpoint import load_checkpoint, save_checkpoint
from builtin_dassl.config import get_cfg_default
from builtin_dassl.data import (
    DATASET_REGISTRY,
    DataManager,
    DatasetBase,
    Datum,
    build_transform,
)
from builtin_dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from builtin_dassl.evaluation import build_evaluator
from builtin_dassl.metrics import compute_accuracy
from builtin_dassl.optim import build_lr_scheduler, build_optimizer
from builtin_dassl.utils import MetricMeter, setup_logger
from errors import ConfigError, DatasetError, UserError

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def make_images(root, n_train=6, n_test=4, size=(12, 10)):
    """<root>/<split>/<class>/<i>.png, solid colours with a little noise."""
    rng = random.Random(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for cname, rgb in COLORS.items():
            folder = root / split / cname
            folder.mkdir(parents=True)
            for i in range(n):
                color = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in rgb)
                Image.new("RGB", size, color).save(folder / f"{i}.png")


def read_split(root, split):
    items = []
    for label, cname in enumerate(COLORS):
        folder = os.path.join(root, split, cname)
        for f in sorted(os.listdir(folder)):
            items.append(Datum(os.path.join(folder, f), label=label, classname=cname))
    return items


@DATASET_REGISTRY.register()
class EngineTestColors(DatasetBase):
    def __init__(self, cfg):
        train = read_split(cfg.DATASET.ROOT, "train")
        train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
        super().__init__(train_x=train, test=read_split(cfg.DATASET.ROOT, "test"))


@DATASET_REGISTRY.register()
class EngineTestNoTrain(DatasetBase):
    def __init__(self, cfg):
        super().__init__(train_x=[], test=read_split(cfg.DATASET.ROOT, "test"))


@TRAINER_REGISTRY.register()
class EngineTestLinear(TrainerX):
    def build_model(self):
        self.model = nn.Linear(3 * 8 * 8, self.num_classes).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def model_inference(self, input):
        return self.model(input.flatten(1))

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image.flatten(1))
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}


def tiny_cfg(root, output_dir, **overrides):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "EngineTestColors"
    cfg.TRAINER.NAME = "EngineTestLinear"
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.USE_CUDA = False
    cfg.INPUT.SIZE = (8, 8)
    cfg.INPUT.TRANSFORMS = ("random_flip", "normalize")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 5
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.01
    cfg.OPTIM.MAX_EPOCH = 2
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    cfg.TRAIN.PRINT_FREQ = 10
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def epoch_lrs(optim_overrides, n_epochs, lr=2e-3, group_lrs=()):
    """The LR in effect during epochs 1..n_epochs (one step() per epoch)."""
    cfg = get_cfg_default()
    cfg.OPTIM.LR = lr
    for k, v in optim_overrides.items():
        cfg.OPTIM[k] = v
    params = [{"params": [nn.Parameter(torch.zeros(1))]}]
    params += [{"params": [nn.Parameter(torch.zeros(1))], "lr": g} for g in group_lrs]
    cfg.OPTIM.NAME = "sgd"
    optim = build_optimizer(params, cfg.OPTIM)
    sched = build_lr_scheduler(optim, cfg.OPTIM)
    lrs = []
    for _ in range(n_epochs):
        lrs.append([g["lr"] for g in optim.param_groups])
        optim.step()
        sched.step()
    return lrs


# ---------------------------------------------------------------- config


def test_config_defaults_are_dassls():
    cfg = get_cfg_default()
    assert cfg.OPTIM.WEIGHT_DECAY == 5e-4
    assert cfg.OPTIM.MOMENTUM == 0.9
    assert cfg.OPTIM.NAME == "adam" and cfg.OPTIM.LR == 0.0003
    assert cfg.OPTIM.LR_SCHEDULER == "single_step" and cfg.OPTIM.STEPSIZE == (-1,)
    assert cfg.OPTIM.WARMUP_EPOCH == -1 and cfg.OPTIM.WARMUP_TYPE == "linear"
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and cfg.OPTIM.WARMUP_RECOUNT is True
    assert cfg.TRAIN.CHECKPOINT_FREQ == 0 and cfg.TRAIN.PRINT_FREQ == 10
    assert cfg.INPUT.SIZE == (224, 224) and cfg.INPUT.INTERPOLATION == "bilinear"
    assert cfg.INPUT.RRCROP_SCALE == (0.08, 1.0)
    assert cfg.DATALOADER.NUM_WORKERS == 4 and cfg.DATALOADER.TEST.BATCH_SIZE == 32
    assert cfg.TEST.EVALUATOR == "Classification" and cfg.TEST.FINAL_MODEL == "last_step"
    assert cfg.SEED == -1 and cfg.USE_CUDA is True and cfg.OUTPUT_DIR == "./output"
    # keys of upstream trainers exist, so upstream configs merge
    assert cfg.TRAINER.FIXMATCH.CONF_THRE == 0.95


def test_peer_style_yaml_merges(tmp_path):
    yaml = tmp_path / "vit_b16.yaml"
    yaml.write_text(
        "DATALOADER:\n  TRAIN_X:\n    BATCH_SIZE: 32\n  TEST:\n    BATCH_SIZE: 100\n"
        "  NUM_WORKERS: 8\n"
        "INPUT:\n  SIZE: (224, 224)\n  INTERPOLATION: \"bicubic\"\n"
        "  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]\n"
        "  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]\n"
        "  TRANSFORMS: [\"random_resized_crop\", \"random_flip\", \"normalize\"]\n"
        "OPTIM:\n  NAME: \"sgd\"\n  LR: 0.002\n  MAX_EPOCH: 200\n  LR_SCHEDULER: \"cosine\"\n"
        "  WARMUP_EPOCH: 1\n  WARMUP_TYPE: \"constant\"\n  WARMUP_CONS_LR: 1e-5\n"
        "TRAIN:\n  PRINT_FREQ: 5\n"
        "MODEL:\n  BACKBONE:\n    NAME: \"ViT-B/16\"\n"
    )
    cfg = get_cfg_default()
    cfg.merge_from_file(str(yaml))
    assert cfg.OPTIM.LR == 0.002 and cfg.INPUT.INTERPOLATION == "bicubic"
    assert cfg.OPTIM.WEIGHT_DECAY == 5e-4


# ---------------------------------------------------------------- LR schedule


def test_cosine_with_constant_warmup_matches_dassl():
    lrs = [g[0] for g in epoch_lrs(
        {"LR_SCHEDULER": "cosine", "MAX_EPOCH": 3, "WARMUP_EPOCH": 1,
         "WARMUP_TYPE": "constant", "WARMUP_CONS_LR": 1e-5}, 3)]
    assert lrs == pytest.approx([1e-5, 2e-3, 1.5e-3], rel=1e-12)


def test_cosine_after_warmup_is_dassls_shifted_formula():
    max_epoch, lr = 20, 2.5e-3
    lrs = [g[0] for g in epoch_lrs(
        {"LR_SCHEDULER": "cosine", "MAX_EPOCH": max_epoch, "WARMUP_EPOCH": 1,
         "WARMUP_TYPE": "constant"}, max_epoch, lr=lr)]
    expected = [1e-5] + [
        0.5 * lr * (1 + math.cos(math.pi * (e - 2) / max_epoch))
        for e in range(2, max_epoch + 1)
    ]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_linear_warmup_matches_dassl_formula():
    # Dassl LinearWarmupScheduler: min_lr at step 0, base * t / W for 0 < t < W,
    # then the successor (recounted from 0).
    lr, w, max_epoch = 2e-3, 3, 6
    lrs = epoch_lrs(
        {"LR_SCHEDULER": "cosine", "MAX_EPOCH": max_epoch, "WARMUP_EPOCH": w,
         "WARMUP_TYPE": "linear", "WARMUP_MIN_LR": 1e-5}, 8, lr=lr, group_lrs=(0.5,))
    expected = [[1e-5, 1e-5], [lr / 3, 0.5 / 3], [2 * lr / 3, 2 * 0.5 / 3]]
    expected += [
        [b * (1 + math.cos(math.pi * k / max_epoch)) / 2 for b in (lr, 0.5)]
        for k in range(0, 5)
    ]
    for got, want in zip(lrs, expected):
        assert got == pytest.approx(want, rel=1e-9)


def test_step_schedules_and_no_recount():
    single = [g[0] for g in epoch_lrs(
        {"LR_SCHEDULER": "single_step", "STEPSIZE": (2,), "GAMMA": 0.1,
         "MAX_EPOCH": 6}, 6, lr=1.0)]
    assert single == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    multi = [g[0] for g in epoch_lrs(
        {"LR_SCHEDULER": "multi_step", "STEPSIZE": (1, 3), "GAMMA": 0.5,
         "MAX_EPOCH": 5, "WARMUP_EPOCH": 1, "WARMUP_TYPE": "constant",
         "WARMUP_CONS_LR": 0.01}, 6, lr=1.0)]
    # after warmup the milestones count from 0 again (WARMUP_RECOUNT)
    assert multi == pytest.approx([0.01, 1, 0.5, 0.5, 0.25, 0.25])
    no_recount = [g[0] for g in epoch_lrs(
        {"LR_SCHEDULER": "single_step", "STEPSIZE": (2,), "GAMMA": 0.1,
         "MAX_EPOCH": 6, "WARMUP_EPOCH": 1, "WARMUP_TYPE": "constant",
         "WARMUP_CONS_LR": 0.01, "WARMUP_RECOUNT": False}, 6, lr=1.0)]
    # the step schedule keeps the absolute epoch count: decays at 2 and 4
    assert no_recount == pytest.approx([0.01, 1, 0.1, 0.1, 0.01, 0.01])


def test_scheduler_state_loads_with_weights_only(tmp_path):
    cfg = get_cfg_default()
    cfg.OPTIM.update(NAME="sgd", LR=2e-3, MAX_EPOCH=5, LR_SCHEDULER="cosine",
                     WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    p = nn.Parameter(torch.zeros(1))
    optim = build_optimizer([p], cfg.OPTIM)
    sched = build_lr_scheduler(optim, cfg.OPTIM)
    for _ in range(2):
        optim.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)

    optim2 = build_optimizer([nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    sched2 = build_lr_scheduler(optim2, cfg.OPTIM)
    sched2.load_state_dict(state)
    optim.step()
    sched.step()
    optim2.step()
    sched2.step()
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())


def test_unknown_optimizer_or_scheduler_is_a_config_error():
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "lamb"
    with pytest.raises(ConfigError, match="sgd"):
        build_optimizer([nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR_SCHEDULER = "poly"
    optim = build_optimizer([nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    with pytest.raises(ConfigError, match="cosine"):
        build_lr_scheduler(optim, cfg.OPTIM)


# ---------------------------------------------------------------- registry


def test_unknown_trainer_gives_dassls_do_you_mean_message():
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "EngineTestLinaer"
    with pytest.raises(ValueError) as info:
        build_trainer(cfg)
    assert isinstance(info.value, ConfigError)
    msg = str(info.value)
    assert msg.startswith("The requested one is expected to belong to [")
    assert msg.endswith("but got [EngineTestLinaer] (do you mean [EngineTestLinear]?)")


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(KeyError, match='already registered in "TRAINER" registry'):
        TRAINER_REGISTRY.register(EngineTestLinear)
    with pytest.raises(KeyError, match='Object name "Nope" does not exist in "TRAINER" registry'):
        TRAINER_REGISTRY.get("Nope")


# ---------------------------------------------------------------- evaluation


def test_classification_evaluator_prints_dassls_result(capsys):
    y_true = [0, 1, 2, 1, 0, 0, 0, 2, 0, 0, 0, 0]
    y_pred = [2, 1, 0, 0, 0, 1, 1, 0, 2, 0, 0, 0]
    cfg = get_cfg_default()
    evaluator = build_evaluator(cfg, lab2cname={0: "a", 1: "b", 2: "c"})
    scores = F.one_hot(torch.tensor(y_pred), 3).float()
    evaluator.process(scores[:7], torch.tensor(y_true[:7]))
    evaluator.process(scores[7:], torch.tensor(y_true[7:]))
    results = evaluator.evaluate()
    out = capsys.readouterr().out
    assert out == (
        "Loading evaluator: Classification\n"
        "=> result\n"
        "* total: 12\n"
        "* correct: 5\n"
        "* accuracy: 41.7%\n"
        "* error: 58.3%\n"
        "* macro_f1: 31.1%\n"
    )
    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == pytest.approx(500 / 12)


def test_per_class_result_lines(capsys):
    cfg = get_cfg_default()
    cfg.VERBOSE = False
    cfg.TEST.PER_CLASS_RESULT = True
    evaluator = build_evaluator(cfg, lab2cname={0: "cat", 1: "dog"})
    evaluator.process(torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0]]), torch.tensor([0, 1, 1]))
    results = evaluator.evaluate()
    out = capsys.readouterr().out
    assert "=> per-class result\n* class: 0 (cat)\ttotal: 1\tcorrect: 1\tacc: 100.0%\n" in out
    assert "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%\n* average: 75.0%\n" in out
    assert results["perclass_accuracy"] == pytest.approx(75.0)


def test_metric_meter_prints_val_and_avg():
    meter = MetricMeter()
    meter.update({"loss": 1.5, "acc": torch.tensor(50.0)})
    meter.update({"loss": 0.5, "acc": 100.0})
    assert str(meter) == "loss 0.5000 (1.0000) acc 100.0000 (75.0000)"


# ---------------------------------------------------------------- data


def test_fewshot_subset_follows_dassls_random_calls(tmp_path):
    paths = []
    for i in range(30):
        p = tmp_path / f"{i}.png"
        p.touch()
        paths.append(str(p))
    rng = random.Random(3)
    data = [Datum(p, label=rng.randrange(5), classname="c") for p in paths]

    def restated(items, k):
        groups = defaultdict(list)
        for item in items:
            groups[item.label].append(item)
        out = []
        for members in groups.values():
            out.extend(random.sample(members, k) if len(members) >= k else members)
        return out

    random.seed(1)
    expected_train, expected_val = restated(data, 4), restated(data[:12], 4)
    random.seed(1)
    train, val = DatasetBase(train_x=data).generate_fewshot_dataset(data, data[:12], num_shots=4)
    assert [d.impath for d in train] == [d.impath for d in expected_train]
    assert [d.impath for d in val] == [d.impath for d in expected_val]
    assert DatasetBase(train_x=data).generate_fewshot_dataset(data, num_shots=-1) is data


def test_datum_requires_an_existing_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.png"):
        Datum(str(tmp_path / "missing.png"))


def test_test_transform_resizes_shorter_side_then_center_crops(tmp_path):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (8, 8)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    tfm = build_transform(cfg, is_train=False)
    names = [type(t).__name__ for t in tfm.transforms]
    assert names == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert tfm.transforms[0].size == 8  # an int: the shorter side, aspect kept
    assert tfm(Image.new("RGB", (20, 12))).shape == (3, 8, 8)
    train = build_transform(cfg, is_train=True)
    names = [type(t).__name__ for t in train.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]


def test_unsupported_transform_names_the_supported_ones():
    cfg = get_cfg_default()
    cfg.INPUT.TRANSFORMS = ("random_flip", "randaugment")
    with pytest.raises(ConfigError, match=r"\['randaugment'\].*random_resized_crop"):
        build_transform(cfg)


def test_data_manager_summary_and_loaders(tmp_path, capsys):
    make_images(tmp_path / "data")
    cfg = tiny_cfg(tmp_path / "data", tmp_path / "out")
    dm = DataManager(cfg)
    out = capsys.readouterr().out
    assert re.search(r"Dataset\s+EngineTestColors", out)
    assert re.search(r"# train_x\s+12", out) and re.search(r"# test\s+8", out)
    assert dm.num_classes == 2 and dm.lab2cname == {0: "red", 1: "blue"}
    assert len(dm.train_loader_x) == 3  # 12 images, batch 4, drop_last
    assert len(dm.test_loader) == 2  # 8 images, batch 5, partial batch kept
    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"label", "domain", "impath", "index", "img"}
    assert batch["img"].shape == (4, 3, 8, 8)


def test_empty_training_split_is_a_dataset_error(tmp_path):
    make_images(tmp_path / "data")
    cfg = tiny_cfg(tmp_path / "data", tmp_path / "out")
    cfg.DATASET.NAME = "EngineTestNoTrain"
    with pytest.raises(DatasetError, match="training split of EngineTestNoTrain is empty"):
        DataManager(cfg)


# ---------------------------------------------------------------- logging


def test_setup_logger_tees_stdout_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    console = sys.stdout
    setup_logger(str(tmp_path))
    print("first run")
    sys.stdout.flush()
    assert (tmp_path / "log.txt").read_text() == "first run\n"

    setup_logger(str(tmp_path))  # again in the same process: no stacked tee
    assert sys.stdout.console is console
    print("second run")
    sys.stdout.flush()
    logs = sorted(os.listdir(tmp_path))
    assert logs[0] == "log.txt" and len(logs) == 2
    assert re.fullmatch(r"log\.txt-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", logs[1])
    assert (tmp_path / logs[1]).read_text() == "second run\n"
    assert (tmp_path / "log.txt").read_text() == "first run\n"


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_with_weights_only(tmp_path, capsys):
    model = nn.Linear(3, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optim.step()
    state = {
        "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        "epoch": 3,
        "optimizer": optim.state_dict(),
        "scheduler": {"last_epoch": 3, "base_lrs": [0.1]},
        "val_result": None,
    }
    save_checkpoint(state, str(tmp_path / "model"), is_best=True)
    assert "Checkpoint saved to" in capsys.readouterr().out
    assert (tmp_path / "model" / "checkpoint").read_text() == "model.pth.tar-3\n"
    assert (tmp_path / "model" / "model-best.pth.tar").exists()
    assert not [f for f in os.listdir(tmp_path / "model") if f.startswith(".tmp")]

    loaded = load_checkpoint(str(tmp_path / "model" / "model.pth.tar-3"))
    assert set(loaded["state_dict"]) == {"weight", "bias"}  # "module." stripped
    assert torch.equal(loaded["state_dict"]["weight"], model.weight)
    assert loaded["epoch"] == 3 and loaded["scheduler"]["base_lrs"] == [0.1]
    optim.load_state_dict(loaded["optimizer"])


def test_load_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(UserError, match="nothing.pth"):
        load_checkpoint(str(tmp_path / "nothing.pth"))
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pth"):
        load_checkpoint(str(bad))
    pickled = tmp_path / "pickled.pth"
    torch.save({"scheduler": torch.optim.lr_scheduler.StepLR(
        torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 1)}, pickled)
    with pytest.raises(UserError, match="pickled.pth"):
        load_checkpoint(str(pickled))


# ---------------------------------------------------------------- trainer


def test_trainer_x_prints_dassl_lines_saves_and_resumes(tmp_path, capsys):
    make_images(tmp_path / "data")
    torch.manual_seed(0)
    cfg = tiny_cfg(tmp_path / "data", tmp_path / "out")
    trainer = build_trainer(cfg)
    trainer.train()
    out = capsys.readouterr().out
    assert "Loading trainer: EngineTestLinear" in out
    assert "No checkpoint found, train from scratch" in out
    line = re.compile(
        r"epoch \[1/2\] batch \[1/3\] time \d+\.\d{3} \(\d+\.\d{3}\) "
        r"data \d+\.\d{3} \(\d+\.\d{3}\) loss \d+\.\d{4} \(\d+\.\d{4}\) "
        r"acc \d+\.\d{4} \(\d+\.\d{4}\) lr 1\.0000e-05 eta \d+:\d\d:\d\d"
    )
    assert line.search(out), out
    # the scheduler steps inside the epoch's last batch, so that line shows epoch 2's lr
    assert re.search(r"epoch \[1/2\] batch \[3/3\] .* lr 1\.0000e-02 ", out)
    assert re.search(r"epoch \[2/2\] batch \[3/3\] ", out)
    lines = out.splitlines()
    tail = lines[lines.index("Finish training"):]
    assert tail[1:4] == ["Deploy the last-epoch model", "Evaluate on the *test* set", "=> result"]
    assert "* total: 8" in tail and any(l.startswith("* accuracy: ") for l in tail)
    assert re.fullmatch(r"Elapsed: \d+:\d\d:\d\d", tail[-1])
    ckpt_dir = tmp_path / "out" / "model"
    assert sorted(os.listdir(ckpt_dir)) == ["checkpoint", "model.pth.tar-2"]

    again = build_trainer(cfg)  # same OUTPUT_DIR: resumes, trains no epoch
    again.train()
    out = capsys.readouterr().out
    assert f"Found checkpoint at {tmp_path / 'out'} (will resume training)" in out
    assert "Loaded optimizer" in out and "Loaded scheduler" in out
    assert "Previous epoch: 2" in out and "epoch [" not in out
    assert torch.equal(again.model.weight, trainer.model.weight)
    assert again.get_current_lr() == pytest.approx(trainer.get_current_lr())

    again.load_model(str(tmp_path / "out"), epoch=2)
    assert "(epoch=2, val_result=None)" in capsys.readouterr().out


def test_nan_loss_stops_training():
    from builtin_dassl.engine import TrainerBase

    with pytest.raises(FloatingPointError, match="Loss is infinite or NaN!"):
        TrainerBase().detect_anomaly(torch.tensor(float("nan")))
