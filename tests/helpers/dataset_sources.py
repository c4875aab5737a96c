"""Miniature copies of each dataset source: the archives a download gets, with the real
archives' member paths (what torchvision's downloaders and the official archives hold), a few
tiny images each, and the published split and class-name files that go with them.

``SOURCES[dataset class name]()`` gives a ``Mini``: what the (fake) web serves by URL file
name, what Google Drive serves by id, the files a person fetches by hand, and what the
dataset class must read once the tool has converted the download. Only paths and the files
the readers open are real; the rest of an archive's members are left out.
"""
import io
import json
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

JPEG = bytes.fromhex(  # a valid 1x1 JPEG
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c14"
    "0d0c0b0b0c1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d"
    "38323c2e333432ffc0000b080001000101011100ffc4001f0000010501010101010100000000000000"
    "000102030405060708090a0bffc400b5100002010303020403050504040000017d0102030004110512"
    "2131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a2526272829"
    "2a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a83"
    "8485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8"
    "c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00"
    "fbd3ffd9"
)
SPLITS = ("train", "val", "test")
PER_CLASS = (2, 1, 1)  # train, val and test images per class in every split file
WNIDS = ["n01440764", "n01443537", "n01484850"]
NAMES = ["tench", "goldfish", "great white shark"]
CLASSNAMES_TXT = "".join(f"{w} {n}\n" for w, n in zip(WNIDS, NAMES)).encode()


def touch(path, data=JPEG):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@dataclass
class Mini:
    web: Dict[str, bytes] = field(default_factory=dict)      # URL file name -> content
    drive: Dict[str, bytes] = field(default_factory=dict)    # Google Drive id -> content
    by_hand: Dict[str, bytes] = field(default_factory=dict)  # for DATA/downloads/<config>/
    classnames: List[str] = field(default_factory=list)      # as the dataset class reads them
    counts: Tuple[int, int, int] = (0, 0, 0)                 # train, val, test images
    extra: int = 0                                           # image files in no split
    num_images: Dict[str, int] = field(default_factory=dict)  # the published counts, miniature


def tar_bytes(members, compression="gz"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def mat_bytes(variables):
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, variables)
    return buf.getvalue()


def lines(rows):
    return "".join(f"{r}\n" for r in rows).encode()


def images_and_split(classes, path_of):
    """``({relpath: JPEG}, split rows)`` for ``classes`` ``[(key, class name)]``, PER_CLASS
    images each, numbered across the whole set."""
    images, rows, n = {}, {s: [] for s in SPLITS}, 0
    for label, (key, classname) in enumerate(classes):
        for split, k in zip(SPLITS, PER_CLASS):
            for _ in range(k):
                n += 1
                rel = path_of(key, n)
                images[rel] = JPEG
                rows[split].append([rel, label, classname])
    return images, rows


def split_file(cls, rows):
    """The dataset's published split file, keyed by its Google Drive id."""
    return {cls.downloads[cls.split_file]: json.dumps(rows).encode()}


def under(prefix, images):
    return {f"{prefix}/{rel}": data for rel, data in images.items()}


def counted(classes, rows, extra=0):
    return dict(classnames=[c for _, c in classes], counts=tuple(len(rows[s]) for s in SPLITS), extra=extra)


# ----------------------------------------------------------------------------- torchvision's downloaders


def caltech101():
    from datasets import Caltech101

    classes = [("accordion", "accordion"), ("airplanes", "airplane"), ("Faces", "face")]
    images, rows = images_and_split(classes, lambda key, n: f"{key}/image_{n:04d}.jpg")
    # In the archive, left out of the split: the background and the second faces class.
    images.update({"BACKGROUND_Google/image_0001.jpg": JPEG, "Faces_easy/image_0001.jpg": JPEG})
    inner = tar_bytes(under("101_ObjectCategories", images))
    annotations = tar_bytes({"Annotations/accordion/annotation_0001.mat": b"0"}, "")
    archive = zip_bytes({"caltech-101/101_ObjectCategories.tar.gz": inner, "caltech-101/Annotations.tar": annotations,
                         "caltech-101/show_annotation.m": b"% MATLAB\n"})
    drive = split_file(Caltech101, rows)
    # Older torchvision (0.18, the oldest requirements.txt allows) fetches the two inner
    # archives from Google Drive instead of the zip; the layout it leaves is the same.
    drive.update({"137RyRjvTBkBiIfeYBNZBtViDHQ6_Ewsp": inner, "175kQy3UsZ0wUEHZjqkUDdNVssr7bgh_m": annotations})
    return Mini(web={"caltech-101.zip": archive}, drive=drive, **counted(classes, rows, 2))


