"""The benchmark datasets read the reference's on-disk layouts exactly.

Every test builds a miniature copy of a real layout in tmp_path (a few classes, a
few tiny images, and the split JSON or official txt/mat files in their real
format). The pinned few-shot draws below were produced by running the public CoOp
``datasets/*.py`` on upstream Dassl 0.6.3 over these same miniatures.
"""
import json
import os
import random
import shutil
from pathlib import Path

import pytest

import datasets
from dassl_compat import DATASET_REGISTRY, get_cfg_default
from datasets.common import ListedDatum, draw_few_shot
from errors import ConfigError, DatasetError
from tests.helpers.dataset_sources import JPEG  # a valid 1x1 JPEG; only existence matters here


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(JPEG)


def make_cfg(root, name, shots=-1, subsample="all", seed=1, **extra):
    cfg = get_cfg_default()
    datasets.add_dataset_config(cfg)
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    for key, value in extra.items():
        setattr(cfg.DATASET, key, value)
    return cfg


def build(root, name, shots=-1, subsample="all", seed=1, **extra):
    """What train.py does: seed the global ``random``, then build the dataset."""
    random.seed(seed)
    return DATASET_REGISTRY.get(name)(make_cfg(root, name, shots, subsample, seed, **extra))


def rel(items, root):
    return [(os.path.relpath(d.impath, root).replace(os.sep, "/"), d.label, d.classname) for d in items]


# ----------------------------------------------------------------------------- split-JSON layouts

# name -> (folder, image folder, split file, [(relpath pattern, classname)]): one
# entry per class, in label order, with each dataset's real path and name spelling.
SPLIT_LAYOUTS = {
    "Caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                   [("accordion/image_{:04d}.jpg", "accordion"), ("airplanes/image_{:04d}.jpg", "airplane"),
                    ("Faces/image_{:04d}.jpg", "face"), ("Leopards/image_{:04d}.jpg", "leopard"),
                    ("Motorbikes/image_{:04d}.jpg", "motorbike")]),
    "OxfordPets": ("oxford_pets", "images", "split_zhou_OxfordPets.json",
                   [("Abyssinian_{}.jpg", "abyssinian"), ("american_bulldog_{}.jpg", "american_bulldog"),
                    ("Bengal_{}.jpg", "bengal"), ("beagle_{}.jpg", "beagle"), ("Birman_{}.jpg", "birman")]),
    "StanfordCars": ("stanford_cars", "", "split_zhou_StanfordCars.json",
                     [("cars_train/{:05d}.jpg", "2012 AM General Hummer SUV"),
                      ("cars_train/1{:04d}.jpg", "2012 Acura RL Sedan"),
                      ("cars_train/2{:04d}.jpg", "2007 BMW X5 SUV"),
                      ("cars_train/3{:04d}.jpg", "2012 Tesla Model S Sedan"),
                      ("cars_train/4{:04d}.jpg", "1993 Volvo 240 Sedan")]),
    "OxfordFlowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                      [("image_0{:04d}.jpg", "pink primrose"), ("image_1{:04d}.jpg", "hard-leaved pocket orchid"),
                       ("image_2{:04d}.jpg", "canterbury bells"), ("image_3{:04d}.jpg", "sweet pea"),
                       ("image_4{:04d}.jpg", "english marigold")]),
    "Food101": ("food-101", "images", "split_zhou_Food101.json",
                [(f"{c}/{{}}.jpg", c) for c in ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "ramen")]),
    "SUN397": ("sun397", "SUN397", "split_zhou_SUN397.json",
               [("a/abbey/sun_{}.jpg", "abbey"), ("a/airplane_cabin/sun_{}.jpg", "airplane_cabin"),
                ("b/bakery/shop/sun_{}.jpg", "shop bakery"), ("b/bar/sun_{}.jpg", "bar"),
                ("c/church/outdoor/sun_{}.jpg", "outdoor church")]),
    "DescribableTextures": ("dtd", "images", "split_zhou_DescribableTextures.json",
                            [(f"{c}/{c}_{{:04d}}.jpg", c) for c in ("banded", "blotchy", "braided", "bubbly", "zigzagged")]),
    "EuroSAT": ("eurosat", "2750", "split_zhou_EuroSAT.json",
                [("AnnualCrop/AnnualCrop_{}.jpg", "Annual Crop Land"), ("Forest/Forest_{}.jpg", "Forest"),
                 ("HerbaceousVegetation/HerbaceousVegetation_{}.jpg", "Herbaceous Vegetation Land"),
                 ("Highway/Highway_{}.jpg", "Highway or Road"), ("SeaLake/SeaLake_{}.jpg", "Sea or Lake")]),
    "UCF101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
               [("Apply_Eye_Makeup/v_ApplyEyeMakeup_g{:02d}_c01.jpg", "Apply_Eye_Makeup"),
                ("Apply_Lipstick/v_ApplyLipstick_g{:02d}_c01.jpg", "Apply_Lipstick"),
                ("Archery/v_Archery_g{:02d}_c01.jpg", "Archery"),
                ("Baby_Crawling/v_BabyCrawling_g{:02d}_c01.jpg", "Baby_Crawling"),
                ("Yo_Yo/v_YoYo_g{:02d}_c01.jpg", "Yo_Yo")]),
}
# Per class: train, val, test images. Class 2 has only 3 train images (short for K=4).
COUNTS = [(6, 3, 4), (5, 2, 3), (3, 1, 2), (6, 3, 3), (5, 2, 2)]


