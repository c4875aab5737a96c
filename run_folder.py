"""What a training's output folder holds beyond Dassl's files: the identity of the run that
owns it, and a lock while a process writes to it.

Resuming is automatic (a training re-run into its folder continues from its checkpoints), so
a folder must never be continued by a *different* run: a seed-2 run into a finished seed-1
folder would report seed 1's result as seed 2's, and a resume with a smaller MAX_EPOCH would
report the longer run's model. ``run.json`` records the trainer, dataset, shots, seed, class
split and the whole config of the run that made the folder; a training into a folder whose
identity differs is refused, naming the keys that differ (more epochs than before extend the
run, with a warning; fewer are refused). Two processes started into the same
folder would overwrite each other's checkpoints: the writer holds ``.lock`` (an OS lock,
released when the process dies, so a killed run can be resumed at once).
"""
import json
import os
import os.path as osp

from filelock import FileLock, Timeout

from errors import UserError

IDENTITY_FILE = "run.json"
LOCK_FILE = ".lock"
# Keys that do not change what a run computes: where things are, and how it reports.
NOT_IDENTITY = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "DATALOADER.NUM_WORKERS",
                "TRAIN.PRINT_FREQ", "VERBOSE", "USE_CUDA", "TEST.FEATURE_CACHE",
                "TEST.FEATURE_CACHE_DIR")


class RunFolderError(UserError):
    """An output folder that belongs to another run, or is being written by one."""


def _flatten(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def identity(cfg):
    """The run's identity: every config key except ``NOT_IDENTITY``, JSON-friendly."""
    flat = {k: list(v) if isinstance(v, tuple) else v for k, v in _flatten(cfg)}
    return {k: v for k, v in sorted(flat.items()) if k not in NOT_IDENTITY}


def _summary(ident):
    return (f"{ident.get('TRAINER.NAME')} on {ident.get('DATASET.NAME')}, "
            f"{ident.get('DATASET.NUM_SHOTS')} shots, seed {ident.get('SEED')}, "
            f"classes {ident.get('DATASET.SUBSAMPLE_CLASSES')}, "
            f"{ident.get('OPTIM.MAX_EPOCH')} epochs")


def _write(path, ident):
    """Write ``ident`` to ``path`` atomically (a kill leaves the old file or the new one)."""
    with open(path + ".part", "w") as f:
        json.dump(ident, f, indent=1)
    os.replace(path + ".part", path)


def check_identity(output_dir, cfg):
    """Record the run's identity in a new folder, or check that an existing folder is this
    run's. A folder with checkpoints but no identity (another tool, an older version) is
    refused too: nothing says whose checkpoints they are."""
    path = osp.join(output_dir, IDENTITY_FILE)
    mine = identity(cfg)
    if not osp.isfile(path):
        has_checkpoints = any(
            name.startswith("model") for _, _, files in os.walk(output_dir) for name in files)
        if has_checkpoints:
            raise RunFolderError(
                f"{output_dir} holds checkpoints but no {IDENTITY_FILE}, so it cannot be "
                f"resumed safely; use another --output-dir, or delete the folder to start over.")
        _write(path, mine)
        return
    try:
        with open(path) as f:
            theirs = json.load(f)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path} is unreadable ({exc}); delete the folder to start "
                             f"over, or use another --output-dir.") from None
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ == ["OPTIM.MAX_EPOCH"] and mine[differ[0]] > theirs[differ[0]]:
        # More epochs continue the run (fewer would report the longer run's model)
        print(f"WARNING: extending the {theirs[differ[0]]}-epoch run in {output_dir} to "
              f"{mine[differ[0]]} epochs; its finished epochs followed the shorter LR schedule")
        _write(path, mine)
        return
    if differ:
        shown = ", ".join(f"{k} {theirs.get(k)!r} -> {mine.get(k)!r}" for k in differ[:6])
        more = f" and {len(differ) - 6} more" if len(differ) > 6 else ""
        raise RunFolderError(
            f"{output_dir} belongs to another run ({_summary(theirs)}), not this one: {shown}"
            f"{more}. Use another --output-dir (or delete the folder to start over).")


def lock(output_dir):
    """The writer's lock on ``output_dir``, held until the returned context manager exits;
    a second writer is refused."""
    os.makedirs(output_dir, exist_ok=True)
    path = osp.join(output_dir, LOCK_FILE)
    try:
        return FileLock(path, timeout=0).acquire()
    except Timeout:
        raise RunFolderError(
            f"Another process is writing to {output_dir} (it holds {path}); wait for it to "
            f"finish, or use another --output-dir.") from None