def oxford_pets():
    from datasets import OxfordPets

    classes = [("Abyssinian", "abyssinian"), ("american_bulldog", "american_bulldog"), ("Bengal", "bengal")]
    images, rows = images_and_split(classes, lambda key, n: f"{key}_{n}.jpg")
    label = {key: i + 1 for i, (key, _) in enumerate(classes)}

    def annotation(rel):
        key = rel.rsplit("_", 1)[0]
        return f"{rel[:-4]} {label[key]} {1 + (label[key] % 2)} 1"

    members = under("images", images)
    members["images/Abyssinian_100.mat"] = b"0"  # the real images.tar.gz holds a few .mat files
    annotations = tar_bytes({
        "annotations/trainval.txt": lines(annotation(r[0]) for s in ("train", "val") for r in rows[s]),
        "annotations/test.txt": lines(annotation(r[0]) for r in rows["test"]),
        "annotations/list.txt": lines(["#Image CLASS-ID SPECIES BREED ID"]),
    })
    return Mini(web={"images.tar.gz": tar_bytes(members), "annotations.tar.gz": annotations},
                drive=split_file(OxfordPets, rows), **counted(classes, rows))


def oxford_flowers():
    from datasets import OxfordFlowers

    classes = [(1, "pink primrose"), (2, "hard-leaved pocket orchid"), (3, "canterbury bells")]
    images, rows = images_and_split(classes, lambda key, n: f"image_{n:05d}.jpg")
    labels = [key for key, _ in classes for _ in range(sum(PER_CLASS))]
    ids = {s: [int(r[0][6:11]) for r in rows[s]] for s in SPLITS}
    drive = split_file(OxfordFlowers, rows)
    drive[OxfordFlowers.downloads["cat_to_name.json"]] = json.dumps({str(k): c for k, c in classes}).encode()
    return Mini(web={"102flowers.tgz": tar_bytes(under("jpg", images)),
                     "imagelabels.mat": mat_bytes({"labels": np.array([labels], dtype=np.uint8)}),
                     "setid.mat": mat_bytes({"trnid": np.array([ids["train"]]), "valid": np.array([ids["val"]]),
                                             "tstid": np.array([ids["test"]])})},
                drive=drive, **counted(classes, rows))


def food101():
    from datasets import Food101

    classes = [(c, c) for c in ("apple_pie", "baby_back_ribs", "ramen")]
    images, rows = images_and_split(classes, lambda key, n: f"{key}/{100000 + n}.jpg")

    def meta(splits):
        return json.dumps({c: [r[0][:-4] for s in splits for r in rows[s] if r[2] == c] for c, _ in classes}).encode()

    members = under("food-101/images", images)
    members.update({"food-101/meta/train.json": meta(("train", "val")), "food-101/meta/test.json": meta(("test",)),
                    "food-101/meta/classes.txt": lines(c for c, _ in classes)})
    return Mini(web={"food-101.tar.gz": tar_bytes(members)}, drive=split_file(Food101, rows),
                **counted(classes, rows))


def fgvc_aircraft():
    variants = ["707-320", "A300B4", "Cessna 172"]
    images, rows = images_and_split([(v, v) for v in variants], lambda key, n: f"{1000000 + n}.jpg")
    members = under("fgvc-aircraft-2013b/data/images", images)
    members["fgvc-aircraft-2013b/data/variants.txt"] = lines(variants)
    listed = {s: [f"{r[0][:-4]} {r[2]}" for r in rows[s]] for s in SPLITS}
    listed["trainval"] = listed["train"] + listed["val"]
    for part, rows_ in listed.items():
        members[f"fgvc-aircraft-2013b/data/images_variant_{part}.txt"] = lines(rows_)
    members["fgvc-aircraft-2013b/README.html"] = b"<html></html>"
    return Mini(web={"fgvc-aircraft-2013b.tar.gz": tar_bytes(members)},
                **counted([(v, v) for v in variants], rows))


def sun397():
    from datasets import SUN397

    classes = [("a/abbey", "abbey"), ("b/bakery/shop", "shop bakery"), ("c/church/outdoor", "outdoor church")]
    images, rows = images_and_split(classes, lambda key, n: f"{key}/sun_{n:04d}.jpg")
    images["a/abbey/sun_9999.jpg"] = JPEG  # SUN397 holds far more images than the split uses
    members = under("SUN397", images)
    members["SUN397/ClassName.txt"] = lines(f"/{key}" for key, _ in classes)
    members["SUN397/README.txt"] = b"SUN397\n"
    return Mini(web={"SUN397.tar.gz": tar_bytes(members)}, drive=split_file(SUN397, rows),
                **counted(classes, rows, 1))