def make_split_layout(root, name, counts=COUNTS):
    folder, image_subdir, split_file, classes = SPLIT_LAYOUTS[name]
    dataset_dir = os.path.join(root, folder)
    split, n = {"train": [], "val": [], "test": []}, 1
    for label, ((pattern, classname), per_part) in enumerate(zip(classes, counts)):
        for part, count in zip(("train", "val", "test"), per_part):
            for _ in range(count):
                relpath = pattern.format(n)
                n += 1
                touch(os.path.join(dataset_dir, image_subdir, relpath))
                split[part].append([relpath, label, classname])
    with open(os.path.join(dataset_dir, split_file), "w") as f:
        json.dump(split, f)
    return dataset_dir, split


@pytest.mark.parametrize("name", sorted(SPLIT_LAYOUTS))
def test_split_dataset_reads_names_labels_counts_and_base_new(tmp_path, name):
    dataset_dir, split = make_split_layout(tmp_path, name)
    names = [c for _, c in SPLIT_LAYOUTS[name][3]]

    full = build(tmp_path, name)
    assert full.classnames == names and full.num_classes == 5
    assert [len(full.train_x), len(full.val), len(full.test)] == [25, 11, 14]
    image_dir = os.path.join(dataset_dir, SPLIT_LAYOUTS[name][1])
    assert rel(full.test, image_dir) == [tuple(r) for r in split["test"]]

    base = build(tmp_path, name, subsample="base")  # ceil(5/2) = 3 base classes
    assert base.classnames == names[:3] and sorted({d.label for d in base.test}) == [0, 1, 2]
    new = build(tmp_path, name, subsample="new")
    assert new.classnames == names[3:] and sorted({d.label for d in new.val}) == [0, 1]
    assert len(new.test) == 3 + 2

    fewshot = build(tmp_path, name, shots=4)  # class 2 has 3 train images: all taken
    assert [len(fewshot.train_x), len(fewshot.val)] == [4 + 4 + 3 + 4 + 4, 3 + 2 + 1 + 3 + 2]
    assert os.path.isfile(os.path.join(dataset_dir, "split_fewshot", "shot_4-seed_1.json"))
    fewshot_new = build(tmp_path, name, shots=2, subsample="new")
    assert [len(fewshot_new.train_x), len(fewshot_new.val)] == [4, 4]
    assert fewshot_new.classnames == names[3:]


# ----------------------------------------------------------------------------- the few-shot draw

# Pinned by running CoOp's OxfordPets/ImageNet on upstream Dassl 0.6.3 over the same
# miniatures (random.seed(seed), then the dataset constructor); see the module docstring.
# ImageNet: the reference run with its directory listing sorted, so the pin holds on any file system.
PINNED_PETS = {(1, 2): {'train': ['Abyssinian_2.jpg', 'Abyssinian_5.jpg', 'american_bulldog_14.jpg',
                    'american_bulldog_16.jpg', 'Bengal_24.jpg', 'Bengal_25.jpg', 'beagle_33.jpg',
                    'beagle_35.jpg', 'Birman_45.jpg', 'Birman_43.jpg'],
          'val': ['Abyssinian_7.jpg', 'Abyssinian_8.jpg', 'american_bulldog_19.jpg',
                  'american_bulldog_20.jpg', 'Bengal_27.jpg', 'beagle_37.jpg', 'beagle_36.jpg',
                  'Birman_48.jpg', 'Birman_47.jpg']},
 (2, 4): {'train': ['Abyssinian_1.jpg', 'Abyssinian_6.jpg', 'Abyssinian_5.jpg', 'Abyssinian_2.jpg',
                    'american_bulldog_15.jpg', 'american_bulldog_16.jpg', 'american_bulldog_18.jpg',
                    'american_bulldog_14.jpg', 'Bengal_24.jpg', 'Bengal_25.jpg', 'Bengal_26.jpg',
                    'beagle_34.jpg', 'beagle_30.jpg', 'beagle_31.jpg', 'beagle_33.jpg', 'Birman_45.jpg',
                    'Birman_44.jpg', 'Birman_46.jpg', 'Birman_43.jpg'],
          'val': ['Abyssinian_7.jpg', 'Abyssinian_8.jpg', 'Abyssinian_9.jpg', 'american_bulldog_19.jpg',
                  'american_bulldog_20.jpg', 'Bengal_27.jpg', 'beagle_36.jpg', 'beagle_37.jpg',
                  'beagle_38.jpg', 'Birman_47.jpg', 'Birman_48.jpg']},
 (3, 1): {'train': ['Abyssinian_2.jpg', 'american_bulldog_18.jpg', 'Bengal_26.jpg', 'beagle_31.jpg',
                    'Birman_44.jpg'],
          'val': ['Abyssinian_9.jpg', 'american_bulldog_20.jpg', 'Bengal_27.jpg', 'beagle_38.jpg',
                  'Birman_47.jpg']}}
