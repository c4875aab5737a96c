"""Checkpoint files in Dassl's layout, readable with ``torch.load(weights_only=True)``.

Layout of ``save_dir``: ``model.pth.tar-<epoch>``, a text file ``checkpoint``
naming the latest one, and ``model-best.pth.tar`` when ``is_best``.
"""
import os
import os.path as osp
import shutil
import tempfile
import warnings
from collections import OrderedDict

import torch

from errors import UserError

from .utils import mkdir_if_missing


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """A checkpoint file that does not exist (a FileNotFoundError as in Dassl)."""


def _atomic_write(save_dir, fpath, write):
    fd, tmp = tempfile.mkstemp(dir=save_dir, prefix="tmp-", suffix=".part")  # torch.save rejects names starting with "."
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, fpath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _strip_module_prefix(state_dict):
    return OrderedDict(
        (k[len("module."):] if k.startswith("module.") else k, v)
        for k, v in state_dict.items()
    )


def save_checkpoint(
    state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""
):
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = _strip_module_prefix(state["state_dict"])

    if not model_name:
        model_name = f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, model_name)
    _atomic_write(save_dir, fpath, lambda tmp: torch.save(state, tmp))
    print(f"Checkpoint saved to {fpath}")

    def write_name(tmp):
        with open(tmp, "w") as f:
            f.write(f"{osp.basename(fpath)}\n")

    _atomic_write(save_dir, osp.join(save_dir, "checkpoint"), write_name)

    if is_best:
        best_fpath = osp.join(save_dir, "model-best.pth.tar")
        _atomic_write(save_dir, best_fpath, lambda tmp: shutil.copyfile(fpath, tmp))
        print(f'Best checkpoint saved to "{best_fpath}"')


def load_checkpoint(fpath):
    """Load a checkpoint onto the CPU, tensors and plain Python values only."""
    if fpath is None:
        raise UserError("Checkpoint path is None")
    if not osp.exists(fpath):
        raise CheckpointNotFoundError(f'File is not found at "{fpath}"')
    try:
        return torch.load(fpath, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f'Unable to load checkpoint from "{fpath}": {type(e).__name__}: '
            f"{str(e).splitlines()[0] if str(e) else ''}. Only files holding "
            "tensors and plain Python values can be read (torch.load with "
            "weights_only=True); checkpoints that pickle objects (e.g. upstream "
            "Dassl's scheduler) must be re-saved with their state dicts only."
        ) from e


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """Load the checkpoint named in ``<fdir>/checkpoint``; return its epoch."""
    with open(osp.join(fdir, "checkpoint"), "r") as f:
        fpath = osp.join(fdir, f.readline().strip("\n"))
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def load_pretrained_weights(model, weight_path):
    """Copy the weights whose name and shape match; report the rest."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in _strip_module_prefix(state_dict).items():
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    model_dict.update(matched)
    model.load_state_dict(model_dict)

    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)")
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if discarded:
            print(f"Layers discarded due to unmatched keys or size: {discarded}")
