"""Print one key of a trainer config, as train.py would see it after merging the YAML
over Dassl's defaults (command-line options aside).

    python -m tools.config_value configs/trainers/CoOp/vit_b16_ctxv1.yaml OPTIM.MAX_EPOCH

The scripts use it for the epoch to evaluate (``--load-epoch``): the config's MAX_EPOCH,
never a number written into a script. Only the yacs defaults are imported (no torch), so
it is fast. (A key that train.py itself adds to the defaults is found only in the YAML.)
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config_value(path: str, key: str):
    import yaml

    from builtin_dassl.config import get_cfg_default

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        node = yaml.safe_load(f) or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return node
    node = get_cfg_default()  # the key is not in the file: Dassl's default
    for part in key.split("."):
        if part not in node:
            raise KeyError(f"{key} is neither in {path} nor in Dassl's defaults")
        node = node[part]
    return node


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m tools.config_value CONFIG.yaml KEY", file=sys.stderr)
        return 2
    try:
        print(config_value(*args))
    except (FileNotFoundError, KeyError) as exc:
        print(f"ERROR: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