PINNED_IMAGENET = {1: ['n01440764/n01440764_1.JPEG', 'n01440764/n01440764_0.JPEG', 'n01443537/n01443537_2.JPEG',
     'n01443537/n01443537_0.JPEG', 'n01484850/n01484850_0.JPEG', 'n01491361/n01491361_3.JPEG',
     'n01491361/n01491361_4.JPEG', 'n01494475/n01494475_1.JPEG', 'n01494475/n01494475_2.JPEG'],
 2: ['n01440764/n01440764_0.JPEG', 'n01440764/n01440764_4.JPEG', 'n01443537/n01443537_0.JPEG',
     'n01443537/n01443537_1.JPEG', 'n01484850/n01484850_0.JPEG', 'n01491361/n01491361_1.JPEG',
     'n01491361/n01491361_2.JPEG', 'n01494475/n01494475_1.JPEG', 'n01494475/n01494475_0.JPEG']}


def reference_draw(items, k):
    """Dassl 0.6.3 ``generate_fewshot_dataset``, written out: the spec of the draw."""
    groups = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    out = []
    for group in groups.values():
        out.extend(random.sample(group, k) if len(group) >= k else group)
    return out


def test_fewshot_draw_is_dassl_algorithm_call_for_call(tmp_path):
    # Labels interleaved so first-appearance order (not sorted order) matters.
    items = [ListedDatum(f"/x/{i}.jpg", label=(i * 7) % 5, classname=str((i * 7) % 5)) for i in range(40)]
    for seed in (1, 2, 3):
        random.seed(seed)
        expected = reference_draw(items, 3)
        after_expected = random.random()
        random.seed(seed)
        drawn = draw_few_shot(items, 3)
        assert drawn == expected
        assert random.random() == after_expected  # same number of random calls


@pytest.mark.parametrize("seed,shots", [(1, 2), (2, 4), (3, 1)])
def test_fewshot_subset_equals_the_reference_pinned_draw(tmp_path, seed, shots):
    dataset_dir, _ = make_split_layout(tmp_path, "OxfordPets")
    dataset = build(tmp_path, "OxfordPets", shots=shots, seed=seed)
    image_dir = os.path.join(dataset_dir, "images")
    got = {"train": [r[0] for r in rel(dataset.train_x, image_dir)], "val": [r[0] for r in rel(dataset.val, image_dir)]}
    assert got == PINNED_PETS[(seed, shots)]


@pytest.mark.parametrize("seed", [1, 2])
def test_imagenet_fewshot_equals_the_reference_pinned_draw(tmp_path, seed):
    make_imagenet(tmp_path, sorted_listing=True)
    dataset = build(tmp_path, "ImageNet", shots=2, seed=seed)
    train_dir = os.path.join(tmp_path, "imagenet", "images", "train")
    assert [r[0] for r in rel(dataset.train_x, train_dir)] == PINNED_IMAGENET[seed]


@pytest.mark.parametrize("name,folder,whole_val", [("ClothesAnimals", "clothes_animals", True),
                                                    ("Digits", "digits", False)])
def test_benchmark_noisy_sets_keep_their_whole_val_split(tmp_path, name, folder, whole_val):
    # The CPU benchmark selects its defaults on a noisy set's val split (TEST.SPLIT val), so a
    # noisy set draws its few-shot train only and keeps val whole (fewshot_val False); a clean
    # source set draws a min(K, 4)-shot val as the real datasets do.
    split = {"train": [], "val": [], "test": []}
    n = 1
    for label, per_part in enumerate(COUNTS):
        for part, count in zip(("train", "val", "test"), per_part):
            for _ in range(count):
                relpath = f"c{label}/{n}.png"
                n += 1
                touch(os.path.join(tmp_path, folder, "images", relpath))
                split[part].append([relpath, label, f"class{label}"])
    with open(os.path.join(tmp_path, folder, f"split_{name}.json"), "w") as f:
        json.dump(split, f)
    data = build(tmp_path, name, shots=2)
    assert len(data.train_x) == 2 * 5
    assert len(data.val) == (11 if whole_val else 2 + 2 + 1 + 2 + 2)
    if whole_val:
        assert sorted(rel(data.val, os.path.join(tmp_path, folder, "images"))) == \
            sorted(tuple(r) for r in split["val"])


