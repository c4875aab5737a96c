"""Fetch the published split files (and class-name files) into each dataset's folder.

    python scripts/download_splits.py --root DATA                 # every dataset
    python scripts/download_splits.py --root DATA --dataset oxford_pets EuroSAT

Kept for the commands that name it; it is ``python -m tools.datasets download DATA
--splits-only [--dataset ...]``, which also downloads and checks the images (DATASETS.md).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from errors import UserError  # noqa: E402
from tools import datasets as tool  # noqa: E402


def targets(root, names):
    """``(dataset class name, path, Google Drive id)`` of each file to fetch."""
    try:
        yield from tool.split_file_targets(root, names)
    except UserError as exc:
        raise SystemExit(f"ERROR: {exc}") from None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="the DATASET.ROOT folder")
    p.add_argument("--dataset", nargs="*", default=[],
                   help="config-file or class names, e.g. oxford_pets (default: all)")
    p.add_argument("--force", action="store_true", help="download again even if the file exists")
    a = p.parse_args(argv)
    args = ["download", a.root, "--splits-only"] + (["--force"] if a.force else [])
    return tool.main(args + (["--dataset", *a.dataset] if a.dataset else []))


if __name__ == "__main__":
    sys.exit(main())
