"""Write the benchmark's image sets as datasets in the standard layout.

    python benchmark/prepare_data.py --out DATA [--sets FashionMNIST MNIST] [--seed 0]

For each source set (benchmark/sets.py, SETS) this writes

    DATA/<folder>/images/<class>/<index>.png     the source images, native size, grayscale
    DATA/<folder>/split_<Name>.json              {"train"|"val"|"test": [[relpath, label, classname], ...]}
    DATA/<folder>/pretrain.json                  {"pretrain": [...]}: the tiny CLIP's pretraining
                                                 images, disjoint from train, val and test

and for each noisy base-to-novel set (BENCH_SETS: ClothesAnimals, NoisyMNIST, NoisyDigits)
the same layout without pretrain.json, its images the sources' train / val / test images with
Gaussian pixel noise.

``--sample FILE`` also writes the first ``--sample-per-class`` test images of each
class of each set into one small .npz (``<Name>_images``, ``<Name>_labels``): the
fixed sample tests/test_benchmark_model.py checks the committed tiny CLIP on.

The split file has the format of CoOp's ``split_zhou_*.json``, so the sets load
through datasets/common.py like the real 11 (``--dataset-config-file
configs/datasets/<folder>.yaml``). The cut is class-balanced and depends
only on ``--seed``; rerunning rewrites identical files.
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from benchmark.sets import BENCH_SETS, BENCH_SETS_BY_NAME, SETS, SETS_BY_NAME, cut, cut_noisy  # noqa: E402
from errors import UserError  # noqa: E402

PARTS = ("train", "val", "test")


def class_folder(classname):
    return classname.replace("/", "_").replace(" ", "_")


def write_set(image_set, out, seed=0):
    x, y, parts = cut(image_set, seed)
    root = osp.join(out, image_set.folder)
    rows = {}
    for part, idx in parts.items():
        rows[part] = []
        for i in idx:
            label = int(y[i])
            classname = image_set.classnames[label]
            relpath = f"{class_folder(classname)}/{i:05d}.png"
            path = osp.join(root, "images", relpath)
            os.makedirs(osp.dirname(path), exist_ok=True)
            Image.fromarray(x[i], mode="L").save(path)
            rows[part].append([relpath, label, classname])
    with open(osp.join(root, image_set.split_file), "w") as f:
        json.dump({p: rows[p] for p in PARTS}, f, indent=0)
    with open(osp.join(root, "pretrain.json"), "w") as f:
        json.dump({"pretrain": rows["pretrain"]}, f, indent=0)
    sizes = ", ".join(f"{p} {len(rows[p])}" for p in ("pretrain",) + PARTS)
    print(f"{image_set.name}: {root} ({sizes})")


def write_noisy_set(bench_set, out, seed=0):
    """A base-to-novel set (benchmark/sets.py, BENCH_SETS): the sources' train / val / test
    images with noise, as PNGs in the same layout (no pretrain part)."""
    root = osp.join(out, bench_set.folder)
    rows = {}
    for part, (images, labels, ids) in cut_noisy(bench_set, seed).items():
        rows[part] = []
        for image, label, source_id in zip(images, labels, ids):
            classname = bench_set.classnames[label]
            relpath = f"{class_folder(classname)}/{source_id}.png"
            path = osp.join(root, "images", relpath)
            os.makedirs(osp.dirname(path), exist_ok=True)
            Image.fromarray(image, mode="L").save(path)
            rows[part].append([relpath, int(label), classname])
    with open(osp.join(root, bench_set.split_file), "w") as f:
        json.dump({p: rows[p] for p in PARTS}, f, indent=0)
    sizes = ", ".join(f"{p} {len(rows[p])}" for p in PARTS)
    print(f"{bench_set.name}: {root} ({len(bench_set.classnames)} classes; {sizes})")


def write_sample(sets, path, per_class, seed=0):
    arrays = {}
    for image_set in sets:
        x, y, parts = cut(image_set, seed)
        test = parts["test"]
        keep = np.concatenate([test[y[test] == label][:per_class] for label in range(len(image_set.classnames))])
        arrays[f"{image_set.name}_images"] = x[keep]
        arrays[f"{image_set.name}_labels"] = y[keep].astype(np.int64)
    np.savez_compressed(path, **arrays)
    print(f"sample: {path} ({per_class} test images per class per set)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the data root (DATASET.ROOT)")
    names = [s.name for s in SETS] + [s.name for s in BENCH_SETS]
    parser.add_argument("--sets", nargs="+", default=names, choices=names,
                        help="the clean sources (their pretrain parts are the tiny CLIP's "
                             "pretraining data) and the noisy base-to-novel sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", default="", help="also write a fixed test sample (.npz) here")
    parser.add_argument("--sample-per-class", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        for name in args.sets:
            if name in SETS_BY_NAME:
                write_set(SETS_BY_NAME[name], args.out, args.seed)
            else:
                write_noisy_set(BENCH_SETS_BY_NAME[name], args.out, args.seed)
        if args.sample:
            write_sample([SETS_BY_NAME[n] for n in args.sets if n in SETS_BY_NAME], args.sample,
                         args.sample_per_class, args.seed)
    except UserError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
