"""ImageFolder and the toy generator: the dataset every test and demo trains on."""
import hashlib
import os
import random

import pytest

import datasets
from dassl_compat import DATASET_REGISTRY, DataManager, get_cfg_default
from datasets.make_toy_dataset import main as make_toy_main
from datasets.make_toy_dataset import make_toy_dataset
from errors import DatasetError


def cfg_for(root, shots=-1, subsample="all", folder="toy", seed=1):
    cfg = get_cfg_default()
    datasets.add_dataset_config(cfg)
    cfg.merge_from_file(os.path.join("configs", "datasets", "image_folder.yaml"))
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.IMAGE_FOLDER.DIR = folder
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return cfg


def build(cfg):
    random.seed(cfg.SEED)
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def digest(folder):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(os.path.relpath(os.path.join(dirpath, name), folder).encode())
            with open(os.path.join(dirpath, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_generator_is_deterministic_and_names_classes_in_words(tmp_path):
    names = make_toy_dataset(tmp_path / "a", classes=4, train_per_class=3, test_per_class=2, seed=3)
    make_toy_dataset(tmp_path / "b", classes=4, train_per_class=3, test_per_class=2, seed=3)
    assert names == ["red circle", "green square", "blue triangle", "yellow cross"]
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    make_toy_dataset(tmp_path / "c", classes=4, train_per_class=3, test_per_class=2, seed=4)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_generator_cli(tmp_path, capsys):
    make_toy_main(["--out", str(tmp_path / "toy"), "--classes", "3", "--train-per-class", "2",
                   "--test-per-class", "1", "--size", "16"])
    assert "Wrote 3 classes" in capsys.readouterr().out
    from PIL import Image

    with Image.open(tmp_path / "toy" / "train" / "red_circle" / "000.png") as img:
        assert img.size == (16, 16) and img.mode == "RGB"


def test_reads_classes_labels_and_splits(tmp_path):
    make_toy_dataset(tmp_path / "toy", classes=6, train_per_class=5, test_per_class=2, val_per_class=1)
    ds = build(cfg_for(tmp_path))
    assert ds.classnames == ["blue triangle", "green square", "orange square", "purple circle",  # sorted folders
                             "red circle", "yellow cross"]
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [30, 6, 12]
    assert {(d.label, d.classname) for d in ds.test} == set(enumerate(ds.classnames))


def test_val_is_optional(tmp_path):
    make_toy_dataset(tmp_path / "toy", classes=2, train_per_class=2, test_per_class=1)
    assert build(cfg_for(tmp_path)).val == []


def test_fewshot_and_base_new(tmp_path):
    make_toy_dataset(tmp_path / "toy", classes=6, train_per_class=5, test_per_class=2, val_per_class=3)
    fs = build(cfg_for(tmp_path, shots=2))
    assert len(fs.train_x) == 12 and len(fs.val) == 12
    assert (tmp_path / "toy" / "split_fewshot" / "shot_2-seed_1.json").exists()
    base = build(cfg_for(tmp_path, shots=2, subsample="base"))
    new = build(cfg_for(tmp_path, shots=2, subsample="new"))
    assert base.classnames == ["blue triangle", "green square", "orange square"]
    assert new.classnames == ["purple circle", "red circle", "yellow cross"]
    assert len(new.train_x) == 6 and len(new.test) == 6 and {d.label for d in new.test} == {0, 1, 2}


def test_data_manager_loads_batches(tmp_path):
    make_toy_dataset(tmp_path / "toy", classes=3, train_per_class=4, test_per_class=2, size=16)
    cfg = cfg_for(tmp_path)
    cfg.INPUT.SIZE = (16, 16)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.DATALOADER.NUM_WORKERS = 0
    dm = DataManager(cfg)
    batch = next(iter(dm.train_loader_x))
    assert tuple(batch["img"].shape) == (4, 3, 16, 16) and dm.num_classes == 3
    assert dm.lab2cname[0] == "blue triangle"


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"ImageFolder: folder .*toy not found.*make_toy_dataset"):
        build(cfg_for(tmp_path))
    (tmp_path / "toy").mkdir()
    with pytest.raises(DatasetError, match=r"ImageFolder: .*train not found"):
        build(cfg_for(tmp_path))


def test_test_class_without_training_images_is_an_error(tmp_path):
    make_toy_dataset(tmp_path / "toy", classes=2, train_per_class=1, test_per_class=1)
    (tmp_path / "toy" / "test" / "pink_star").mkdir()
    with pytest.raises(DatasetError, match="pink_star has no counterpart"):
        build(cfg_for(tmp_path))