def dtd():
    from datasets import DescribableTextures

    classes = [(c, c) for c in ("banded", "blotchy", "zigzagged")]
    images, rows = images_and_split(classes, lambda key, n: f"{key}/{key}_{n:04d}.jpg")
    members = under("dtd/images", images)
    for s in SPLITS:
        members[f"dtd/labels/{s}1.txt"] = lines(r[0] for r in rows[s])
    members["dtd/imdb/imdb.mat"] = b"0"
    return Mini(web={"dtd-r1.0.1.tar.gz": tar_bytes(members)}, drive=split_file(DescribableTextures, rows),
                **counted(classes, rows))


def eurosat():
    from datasets import EuroSAT

    classes = [("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"), ("SeaLake", "Sea or Lake")]
    images, rows = images_and_split(classes, lambda key, n: f"{key}/{key}_{n}.jpg")
    return Mini(web={"EuroSAT.zip": zip_bytes(under("2750", images))}, drive=split_file(EuroSAT, rows),
                **counted(classes, rows))


# ----------------------------------------------------------------------------- official archives


def ucf101():
    from datasets import UCF101
    from tools.datasets import SOURCES

    classes = [(c, c) for c in ("Apply_Eye_Makeup", "Archery", "Yo_Yo")]
    images, rows = images_and_split(classes, lambda key, n: f"{key}/v_{key.replace('_', '')}_g{n:02d}_c01.jpg")
    drive = split_file(UCF101, rows)
    drive[SOURCES["UCF101"].fetch.drive_id] = zip_bytes(under("UCF-101-midframes", images))
    return Mini(drive=drive, **counted(classes, rows))


def classnames_file(cls):
    return {cls.downloads["classnames.txt"]: CLASSNAMES_TXT}


def wnid_folders(wnids, name):
    return {f"{w}/{name(w, i)}": JPEG for w in wnids for i in range(2)}


def imagenetv2():
    from datasets import ImageNetV2

    images = {f"{label}/{label:02d}{i}a3f.jpeg": JPEG for label in range(len(WNIDS)) for i in range(2)}
    return Mini(web={"imagenetv2-matched-frequency.tar.gz": tar_bytes(under("imagenetv2-matched-frequency-format-val", images))},
                drive=classnames_file(ImageNetV2), classnames=NAMES, counts=(6, 0, 6), num_images={"test": 6})


def imagenet_sketch():
    from datasets import ImageNetSketch
    from tools.datasets import SOURCES

    drive = classnames_file(ImageNetSketch)
    drive[SOURCES["ImageNetSketch"].fetch.drive_id] = zip_bytes(
        under("sketch", wnid_folders(WNIDS, lambda w, i: f"sketch_{i}.JPEG")))
    return Mini(drive=drive, classnames=NAMES, counts=(6, 0, 6), num_images={"test": 6})


def hendrycks(folder, cls):
    members = under(folder, wnid_folders(WNIDS[1:], lambda w, i: f"0.{i}_{w}.jpg"))  # 200 of 1000 classes
    members[f"{folder}/README.txt"] = b"the 200 classes\n"
    return Mini(web={f"{folder}.tar": tar_bytes(members, "")}, drive=classnames_file(cls), classnames=NAMES[1:],
                counts=(4, 0, 4), num_images={"test": 4})


def imagenet_a():
    from datasets import ImageNetA

    return hendrycks("imagenet-a", ImageNetA)


def imagenet_r():
    from datasets import ImageNetR

    return hendrycks("imagenet-r", ImageNetR)


# ----------------------------------------------------------------------------- by hand