def test_moved_root_keeps_the_fewshot_cache(tmp_path):
    make_split_layout(tmp_path / "a", "DescribableTextures")
    first = build(tmp_path / "a", "DescribableTextures", shots=2, seed=5)
    cache = tmp_path / "a" / "dtd" / "split_fewshot" / "shot_2-seed_5.json"
    text = cache.read_text()
    assert str(tmp_path) not in text and "images/" in text  # relative paths, plain JSON

    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    random.seed(12345)  # a different state: only the cache can give the same subset
    moved = DATASET_REGISTRY.get("DescribableTextures")(make_cfg(tmp_path / "b", "DescribableTextures", 2, seed=5))
    assert rel(moved.train_x, tmp_path / "b") == rel(first.train_x, tmp_path / "a")
    assert rel(moved.val, tmp_path / "b") == rel(first.val, tmp_path / "a")
    assert all(d.impath.startswith(str(tmp_path / "b")) and os.path.isfile(d.impath) for d in moved.train_x)


# ----------------------------------------------------------------------------- official files


def write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


FGVC_VARIANTS = ["707-320", "727-200", "A300B4", "Cessna 172"]


def make_fgvc(root):
    d = Path(root) / "fgvc_aircraft"
    write_lines(d / "variants.txt", FGVC_VARIANTS)
    n = 1000000
    for part, per_class in (("train", 3), ("val", 2), ("test", 2)):
        lines = []
        for v in FGVC_VARIANTS:
            for _ in range(per_class):
                n += 1
                touch(d / "images" / f"{n}.jpg")
                lines.append(f"{n} {v}")
        write_lines(d / f"images_variant_{part}.txt", lines)


def test_fgvc_aircraft_reads_the_official_variant_lists(tmp_path):
    make_fgvc(tmp_path)
    variants = FGVC_VARIANTS
    ds = build(tmp_path, "FGVCAircraft")
    assert ds.classnames == variants
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [12, 8, 8]
    assert build(tmp_path, "FGVCAircraft", subsample="new").classnames == ["A300B4", "Cessna 172"]
    assert len(build(tmp_path, "FGVCAircraft", shots=2).train_x) == 8


def make_pets_annotations(d):
    lines = {"trainval.txt": [], "test.txt": []}
    for label, breed in enumerate(["Abyssinian", "american_bulldog", "Bengal"], start=1):
        for i in range(1, 9):
            touch(d / "images" / f"{breed}_{i}.jpg")
            lines["trainval.txt" if i <= 5 else "test.txt"].append(f"{breed}_{i} {label} {1 + (label % 2)} 1")
    for name, rows in lines.items():
        write_lines(d / "annotations" / name, rows)


def test_fresh_split_only_behind_create_split(tmp_path):
    d = tmp_path / "oxford_pets"
    make_pets_annotations(d)
    with pytest.raises(DatasetError, match="split_zhou_OxfordPets.json not found") as err:
        build(tmp_path, "OxfordPets")
    msg = str(err.value)
    assert "python -m tools.datasets download" in msg and "--splits-only" in msg
    assert "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs" in msg
    assert "DATASET.CREATE_SPLIT True" in msg

    ds = build(tmp_path, "OxfordPets", CREATE_SPLIT=True)
    assert ds.classnames == ["abyssinian", "american_bulldog", "bengal"]  # breed, lowercased
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [12, 3, 9]  # round(5 * 0.2) = 1 val per class
    assert not (d / "split_zhou_OxfordPets.json").exists()  # never passes for the published split
    assert (d / "split_fresh_OxfordPets.json").exists()
    build(tmp_path, "OxfordPets", shots=1, CREATE_SPLIT=True)
    assert (d / "split_fewshot" / "shot_1-seed_1-fresh.json").exists()


def make_cars(root):
    from scipy.io import savemat
    import numpy as np

    d = Path(root) / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Tesla Model S Sedan 2012"]
    meta = np.empty((1, 3), dtype=object)
    for i, n in enumerate(names):
        meta[0, i] = np.array([n])
    (d / "devkit").mkdir(parents=True)
    savemat(d / "devkit" / "cars_meta.mat", {"class_names": meta})

    def annos(folder, n_per_class):
        rec = np.zeros((1, 3 * n_per_class), dtype=[("fname", object), ("class", object)])
        k = 0
        for label in range(3):
            for _ in range(n_per_class):
                k += 1
                fname = f"{k:05d}.jpg"
                touch(d / folder / fname)
                rec[0, k - 1] = (np.array([fname]), np.array([[label + 1]], dtype=np.uint8))
        return {"annotations": rec}

    savemat(d / "devkit" / "cars_train_annos.mat", annos("cars_train", 5))
    savemat(d / "cars_test_annos_withlabels.mat", annos("cars_test", 2))


def test_stanford_cars_official_mat_files_put_the_year_first(tmp_path):
    d = tmp_path / "stanford_cars"
    make_cars(tmp_path)
    ds = build(tmp_path, "StanfordCars", CREATE_SPLIT=True)
    assert ds.classnames == ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Tesla Model S Sedan"]
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [12, 3, 6]
    assert ds.train_x[0].impath.startswith(str(d / "cars_train"))


