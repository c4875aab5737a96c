"""``python -m tools.datasets``: download, convert to the peers' layout, check.

The network is a fake (``tests/helpers/dataset_sources.py``): it serves miniature copies of
each source's real archive, so torchvision's own downloaders and extractors run on them and
produce their real on-disk layouts, which the tool then converts. Nothing here needs the
network, and nothing depends on timing.
"""
import json
import os
import shutil
import socket
import urllib.error

import pytest

from datasets.common import SPLIT_KEYS
from tests.helpers.dataset_sources import SOURCES, FakeWeb, touch
from tests.test_datasets import build, make_split_layout
from tools import datasets as tool

CONFIG = {e.name: e.config for e in tool.all_entries()}


def put_by_hand(root, name, mini):
    for filename, data in mini.by_hand.items():
        touch(os.path.join(root, tool.DOWNLOADS, CONFIG[name], filename), data)


def published_counts(monkeypatch, minis):
    """ImageNet and its variants are checked against their published image counts: here,
    the miniatures' counts."""
    from dassl_compat import DATASET_REGISTRY

    for name, mini in minis.items():
        if mini.num_images:
            monkeypatch.setattr(DATASET_REGISTRY.get(name), "num_images", mini.num_images)


def run(capsys, *argv):
    code = tool.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(root):
    """Anything still being written: what a later run must never take for finished."""
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if n.endswith((tool.PARTIAL, ".part"))]


# ----------------------------------------------------------------------------- download and convert


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_download_converts_each_source_to_the_layout_its_dataset_reads(tmp_path, monkeypatch, capsys, name):
    mini = SOURCES[name]()
    web = FakeWeb([mini]).install(monkeypatch)
    put_by_hand(tmp_path, name, mini)  # ImageNet and Stanford Cars: the files a person fetched

    code, out, err = run(capsys, "download", tmp_path, "--dataset", CONFIG[name])
    assert code == 0, err
    assert web.calls or mini.by_hand
    assert not leftovers(tmp_path)
    state = "unpacked" if mini.by_hand else "downloaded"
    assert any(line.split()[:2] == [CONFIG[name], name] and state in line for line in out.splitlines()), out

    ds = build(tmp_path, name)  # what train.py builds
    assert ds.classnames == mini.classnames
    if mini.num_images:  # ImageNet and its variants: test only (ImageNet: val is test)
        assert (len(ds.train_x), len(ds.test)) == (mini.counts[0], mini.counts[2])
    else:
        assert (len(ds.train_x), len(ds.val), len(ds.test)) == mini.counts

    published_counts(monkeypatch, {name: mini})
    code, out, err = run(capsys, "check", tmp_path, "--dataset", CONFIG[name], "--verify-images", "--workers", "1")
    assert code == 0, out + err
    (row,) = [line.split() for line in out.splitlines() if line.startswith(CONFIG[name] + " ")]
    assert row[-1] == "ok" and int(row[-2]) == mini.extra


def test_a_rerun_downloads_nothing_again(tmp_path, monkeypatch, capsys):
    web = FakeWeb([SOURCES["DescribableTextures"]()]).install(monkeypatch)
    assert run(capsys, "download", tmp_path, "--dataset", "dtd")[0] == 0
    calls = len(web.calls)
    code, out, _ = run(capsys, "download", tmp_path, "--dataset", "dtd")
    assert code == 0 and len(web.calls) == calls
    assert "present" in out and "downloaded" not in out


def test_interrupted_download_is_started_again_not_taken_for_finished(tmp_path, monkeypatch, capsys):
    mini = SOURCES["DescribableTextures"]()
    web = FakeWeb([mini]).install(monkeypatch)
    assert run(capsys, "download", tmp_path, "--dataset", "dtd", "--splits-only")[0] == 0

    # The archive arrives, but the run is killed while it is extracted (half the tree written).
    import torchvision.datasets.utils as tvu

    real_extract = tvu.extract_archive

    def extract_then_die(src, dst=None, *args, **kwargs):
        real_extract(src, dst, *args, **kwargs)
        shutil.rmtree(os.path.join(dst, "dtd", "images", "zigzagged"))
        raise KeyboardInterrupt

    monkeypatch.setattr(tvu, "extract_archive", extract_then_die)
    code, _, err = run(capsys, "download", tmp_path, "--dataset", "dtd")
    assert code == 130 and "run the same command again" in err and "Traceback" not in err
    assert not (tmp_path / "dtd" / "images").exists()
    partial = tmp_path / "downloads" / "dtd" / ("extracted" + tool.PARTIAL)
    assert (partial / "dtd" / "dtd" / "images" / "banded").is_dir()  # half a tree, named .partial
    check_code, out, _ = run(capsys, "check", tmp_path, "--dataset", "dtd")
    assert check_code == 1 and "0/6" in out

    monkeypatch.setattr(tvu, "extract_archive", real_extract)
    code, out, _ = run(capsys, "download", tmp_path, "--dataset", "dtd")
    assert code == 0 and "left by an interrupted download" in out
    assert not leftovers(tmp_path)
    assert len(os.listdir(tmp_path / "dtd" / "images" / "zigzagged")) == 4
    assert run(capsys, "check", tmp_path, "--dataset", "dtd")[0] == 0


