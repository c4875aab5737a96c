"""Checkpoint files in Dassl's layout, readable with ``torch.load(weights_only=True)``, and
the one save / resume / load path of a trainer's registered models (both engines use it:
upstream Dassl's breaks on torch >= 2.6).

Layout of ``save_dir`` (one per registered model): ``model.pth.tar-<epoch>``, a text file
``checkpoint`` naming the latest one, and ``model-best.pth.tar`` when ``is_best``. Every file
is written to a temporary name and renamed, so a file is whole or absent; a run killed
mid-write leaves ``tmp-*.part`` files, removed on resume.

An epoch's checkpoint is complete when every registered model has its file for that epoch
(a trainer with a regularizer saves two models, one after the other): resuming takes the
newest epoch that every model has, never a mix of epochs.
"""
import glob
import os
import os.path as osp
import random
import re
import shutil
import tempfile
import warnings
from collections import OrderedDict

import numpy as np
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


# ----------------------------------------------------------------- a trainer's models

_MODEL_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")


def saved_epochs(folder):
    """Epochs N with a ``model.pth.tar-N`` in ``folder``."""
    names = os.listdir(folder) if osp.isdir(folder) else []
    return {int(m.group(1)) for m in map(_MODEL_FILE.match, names) if m}


def rng_state():
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _extra_state(trainer):
    hook = getattr(trainer, "extra_checkpoint_state", None)
    return hook() if hook is not None else {}


def _load_extra_state(trainer, state):
    hook = getattr(trainer, "load_extra_checkpoint_state", None)
    if hook is not None:
        hook(state or {})


def save_models(trainer, epoch, directory, is_best=False, val_result=None, model_name=""):
    """Save every registered model (with its optimizer, scheduler, the RNG state and the
    trainer's extra state) for ``epoch`` (0-based; files are numbered ``epoch + 1``)."""
    state = rng_state()
    for name in trainer.get_model_names():
        optim, sched = trainer._optims[name], trainer._scheds[name]
        save_checkpoint(
            {
                "state_dict": trainer._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "rng_state": state,
                "extra": _extra_state(trainer),
            },
            osp.join(directory, name),
            is_best=is_best,
            model_name=model_name,
        )


def remove_partial_files(folder):
    """Temporary files a killed save left behind."""
    for path in glob.glob(osp.join(folder, "tmp-*.part")):
        os.remove(path)
        print(f"Removed {path}, left by an interrupted save")


def resume_models(trainer, directory):
    """Resume every registered model from the newest epoch all of them have under
    ``<directory>/<name>/``; return that epoch (0: none, train from scratch)."""
    names = trainer.get_model_names()
    folders = {name: osp.join(directory, name) for name in names}
    for folder in folders.values():
        remove_partial_files(folder)
    epochs = {name: saved_epochs(folder) for name, folder in folders.items()}
    complete = set.intersection(*epochs.values()) if names else set()
    if not complete:
        found = {n: max(e) for n, e in epochs.items() if e}
        if found:
            print(f"WARNING: no epoch has a checkpoint of every model under {directory} "
                  f"(newest per model: {found}); training starts from scratch")
        else:
            print("No checkpoint found, train from scratch")
        return 0
    start_epoch = max(complete)
    ahead = {n: max(e) for n, e in epochs.items() if max(e) > start_epoch}
    if ahead:
        print(f"WARNING: epoch {max(ahead.values())} was not saved for every model (a save "
              f"was interrupted); resuming from epoch {start_epoch}, the newest epoch every "
              f"model has")
    print(f"Found checkpoint at {directory} (will resume training)")
    earlier = sorted(e for e in complete if e < start_epoch)
    for name in names:
        fpath = osp.join(folders[name], f"model.pth.tar-{start_epoch}")
        print(f'Loading checkpoint from "{fpath}"')
        try:
            ckpt = load_checkpoint(fpath)
        except UserError as exc:
            fix = (f"delete the epoch-{start_epoch} files (model.pth.tar-{start_epoch}) to resume "
                   f"from epoch {earlier[-1]}" if earlier else
                   "delete the output folder to train from scratch")
            raise UserError(f"{exc} To resume, {fix}.") from None
        trainer._models[name].load_state_dict(ckpt["state_dict"])
        print("Loaded model weights")
        if trainer._optims[name] is not None and ckpt.get("optimizer") is not None:
            trainer._optims[name].load_state_dict(ckpt["optimizer"])
            print("Loaded optimizer")
        if trainer._scheds[name] is not None and ckpt.get("scheduler") is not None:
            trainer._scheds[name].load_state_dict(ckpt["scheduler"])
            print("Loaded scheduler")
        _load_extra_state(trainer, ckpt.get("extra"))
        if ckpt.get("rng_state") is not None:
            set_rng_state(ckpt["rng_state"])
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def load_models(trainer, directory, epoch=None, names=None):
    """Load the weights of ``names`` (default: every registered model) from
    ``<directory>/<name>/model.pth.tar-<epoch>`` (or ``model-best.pth.tar``) for evaluation."""
    if not directory:
        print("Note that load_model() is skipped as no pretrained model is given "
              "(ignore this if it's done on purpose)")
        return
    model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
    for name in names if names is not None else trainer.get_model_names():
        path = osp.join(directory, name, model_file)
        if not osp.exists(path):
            folder = osp.join(directory, name)
            found = sorted(f for f in (os.listdir(folder) if osp.isdir(folder) else [])
                           if f.startswith("model"))
            raise CheckpointNotFoundError(
                f"No model at {path}. Check --model-dir and --load-epoch "
                f"(files found there: {found or 'none'})."
            )
        ckpt = load_checkpoint(path)
        val = ckpt.get("val_result")
        print(f"Load {path} to {name} (epoch={ckpt['epoch']}, "
              f"val_result={'None' if val is None else f'{val:.1f}'})")
        try:
            trainer._models[name].load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise UserError(
                f"The checkpoint {path} does not fit this model: "
                f"{str(exc).splitlines()[0]} ... (were the trainer config and "
                f"class-specific options the same as in training?)"
            ) from None
        _load_extra_state(trainer, ckpt.get("extra"))