def imagenet():
    """ILSVRC-2012's three archives: the devkit (meta.mat, val ground truth), val (flat) and
    train (one tar per class)."""
    from datasets import ImageNet

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    synsets = np.zeros((len(WNIDS) + 1,), dtype=[(f, "O") for f in fields])
    for i, (w, n) in enumerate(zip(WNIDS, NAMES)):
        synsets[i] = (i + 1, w, n, "a fish", 0, np.zeros((0,)), 0, 3)
    synsets[len(WNIDS)] = (len(WNIDS) + 1, "n02512053", "fish", "any fish", 3, np.arange(1, 4), 1, 0)  # not a class
    truth = [1 + (k % len(WNIDS)) for k in range(2 * len(WNIDS))]
    devkit = tar_bytes({"ILSVRC2012_devkit_t12/data/meta.mat": mat_bytes({"synsets": synsets}),
                        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": lines(truth)})
    val = tar_bytes({f"ILSVRC2012_val_{k + 1:08d}.JPEG": JPEG for k in range(len(truth))}, "")
    train = tar_bytes({f"{w}.tar": tar_bytes({f"{w}_{i}.JPEG": JPEG for i in range(3)}, "") for w in WNIDS}, "")
    return Mini(by_hand={"ILSVRC2012_img_train.tar": train, "ILSVRC2012_img_val.tar": val,
                         "ILSVRC2012_devkit_t12.tar.gz": devkit},
                drive=classnames_file(ImageNet), classnames=NAMES, counts=(9, 6, 6),
                num_images={"train": 9, "test": 6})


def stanford_cars():
    from datasets import StanfordCars

    classes = [("train", "2012 Tesla Model S Sedan"), ("train", "1993 Volvo 240 Sedan"), ("test", "2007 BMW X5 SUV")]
    images, rows, n = {}, {s: [] for s in SPLITS}, 0
    for label, (_, classname) in enumerate(classes):  # train and val from cars_train, test from cars_test
        for split, k in zip(SPLITS, PER_CLASS):
            for _ in range(k):
                n += 1
                rel = f"{'cars_test' if split == 'test' else 'cars_train'}/{n:05d}.jpg"
                images[rel] = JPEG
                rows[split].append([rel, label, classname])
    by_hand = {f"{part}.tgz": tar_bytes({k: v for k, v in images.items() if k.startswith(part + "/")})
               for part in ("cars_train", "cars_test")}
    by_hand["car_devkit.tgz"] = tar_bytes({f"devkit/{f}": b"0" for f in (
        "cars_meta.mat", "cars_train_annos.mat", "cars_test_annos.mat", "README.txt")})
    by_hand["cars_test_annos_withlabels.mat"] = b"0"
    return Mini(by_hand=by_hand, drive=split_file(StanfordCars, rows),
                classnames=[c for _, c in classes], counts=tuple(len(rows[s]) for s in SPLITS))


#: registered dataset name -> its miniature source
SOURCES = {
    "ImageNet": imagenet, "Caltech101": caltech101, "OxfordPets": oxford_pets, "StanfordCars": stanford_cars,
    "OxfordFlowers": oxford_flowers, "Food101": food101, "FGVCAircraft": fgvc_aircraft, "SUN397": sun397,
    "DescribableTextures": dtd, "EuroSAT": eurosat, "UCF101": ucf101, "ImageNetV2": imagenetv2,
    "ImageNetSketch": imagenet_sketch, "ImageNetA": imagenet_a, "ImageNetR": imagenet_r,
}


# ----------------------------------------------------------------------------- the network


class _Response(io.BytesIO):
    def __init__(self, url, data):
        super().__init__(data)
        self.url, self.length = url, len(data)


class FakeWeb:
    """The network as torchvision's downloaders (urllib) and gdown see it, serving
    miniatures: a URL by its file name, a Google Drive file by its id; anything else is a
    404. ``calls`` records every request."""

    def __init__(self, minis=()):
        self.web, self.drive, self.calls = {}, {}, []
        for mini in minis:
            self.web.update(mini.web)
            self.drive.update(mini.drive)

    def urlopen(self, request, *args, **kwargs):
        import urllib.error

        url = getattr(request, "full_url", request)
        self.calls.append(url)
        name = url.rsplit("/", 1)[-1]
        if url.startswith("https://drive.google.com/"):  # torchvision asks where it redirects to
            return _Response(url, b"")
        if name not in self.web:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return _Response(url, self.web[name])

    def gdown(self, url=None, output=None, quiet=False, id=None, **kwargs):
        import gdown

        self.calls.append(id)
        if id not in self.drive:
            raise gdown.exceptions.FileURLRetrievalError(f"Cannot retrieve the public link of the file {id}")
        with open(output, "wb") as f:
            f.write(self.drive[id])
        return output

    def install(self, monkeypatch):
        import urllib.request

        import gdown
        import torchvision.datasets.utils

        monkeypatch.setattr(urllib.request, "urlopen", self.urlopen)
        monkeypatch.setattr(gdown, "download", self.gdown)
        # A miniature cannot have the md5 of the real archive, which torchvision checks.
        monkeypatch.setattr(torchvision.datasets.utils, "check_md5", lambda *args, **kwargs: True)
        return self