def test_conversion_interrupted_half_way_is_finished_by_a_rerun(tmp_path, monkeypatch, capsys):
    FakeWeb([SOURCES["Food101"]()]).install(monkeypatch)
    real_move = tool.move
    moved = []

    def move_once_then_die(origin, target):
        if moved:
            raise KeyboardInterrupt
        moved.append(target)
        real_move(origin, target)

    monkeypatch.setattr(tool, "move", move_once_then_die)
    assert run(capsys, "download", tmp_path, "--dataset", "food101")[0] == 130
    assert (tmp_path / "food-101" / "images").is_dir() and not (tmp_path / "food-101" / "meta").exists()

    monkeypatch.setattr(tool, "move", real_move)
    code, out, _ = run(capsys, "convert", tmp_path, "--dataset", "food101")
    assert code == 0 and "converted" in out
    assert (tmp_path / "food-101" / "meta" / "train.json").is_file()
    images = sorted(os.listdir(tmp_path / "food-101" / "images" / "ramen"))
    code, out, _ = run(capsys, "convert", tmp_path, "--dataset", "food101")  # idempotent
    assert code == 0 and "present" in out
    assert sorted(os.listdir(tmp_path / "food-101" / "images" / "ramen")) == images


def test_convert_links_a_torchvision_root_downloaded_before(tmp_path, monkeypatch, capsys):
    import torchvision

    mini = SOURCES["OxfordFlowers"]()
    FakeWeb([mini]).install(monkeypatch)
    tv_root = tmp_path / "torchvision"
    torchvision.datasets.Flowers102(str(tv_root), download=True)  # the user's own earlier download
    data = tmp_path / "data"
    assert run(capsys, "download", data, "--dataset", "oxford_flowers", "--splits-only")[0] == 0

    code, out, _ = run(capsys, "convert", data, "--from", tv_root, "--link")
    assert code == 0
    assert os.path.islink(data / "oxford_flowers" / "jpg")
    assert os.path.realpath(data / "oxford_flowers" / "jpg") == str(tv_root / "flowers-102" / "jpg")
    assert any(line.startswith("oxford_pets ") and "not in --from" in line for line in out.splitlines())
    assert build(data, "OxfordFlowers").classnames == mini.classnames
    assert run(capsys, "check", data, "--dataset", "oxford_flowers")[0] == 0


def test_by_hand_datasets_say_which_files_go_where_and_why(tmp_path, monkeypatch, capsys):
    FakeWeb([SOURCES["ImageNet"](), SOURCES["StanfordCars"]()]).install(monkeypatch)
    code, out, _ = run(capsys, "download", tmp_path, "--dataset", "imagenet", "stanford_cars")
    assert code == 0  # nothing failed; two things wait for a person
    imagenet_row = next(line for line in out.splitlines() if line.startswith("imagenet "))
    assert "by hand" in imagenet_row and "ILSVRC2012_img_train.tar" in imagenet_row
    assert os.path.join(str(tmp_path), "downloads", "imagenet") in imagenet_row
    code, out, _ = run(capsys, "download", tmp_path, "--dataset", "stanford_cars", "--dry-run")
    assert "official site no longer serves them" in out and "cars_test_annos_withlabels.mat" in out
    code, out, err = run(capsys, "check", tmp_path, "--dataset", "imagenet")
    assert code == 1 and "terms of access" in out and "DATASETS.md" in out


# ----------------------------------------------------------------------------- offline


def offline_network(monkeypatch):
    """No network: urllib and gdown fail at once, as they do without DNS."""
    import urllib.request

    import gdown
    import requests

    calls = []

    def urlopen(request, *args, **kwargs):
        calls.append(request)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    def download(*args, **kwargs):
        calls.append(kwargs.get("id"))
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(gdown, "download", download)
    return calls