def make_flowers(root):
    from scipy.io import savemat
    import numpy as np

    d = Path(root) / "oxford_flowers"
    labels = [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 3, 3, 3, 3, 3]
    for i in range(len(labels)):
        touch(d / "jpg" / f"image_{i + 1:05d}.jpg")
    savemat(d / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    (d / "cat_to_name.json").write_text(json.dumps({"1": "pink primrose", "2": "sweet pea", "3": "lotus"}))


def test_oxford_flowers_official_labels_and_names(tmp_path):
    make_flowers(tmp_path)
    ds = build(tmp_path, "OxfordFlowers", CREATE_SPLIT=True)
    assert ds.classnames == ["pink primrose", "sweet pea", "lotus"]
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [6, 3, 6]  # round(2.5) = 2 train, 1 val, 2 test each


def make_class_folders(root, folder, image_subdir, class_folders, per_class=10):
    for c in class_folders:
        for i in range(per_class):
            touch(Path(root) / folder / image_subdir / c / f"{i}.jpg")


@pytest.mark.parametrize("name,folder,image_subdir,class_folders,expected", [
    ("Caltech101", "caltech-101", "101_ObjectCategories",
     ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "airplanes", "accordion"],
     ["face", "leopard", "accordion", "airplane"]),
    ("EuroSAT", "eurosat", "2750", ["SeaLake", "AnnualCrop", "PermanentCrop"],
     ["Annual Crop Land", "Permanent Crop Land", "Sea or Lake"]),
    ("DescribableTextures", "dtd", "images", ["zigzagged", "banded"], ["banded", "zigzagged"]),
    ("Food101", "food-101", "images", ["ramen", "apple_pie"], ["apple_pie", "ramen"]),
])
def test_class_folder_datasets_fresh_split_names(tmp_path, name, folder, image_subdir, class_folders, expected):
    make_class_folders(tmp_path, folder, image_subdir, class_folders)
    ds = build(tmp_path, name, CREATE_SPLIT=True)
    assert ds.classnames == expected  # sorted folders (ignored ones dropped), then renamed
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [5 * len(expected), 2 * len(expected), 3 * len(expected)]


def make_sun(root):
    d = Path(root) / "sun397"
    scenes = ["/a/abbey", "/b/bakery/shop", "/c/church/outdoor"]
    write_lines(d / "ClassName.txt", scenes)
    train, test = [], []
    for s in scenes:
        for i in range(6):
            touch(d / "SUN397" / s[1:] / f"sun_{i}.jpg")
            (train if i < 5 else test).append(f"{s}/sun_{i}.jpg")
    write_lines(d / "Training_01.txt", train)
    write_lines(d / "Testing_01.txt", test)


def test_sun397_official_lists_reverse_the_scene_path(tmp_path):
    make_sun(tmp_path)
    ds = build(tmp_path, "SUN397", CREATE_SPLIT=True)
    assert ds.classnames == ["abbey", "shop bakery", "outdoor church"]
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [12, 3, 3]


def make_ucf(root):
    d = Path(root) / "ucf101"
    write_lines(d / "ucfTrainTestlist" / "classInd.txt", ["1 ApplyEyeMakeup", "2 YoYo"])
    train, test = [], []
    for action, folder in (("ApplyEyeMakeup", "Apply_Eye_Makeup"), ("YoYo", "Yo_Yo")):
        for g in range(1, 7):
            touch(d / "UCF-101-midframes" / folder / f"v_{action}_g{g:02d}_c01.jpg")
            (train if g <= 5 else test).append(f"{action}/v_{action}_g{g:02d}_c01.avi" + (f" {1}" if g <= 5 else ""))
    write_lines(d / "ucfTrainTestlist" / "trainlist01.txt", train)
    write_lines(d / "ucfTrainTestlist" / "testlist01.txt", test)


def test_ucf101_official_lists_split_camel_case(tmp_path):
    make_ucf(tmp_path)
    ds = build(tmp_path, "UCF101", CREATE_SPLIT=True)
    assert ds.classnames == ["Apply_Eye_Makeup", "Yo_Yo"]
    assert [len(ds.train_x), len(ds.val), len(ds.test)] == [8, 2, 2]


# ----------------------------------------------------------------------------- ImageNet and variants

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]


def make_imagenet(root, sorted_listing=False, n_train=(5, 4, 1, 5, 3), n_val=2):
    d = os.path.join(root, "imagenet")
    write_lines(os.path.join(d, "classnames.txt"), [f"{w} {n}" for w, n in zip(WNIDS, NAMES)])
    for w, count in zip(WNIDS, n_train):
        for i in range(count):
            touch(os.path.join(d, "images", "train", w, f"{w}_{i}.JPEG"))
        for i in range(n_val):
            touch(os.path.join(d, "images", "val", w, f"ILSVRC2012_val_{w}_{i}.JPEG"))
    if sorted_listing:  # pin the file order the reference would see, whatever the file system
        listing = {}
        for part in ("train", "val"):
            folders = sorted(os.listdir(os.path.join(d, "images", part)))
            listing[part] = {"folders": folders,
                             "files": [sorted(os.listdir(os.path.join(d, "images", part, f))) for f in folders]}
        with open(os.path.join(d, "listing_cache.json"), "w") as f:
            json.dump(listing, f)
    return d


