"""Read-only checks of the repository's shape: the trainers name no regularizer, nothing
points outside the repository, and the protocols' run folders and train.py arguments are
built in one place."""
import ast
import os
import os.path as osp
import re
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def committed(*patterns):
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    return [p for p in out if osp.isfile(osp.join(REPO, p))]


def code_strings_and_names(path):
    """Identifiers, attribute names and string constants of a module, docstrings excluded."""
    with open(osp.join(REPO, path)) as f:
        tree = ast.parse(f.read())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            found.add(node.value)
    return found


def test_trainers_name_no_regularizer_and_read_no_regularizer_config():
    from regularizers import REGULARIZERS

    nodes = set(REGULARIZERS)
    assert {"PROXYFDA", "LDIFS", "PACE"} <= nodes
    for path in committed("trainers/*.py"):
        used = code_strings_and_names(path)
        hits = sorted(w for w in used for n in nodes if n in w.upper().split(".")
                      or w in ("ProxyFDA", "LDIFS", "PACE"))
        assert not hits, f"{path} names a regularizer in code: {hits}"


def test_no_committed_file_points_outside_the_repository():
    # the team's notes, and this development machine's folders (a path that works only here)
    pattern = re.compile(r"\.\./shared|shared/(SPEC|STYLE|reference)|SPEC\.md|peers\.md|"
                         r"methods\.md|parity[-]harness|STYLE\.md|/wor[k]/|/roo[t]/|/tm[p]/w")
    offenders = []
    for path in committed():
        if path.endswith((".pt", ".npz", ".png", ".jpg", ".gz")) or path.startswith("tests/golden"):
            continue
        try:
            with open(osp.join(REPO, path), encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            continue
        offenders += [f"{path}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not offenders, offenders


@pytest.mark.parametrize("marker", ['"base2new"', '"--load-epoch"', '"--model-dir"'])
def test_protocol_folders_and_arguments_are_built_in_one_module(marker):
    """Where runs live (the base2new folder) and how an evaluation of a training is called
    (--model-dir, --load-epoch): tools/protocol.py only, besides the CLIs that define those
    options (run_config.py, train.py, and its stand-in for tests) and the results tool's
    --protocol name."""
    allowed = {"tools/protocol.py", "train.py", "run_config.py", "tools/dassl_log.py",
               "tools/results.py"}
    built = []
    for path in committed("*.py"):
        if path.startswith("tests/") or path in allowed:
            continue
        with open(osp.join(REPO, path)) as f:
            if marker in f.read():
                built.append(path)
    assert not built, f"{marker} outside tools/protocol.py: {built}"


def test_the_dataset_lists_live_in_the_protocol_module():
    from tools import protocol

    assert len(protocol.DATASETS) == 11 and protocol.XD_SOURCE in protocol.DATASETS
    for path in committed("*.py"):
        if path.startswith("tests/") or path == "tools/protocol.py":
            continue
        with open(osp.join(REPO, path)) as f:
            text = f.read()
        # the 11 names written out together anywhere else would be a second list
        assert sum(f'"{d}"' in text for d in protocol.DATASETS) < 6, path