def test_offline_download_stops_at_the_first_failure_with_one_error_line(tmp_path, monkeypatch, capsys):
    calls = offline_network(monkeypatch)
    code, out, err = run(capsys, "download", tmp_path)
    assert code == 1 and len(calls) == 1  # fails fast: not 15 datasets' worth of attempts
    errors = [line for line in (out + err).splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: no network:")
    assert "drive.google.com" in errors[0] and "--dry-run" in errors[0] and "Traceback" not in err
    assert not leftovers(tmp_path) and os.listdir(tmp_path) == []


def test_offline_image_download_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    make_split_layout(tmp_path, "DescribableTextures")  # split file present; only images to fetch
    shutil.rmtree(tmp_path / "dtd" / "images")
    calls = offline_network(monkeypatch)
    code, _, err = run(capsys, "download", tmp_path, "--dataset", "dtd")
    assert code == 1 and len(calls) == 1
    assert err.startswith("ERROR: no network: DescribableTextures's images") and err.count("\n") == 1
    assert "torchvision.datasets.DTD" in err
    assert not leftovers(tmp_path) and not (tmp_path / "dtd" / "images").exists()


def test_a_refused_split_download_is_not_saved_and_the_rest_goes_on(tmp_path, monkeypatch, capsys):
    from datasets import EuroSAT, OxfordPets

    web = FakeWeb([SOURCES["OxfordPets"]()]).install(monkeypatch)
    eurosat_id = EuroSAT.downloads[EuroSAT.split_file]
    web.drive[eurosat_id] = b"<html>Google Drive - quota exceeded</html>"  # what a refusal returns
    code, out, err = run(capsys, "download", tmp_path, "--dataset", "oxford_pets", "eurosat", "--splits-only")
    assert code == 1
    assert "EuroSAT: split_zhou_EuroSAT.json" in err and "did not return JSON" in err
    assert [line for line in err.splitlines() if line.startswith("ERROR:")] == [err.splitlines()[-1]]
    assert not (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").exists() and not leftovers(tmp_path)
    assert (tmp_path / "oxford_pets" / OxfordPets.split_file).is_file()


# ----------------------------------------------------------------------------- check


@pytest.fixture
def complete(tmp_path, monkeypatch, capsys):
    """Every dataset downloaded and converted from its miniature source."""
    minis = {name: make() for name, make in SOURCES.items()}
    FakeWeb(minis.values()).install(monkeypatch)
    for name, mini in minis.items():
        put_by_hand(tmp_path, name, mini)
    assert run(capsys, "download", tmp_path)[0] == 0
    published_counts(monkeypatch, minis)
    return tmp_path


def test_check_of_a_complete_folder_prints_the_table_and_exits_0(complete, capsys):
    code, out, err = run(capsys, "check", complete)
    assert code == 0, out + err
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in CONFIG.values()]
    assert len(rows) == 15 and all(row[-1] == "ok" for row in rows)
    assert "dataset" in out and "not in split" in out
    assert "All 15 dataset(s) complete" in out and "ERROR" not in err


def test_check_names_the_dataset_split_and_count_of_missing_images(tmp_path, capsys):
    dataset_dir, split = make_split_layout(tmp_path, "OxfordPets")
    for relpath, _, _ in split["test"][:3]:
        os.remove(os.path.join(dataset_dir, "images", relpath))
    code, out, err = run(capsys, "check", tmp_path, "--dataset", "oxford_pets")
    assert code == 1
    (row,) = [line.split() for line in out.splitlines() if line.startswith("oxford_pets ")]
    assert row[2:7] == ["25/25", "11/11", "11/14", "3", "0"] and row[-1] == "READY"
    assert f"OxfordPets: test: 3 of 14 images missing under oxford_pets/images/, first: {split['test'][0][0]}" in out
    assert err.strip().splitlines()[-1].startswith("ERROR: 1 of 1 dataset(s) not ready: oxford_pets")


def test_check_finds_empty_images_by_default_and_undecodable_ones_with_verify_images(tmp_path, capsys):
    dataset_dir, split = make_split_layout(tmp_path, "Food101")
    empty, garbage = split["train"][0][0], split["val"][0][0]
    touch(os.path.join(dataset_dir, "images", empty), b"")
    touch(os.path.join(dataset_dir, "images", garbage), b"this is not a JPEG")
    code, out, _ = run(capsys, "check", tmp_path, "--dataset", "food101")
    assert code == 1 and f"1 unreadable image file(s) under food-101/images/: {empty} (empty file)" in out
    assert garbage not in out  # not opened without --verify-images

    for workers in ("1", "2"):  # in this process, and in a pool
        code, out, _ = run(capsys, "check", tmp_path, "--dataset", "food101", "--verify-images", "--workers", workers)
        assert code == 1 and "2 unreadable image file(s)" in out
        assert f"{garbage} (cannot be decoded: UnidentifiedImageError" in out


def test_check_reports_a_missing_split_file_with_the_command_that_gets_it(tmp_path, capsys):
    dataset_dir, _ = make_split_layout(tmp_path, "EuroSAT")
    os.remove(os.path.join(dataset_dir, "split_zhou_EuroSAT.json"))
    code, out, _ = run(capsys, "check", tmp_path, "--dataset", "eurosat")
    assert code == 1
    assert "EuroSAT: split file split_zhou_EuroSAT.json not found" in out
    assert "python -m tools.datasets download <DATASET.ROOT> --dataset EuroSAT --splits-only" in out


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[: len(text) // 2], "is not valid JSON"),
    (lambda text: json.dumps({**json.loads(text), "val": []}), "split_zhou_SUN397.json (val) lists no images"),
])
def test_check_reports_a_broken_split_file(tmp_path, capsys, damage, message):
    dataset_dir, _ = make_split_layout(tmp_path, "SUN397")
    path = os.path.join(dataset_dir, "split_zhou_SUN397.json")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(damage(text))
    code, out, _ = run(capsys, "check", tmp_path, "--dataset", "sun397")
    assert code == 1 and message in out and "tools.datasets download" in out