def test_imagenet_names_labels_base_new_and_train_only_fewshot(tmp_path):
    make_imagenet(tmp_path)
    ds = build(tmp_path, "ImageNet")
    assert ds.classnames == NAMES and len(ds.train_x) == 18 and len(ds.test) == 10
    assert ds.val is ds.test
    base = build(tmp_path, "ImageNet", subsample="base")
    assert base.classnames == NAMES[:3] and len(base.test) == 6 and len(base.train_x) == 10
    fs = build(tmp_path, "ImageNet", shots=2, subsample="new")
    assert fs.classnames == NAMES[3:] and len(fs.train_x) == 4 and len(fs.test) == 4
    cached = json.loads((tmp_path / "imagenet" / "split_fewshot" / "shot_2-seed_1.json").read_text())
    assert set(cached) == {"train", "drawn_from"} and set(cached["drawn_from"]) == {"train"}
    assert len(cached["train"]) == 2 + 2 + 1 + 2 + 2


def test_imagenet_cold_start_uses_the_listing_cache(tmp_path, monkeypatch):
    make_imagenet(tmp_path)
    build(tmp_path, "ImageNet")
    assert (tmp_path / "imagenet" / "listing_cache.json").exists()

    import datasets.imagenet as imagenet

    monkeypatch.setattr(imagenet, "list_folder", lambda *_: pytest.fail("walked the image tree again"))
    calls = []
    real_isfile = os.path.isfile
    monkeypatch.setattr(os.path, "isfile", lambda p: calls.append(p) or real_isfile(p))
    ds = build(tmp_path, "ImageNet")
    assert len(ds.train_x) == 18 and not any(p.endswith(".JPEG") for p in calls)


def make_variant(root, folder, image_subdir):
    d = Path(root) / folder
    write_lines(d / "classnames.txt", [f"{w} {n}" for w, n in zip(WNIDS, NAMES)])
    for w in (WNIDS[4], WNIDS[1], WNIDS[3]):  # a subset of classes, as A and R have
        for i in range(3):
            touch(d / image_subdir / w / f"{i}.jpg")
    if folder != "imagenet-sketch":
        (d / image_subdir / "README.txt").write_text("readme")


def make_imagenetv2(root):
    d = Path(root) / "imagenetv2"
    write_lines(d / "classnames.txt", [f"{w} {n}" for w, n in zip(WNIDS, NAMES)])
    for label in range(5):
        for i in range(2):
            touch(d / "imagenetv2-matched-frequency-format-val" / str(label) / f"{i}.jpeg")


@pytest.mark.parametrize("name,folder,image_subdir", [
    ("ImageNetSketch", "imagenet-sketch", "images"),
    ("ImageNetA", "imagenet-adversarial", "imagenet-a"),
    ("ImageNetR", "imagenet-rendition", "imagenet-r"),
])
def test_imagenet_variants_with_wnid_folders(tmp_path, name, folder, image_subdir):
    make_variant(tmp_path, folder, image_subdir)
    ds = build(tmp_path, name)
    assert ds.classnames == ["goldfish", "tiger shark", "hammerhead shark"]
    assert len(ds.test) == 9 and ds.val is None


def test_imagenetv2_folders_are_labels_in_classnames_order(tmp_path):
    make_imagenetv2(tmp_path)
    ds = build(tmp_path, "ImageNetV2")
    assert ds.classnames == NAMES and len(ds.test) == 10
    assert {(d_.label, d_.classname) for d_ in ds.test if "/3/" in d_.impath} == {(3, "tiger shark")}


# ----------------------------------------------------------------------------- errors


def test_error_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="DATASET.ROOT .* is not a folder. Pass --root"):
        build(tmp_path / "nowhere", "OxfordPets")


def test_error_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"EuroSAT: folder .*eurosat not found\. EuroSAT must be in <root>/eurosat/"):
        build(tmp_path, "EuroSAT")


def test_error_missing_images_counts_and_shows_the_first(tmp_path):
    dataset_dir, split = make_split_layout(tmp_path, "Food101")
    for relpath, _, _ in split["train"][:7]:
        os.remove(os.path.join(dataset_dir, "images", relpath))
    with pytest.raises(DatasetError) as err:
        build(tmp_path, "Food101")
    msg = str(err.value)
    assert "7 of 25 images named in split_zhou_Food101.json (train) are missing" in msg
    assert split["train"][0][0] in msg and "... and 2 more" in msg


def test_error_short_class_names_it_and_takes_all(tmp_path, capsys):
    make_split_layout(tmp_path, "OxfordPets")
    ds = build(tmp_path, "OxfordPets", shots=5)
    out = capsys.readouterr().out
    assert "5 shots requested but 1 class(es) have fewer train images; all of their images are used: bengal (3)" in out
    assert sum(d.label == 2 for d in ds.train_x) == 3


