"""Fetch the published split files (and class-name files) into each dataset's folder.

    python scripts/download_splits.py --root DATA                 # every dataset
    python scripts/download_splits.py --root DATA --dataset oxford_pets EuroSAT

A dataset is named by its config file (``oxford_pets``, as the scripts take it) or its class
(``OxfordPets``).

Files come from the Google Drive ids CoOp's DATASETS.md publishes (see each
dataset class's ``downloads``) and land in ``DATA/<dataset folder>/``; files
already there are kept unless ``--force``. The images themselves come from the
official sites (DATASETS.md). Needs ``pip install gdown`` and internet; on an
offline machine, fetch the printed URLs elsewhere and copy the files over.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasets  # noqa: E402


def url(drive_id):
    return f"https://drive.google.com/uc?id={drive_id}"


def datasets_with_downloads():
    """Config-file name -> registered dataset class, for every dataset with files to fetch."""
    import yaml

    from dassl_compat import DATASET_REGISTRY

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "configs", "datasets")
    table = {}
    for name in sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")):
        with open(os.path.join(folder, name + ".yaml")) as f:
            cls = DATASET_REGISTRY.get(yaml.safe_load(f)["DATASET"]["NAME"])
        if getattr(cls, "downloads", None):
            table[name] = cls
    return table


def targets(root, names):
    table = datasets_with_downloads()
    by_class = {cls.__name__: name for name, cls in table.items()}
    chosen = [by_class.get(n, n) for n in names]
    unknown = [n for n, c in zip(names, chosen) if c not in table]
    if unknown:
        raise SystemExit(f"Unknown dataset(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(table)} (or their class names).")
    for name in chosen or table:
        cls = table[name]
        for filename, drive_id in cls.downloads.items():
            yield cls.__name__, os.path.join(root, cls.dataset_dir, filename), drive_id


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="the DATASET.ROOT folder")
    p.add_argument("--dataset", nargs="*", default=[],
                   help="config-file or class names, e.g. oxford_pets (default: all)")
    p.add_argument("--force", action="store_true", help="download again even if the file exists")
    a = p.parse_args(argv)

    todo = [t for t in targets(os.path.abspath(os.path.expanduser(a.root)), a.dataset)
            if a.force or not os.path.isfile(t[1])]
    if not todo:
        print("All requested files are present.")
        return 0
    try:
        import gdown
    except ImportError:
        lines = "\n".join(f"  {path}  <-  {url(i)}" for _, path, i in todo)
        print(f"ERROR: gdown is not installed (pip install gdown). Or fetch by hand:\n{lines}", file=sys.stderr)
        return 1

    failed = []
    for name, path, drive_id in todo:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print(f"{name}: {url(drive_id)} -> {path}")
        try:
            ok = gdown.download(id=drive_id, output=path + ".part", quiet=True)
        except Exception as exc:  # network errors come in many types; all mean the same here
            ok, reason = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            reason = "no file returned"
        if ok and os.path.isfile(path + ".part"):
            os.replace(path + ".part", path)
        else:
            if os.path.exists(path + ".part"):
                os.remove(path + ".part")
            failed.append((path, drive_id, reason))
    if failed:
        lines = "\n".join(f"  {path}  <-  {url(i)}  ({why})" for path, i, why in failed)
        print(
            f"ERROR: {len(failed)} download(s) failed (offline, or Google Drive refused). "
            f"Fetch these on a machine with internet and copy them to the paths shown:\n{lines}",
            file=sys.stderr,
        )
        return 1
    print(f"Downloaded {len(todo)} file(s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