def test_check_reads_the_lists_training_reads(tmp_path, capsys):
    # FGVCAircraft has no split JSON: its class reads the official txt lists, and so does check.
    dataset_dir = tmp_path / "fgvc_aircraft"
    touch(str(dataset_dir / "images" / "1000001.jpg"))
    (dataset_dir / "variants.txt").write_text("707-320\n")
    for split in SPLIT_KEYS:
        (dataset_dir / f"images_variant_{split}.txt").write_text("1000001 707-320\n1000002 707-320\n")
    code, out, _ = run(capsys, "check", tmp_path, "--dataset", "fgvc_aircraft")
    assert code == 1
    assert "FGVCAircraft: train: 1 of 2 images missing under fgvc_aircraft/images/, first: 1000002.jpg" in out


def test_check_counts_imagenet_against_its_published_size_and_a_stale_listing(complete, monkeypatch, capsys):
    from datasets import ImageNet

    assert build(complete, "ImageNet")  # writes listing_cache.json, as a first run does
    monkeypatch.setattr(ImageNet, "num_images", {"train": 10, "test": 6})  # one train image short
    os.remove(complete / "imagenet" / "images" / "val" / "n01440764" / "ILSVRC2012_val_00000001.JPEG")
    code, out, _ = run(capsys, "check", complete, "--dataset", "imagenet")
    assert code == 1
    assert "ImageNet: train: 1 of 10 images missing" in out and "ImageNet: test: 1 of 6 images missing" in out
    assert "listing_cache.json no longer matches the images on disk" in out


def test_check_of_a_missing_dataset_says_how_to_get_it(tmp_path, capsys):
    code, out, err = run(capsys, "check", tmp_path, "--dataset", "caltech101", "imagenet_r")
    assert code == 1
    assert f"Get it with `python -m tools.datasets download {tmp_path} --dataset caltech101`" in out
    assert f"--dataset imagenet_r`" in out
    assert "ERROR: 2 of 2 dataset(s) not ready: caltech101, imagenet_r" in err


def test_unknown_dataset_name_is_one_error(tmp_path, capsys):
    code, _, err = run(capsys, "check", tmp_path, "--dataset", "oxford_petz")
    assert code == 1 and err.startswith("ERROR: unknown dataset(s) oxford_petz; choose from imagenet, ")


def test_a_data_folder_that_cannot_be_written_is_one_error(tmp_path, capsys):
    (tmp_path / "data").write_text("a file where the data folder should be")
    code, out, err = run(capsys, "download", tmp_path / "data", "--dataset", "dtd")
    assert code == 1 and err.startswith(f"ERROR: cannot write {tmp_path / 'data'}") and err.count("\n") == 1
    assert "Traceback" not in out + err


def test_every_protocol_dataset_has_a_source_and_a_miniature():
    assert set(tool.SOURCES) == set(CONFIG) == set(SOURCES)


def test_a_deleted_image_folder_is_downloaded_again(tmp_path, monkeypatch, capsys):
    FakeWeb([SOURCES["OxfordPets"]()]).install(monkeypatch)
    assert run(capsys, "download", tmp_path, "--dataset", "oxford_pets")[0] == 0
    shutil.rmtree(tmp_path / "oxford_pets" / "images")  # what check's fix for missing images says
    code, out, _ = run(capsys, "check", tmp_path, "--dataset", "oxford_pets")
    assert code == 1 and "delete the image folder, then get it with" in out
    code, out, _ = run(capsys, "download", tmp_path, "--dataset", "oxford_pets")
    assert code == 0 and "fetching again" in out
    assert run(capsys, "check", tmp_path, "--dataset", "oxford_pets")[0] == 0


def test_a_damaged_imagenet_listing_cache_is_listed_again(complete, capsys):
    (complete / "imagenet" / "listing_cache.json").write_text('{"train": {"fold')
    assert len(build(complete, "ImageNet").train_x) == SOURCES["ImageNet"]().counts[0]
    assert run(capsys, "check", complete, "--dataset", "imagenet")[0] == 0