@pytest.mark.parametrize("name,folder", [("ImageNet", "imagenet"), ("ImageNetA", "imagenet-adversarial")])
def test_error_missing_classnames_file(tmp_path, name, folder):
    (tmp_path / folder / "images" / "train").mkdir(parents=True)
    (tmp_path / folder / "images" / "val").mkdir(parents=True)
    (tmp_path / folder / "imagenet-a").mkdir(parents=True)
    with pytest.raises(DatasetError, match=rf"{name}: classnames.txt not found at .*1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"):
        build(tmp_path, name)


def test_error_missing_variants_file(tmp_path):
    (tmp_path / "fgvc_aircraft").mkdir()
    with pytest.raises(DatasetError, match="FGVCAircraft: variants.txt not found .*fgvc-aircraft-2013b"):
        build(tmp_path, "FGVCAircraft")


def test_error_bad_subsample_value(tmp_path):
    make_split_layout(tmp_path, "DescribableTextures")
    with pytest.raises(ConfigError, match="SUBSAMPLE_CLASSES must be one of"):
        build(tmp_path, "DescribableTextures", subsample="half")


def test_download_script_fails_clearly_offline(tmp_path, monkeypatch, capsys):
    # scripts/download_splits.py is now `python -m tools.datasets download --splits-only`
    # (tests/test_dataset_tool.py); the old entry point still works, with the same arguments.
    import importlib.util
    import sys
    import types

    gdown = types.ModuleType("gdown")

    def offline(**_):
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    gdown.download = offline
    monkeypatch.setitem(sys.modules, "gdown", gdown)
    spec = importlib.util.spec_from_file_location("download_splits", os.path.join("scripts", "download_splits.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--root", str(tmp_path), "--dataset", "EuroSAT"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: no network: EuroSAT's split_zhou_EuroSAT.json")
    assert "https://drive.google.com/uc?id=1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in err
    assert not list(tmp_path.rglob("*.part"))


def test_cache_writes_are_atomic(tmp_path):
    # Runs sharing a data root read the few-shot cache while another may be writing it.
    from datasets.common import write_json_atomic
    path = str(tmp_path / "shot_16-seed_1.json")
    write_json_atomic({"train": [["a.png", 0, "a"]]}, path)
    with open(path) as f:
        assert json.load(f) == {"train": [["a.png", 0, "a"]]}
    with pytest.raises(TypeError):
        write_json_atomic({"train": object()}, path)  # fails half-way through serializing
    with open(path) as f:
        assert json.load(f) == {"train": [["a.png", 0, "a"]]}  # the old file, whole
    assert os.listdir(tmp_path) == ["shot_16-seed_1.json"]  # no temporary left behind


def test_download_script_takes_config_and_class_names(tmp_path):
    # DATASETS.md and the scripts name datasets by config file (oxford_pets); both work.
    import importlib.util

    spec = importlib.util.spec_from_file_location("download_splits", os.path.join("scripts", "download_splits.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    by_config = list(script.targets(str(tmp_path), ["oxford_pets"]))
    assert by_config == list(script.targets(str(tmp_path), ["OxfordPets"]))
    assert by_config and by_config[0][1].endswith("split_zhou_OxfordPets.json")
    assert len({t[0] for t in script.targets(str(tmp_path), [])}) >= 14  # every dataset
    with pytest.raises(SystemExit, match="ERROR: unknown dataset.*oxford_petz"):
        list(script.targets(str(tmp_path), ["oxford_petz"]))


# ----------------------------------------------------------------------------- stale few-shot caches


FULL = [(6, 3, 4)] * 5  # no class short of 2 shots: no warning but the one under test


def swap_train_and_test(dataset_dir, split_file, n=2):
    """A new version of the split: per class, the first n train images and the first n test
    images change places (what a re-downloaded or regenerated split file does)."""
    path = os.path.join(dataset_dir, split_file)
    with open(path) as f:
        split = json.load(f)
    for label in sorted({row[1] for row in split["train"]}):
        train = [i for i, row in enumerate(split["train"]) if row[1] == label][:n]
        test = [i for i, row in enumerate(split["test"]) if row[1] == label][:n]
        for i, j in zip(train, test):
            split["train"][i], split["test"][j] = split["test"][j], split["train"][i]
    with open(path, "w") as f:
        json.dump(split, f)
    return split


def test_changed_split_redraws_the_fewshot_set_with_one_warning(tmp_path, capsys):
    dataset_dir, _ = make_split_layout(tmp_path, "DescribableTextures", FULL)
    cache = Path(dataset_dir) / "split_fewshot" / "shot_2-seed_1.json"
    first = build(tmp_path, "DescribableTextures", shots=2)
    old_cache = cache.read_text()
    new_split = swap_train_and_test(dataset_dir, "split_zhou_DescribableTextures.json")
    capsys.readouterr()

    redrawn = build(tmp_path, "DescribableTextures", shots=2)
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "drawn from another version of the split" in warnings[0]
    assert str(cache) in warnings[0]
    image_dir = Path(dataset_dir) / "images"
    test_images = {row[0] for row in new_split["test"]}
    assert not test_images & {r[0] for r in rel(redrawn.train_x, image_dir)}
    assert test_images & {r[0] for r in rel(first.train_x, image_dir)}  # the stale draw had some

    # The redraw is the draw a first run makes on the new split, and it is cached.
    fresh_root = tmp_path / "fresh"
    shutil.copytree(dataset_dir, fresh_root / "dtd", ignore=shutil.ignore_patterns("split_fewshot"))
    fresh = build(fresh_root, "DescribableTextures", shots=2)
    assert rel(redrawn.train_x, image_dir) == rel(fresh.train_x, fresh_root / "dtd" / "images")
    assert rel(redrawn.val, image_dir) == rel(fresh.val, fresh_root / "dtd" / "images")
    # The old draw, the record of what earlier runs trained on, is kept beside it.
    (stale,) = (Path(dataset_dir) / "split_fewshot").glob("shot_2-seed_1.stale-*.json")
    assert stale.read_text() == old_cache
    capsys.readouterr()
    again = build(tmp_path, "DescribableTextures", shots=2)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert rel(again.train_x, image_dir) == rel(redrawn.train_x, image_dir)


def test_images_added_to_an_image_folder_redraw_its_fewshot_set(tmp_path, capsys):
    from datasets.make_toy_dataset import make_toy_dataset

    make_toy_dataset(str(tmp_path / "toy"), classes=2, train_per_class=4, test_per_class=1)
    build(tmp_path, "ImageFolder", shots=2)
    shutil.copy(tmp_path / "toy" / "train" / "red_circle" / "000.png",
                tmp_path / "toy" / "train" / "red_circle" / "004.png")
    capsys.readouterr()
    build(tmp_path, "ImageFolder", shots=2)
    out = capsys.readouterr().out
    assert "Loading preprocessed few-shot data" not in out
    assert "Saving preprocessed few-shot data" in out


def test_cache_of_an_older_version_gains_its_split_record_silently_when_the_draw_stands(
        tmp_path, capsys):
    dataset_dir, _ = make_split_layout(tmp_path, "DescribableTextures", FULL)
    cache = Path(dataset_dir) / "split_fewshot" / "shot_2-seed_3.json"
    first = build(tmp_path, "DescribableTextures", shots=2, seed=3)
    data = json.loads(cache.read_text())
    record = data.pop("drawn_from")
    cache.write_text(json.dumps(data))  # as the previous version wrote it
    capsys.readouterr()

    again = build(tmp_path, "DescribableTextures", shots=2, seed=3)
    assert "WARNING" not in capsys.readouterr().out
    assert rel(again.train_x, tmp_path) == rel(first.train_x, tmp_path)
    assert json.loads(cache.read_text())["drawn_from"] == record
    assert not list((Path(dataset_dir) / "split_fewshot").glob("*.stale-*"))


@pytest.mark.parametrize("damage, message", [
    (lambda data: data.pop("val"), "has no 'val' list"),
    (lambda data: data["train"].append("not a row"), "has a malformed 'train' entry"),
])
def test_fewshot_cache_that_lost_a_list_is_an_error_not_a_redraw(tmp_path, damage, message):
    dataset_dir, _ = make_split_layout(tmp_path, "DescribableTextures", FULL)
    build(tmp_path, "DescribableTextures", shots=2)
    cache = Path(dataset_dir) / "split_fewshot" / "shot_2-seed_1.json"
    data = json.loads(cache.read_text())
    damage(data)
    cache.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"few-shot cache {cache} {message}.*Delete it"):
        build(tmp_path, "DescribableTextures", shots=2)
    assert json.loads(cache.read_text()) == data  # left as it was, for the user to look at


def test_missing_images_of_every_split_list_are_reported_at_once(tmp_path):
    dataset_dir, split = make_split_layout(tmp_path, "Food101")
    for part in ("train", "val", "test"):
        os.remove(os.path.join(dataset_dir, "images", split[part][0][0]))
    with pytest.raises(DatasetError) as err:
        build(tmp_path, "Food101")
    msg = str(err.value)
    assert "3 of 50 images are missing" in msg
    for part in ("train", "val", "test"):
        assert f"split_zhou_Food101.json ({part}): " in msg and split[part][0][0] in msg


def test_truncated_split_file_is_one_error_naming_it_and_where_to_get_it(tmp_path):
    dataset_dir, _ = make_split_layout(tmp_path, "OxfordPets")
    path = os.path.join(dataset_dir, "split_zhou_OxfordPets.json")
    with open(path, "r+") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(DatasetError, match=r"split file .*split_zhou_OxfordPets.json is not valid "
                                           r"JSON .*truncated.*tools.datasets download"):
        build(tmp_path, "OxfordPets")
