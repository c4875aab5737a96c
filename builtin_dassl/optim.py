"""Optimizer and LR scheduler builders (dassl/optim semantics).

Dassl chains torch schedulers (StepLR/MultiStepLR/CosineAnnealingLR wrapped in
a warmup scheduler). That breaks on torch >= 2.7 and pickles the wrapped
scheduler into checkpoints. Here one scheduler computes the same per-epoch LR
in closed form from ``last_epoch``, and its state is plain numbers.
"""
import math
import warnings

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler

from errors import ConfigError

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "adamw"]
AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]
AVAI_WARMUPS = ["constant", "linear"]


def _staged_param_groups(model, new_layers, lr, base_lr_mult):
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "OPTIM.STAGED_LR is True, so build_optimizer() needs an nn.Module, "
            f"got {type(model).__name__}"
        )
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        warnings.warn("new_layers is empty (staged_lr is useless)")
    base_params, new_params = [], []
    for name, module in model.named_children():
        target = new_params if name in new_layers else base_params
        target.extend(module.parameters())
    return [
        {"params": base_params, "lr": lr * base_lr_mult},
        {"params": new_params},
    ]


def build_optimizer(model, optim_cfg, param_groups=None):
    """``model`` is an nn.Module or an iterable of parameters (or groups)."""
    name = optim_cfg.NAME
    lr = optim_cfg.LR
    wd = optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name not in AVAI_OPTIMS:
        raise ConfigError(
            f"OPTIM.NAME must be one of {AVAI_OPTIMS}, but got {name!r}"
        )

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn(
            "staged_lr will be ignored, if you need to use staged_lr, "
            "please bind it with param_groups yourself."
        )
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(
                model, optim_cfg.NEW_LAYERS, lr, optim_cfg.BASE_LR_MULT
            )
        elif isinstance(model, nn.Module):
            param_groups = model.parameters()
        else:
            param_groups = model

    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            param_groups, lr=lr, weight_decay=wd, betas=betas,
            amsgrad=name == "amsgrad",
        )
    if name == "sgd":
        return torch.optim.SGD(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)


class EpochLRScheduler(LRScheduler):
    """Dassl's warmup + (single_step | multi_step | cosine) schedule.

    ``last_epoch`` counts the ``step()`` calls (one per epoch). For each
    parameter group with initial LR ``base``:

    - warmup epochs ``t < warmup_epoch``: ``warmup_lr`` (constant), or
      ``warmup_lr`` at ``t = 0`` and ``base * t / warmup_epoch`` after (linear);
    - afterwards the main schedule at step ``k``: ``k = t - warmup_epoch`` when
      ``warmup_recount`` (the main schedule starts afresh), else ``k = t``.
      In the latter case Dassl's chained schedulers restart from ``base`` at
      ``k = warmup_epoch``, so decay is counted from there.
    """

    def __init__(
        self, optimizer, kind, max_epoch, stepsize=(), gamma=0.1,
        warmup_epoch=0, warmup_type="constant", warmup_lr=1e-5,
        warmup_recount=True, last_epoch=-1,
    ):
        self.kind = kind
        self.max_epoch = int(max_epoch)
        self.stepsize = [int(s) for s in stepsize]
        self.gamma = float(gamma)
        self.warmup_epoch = max(int(warmup_epoch), 0)
        self.warmup_type = warmup_type
        self.warmup_lr = float(warmup_lr)
        self.warmup_recount = bool(warmup_recount)
        super().__init__(optimizer, last_epoch)

    def _main_lr(self, base, k, start):
        if self.kind == "single_step":
            step = self.stepsize[0]
            return base * self.gamma ** (k // step - start // step)
        if self.kind == "multi_step":
            n_decays = sum(1 for m in self.stepsize if start < m <= k)
            return base * self.gamma ** n_decays
        # cosine, T_max = max_epoch, eta_min = 0
        t_max = self.max_epoch
        if start == 0:
            return base * (1 + math.cos(math.pi * k / t_max)) / 2
        # Restarted at ``base`` from step ``start``: torch's recursive cosine,
        # which no longer equals the closed form.
        lr = base
        for j in range(start + 1, k + 1):
            if (j - 1 - t_max) % (2 * t_max) == 0:
                lr += base * (1 - math.cos(math.pi / t_max)) / 2
            else:
                lr *= (1 + math.cos(math.pi * j / t_max)) / (
                    1 + math.cos(math.pi * (j - 1) / t_max)
                )
        return lr

    def lr_at(self, epoch, base):
        w = self.warmup_epoch
        if epoch < w:
            if self.warmup_type == "constant" or epoch == 0:
                return self.warmup_lr
            return base * epoch / w
        if w > 0 and self.warmup_recount:
            return self._main_lr(base, epoch - w, 0)
        return self._main_lr(base, epoch, w)

    def get_lr(self):
        return [self.lr_at(self.last_epoch, base) for base in self.base_lrs]

    _get_closed_form_lr = get_lr


def build_lr_scheduler(optimizer, optim_cfg):
    kind = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    max_epoch = optim_cfg.MAX_EPOCH
    if kind not in AVAI_SCHEDS:
        raise ConfigError(
            f"OPTIM.LR_SCHEDULER must be one of {AVAI_SCHEDS}, but got {kind!r}"
        )
    if kind == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise ConfigError(
                "For single_step lr_scheduler, OPTIM.STEPSIZE must be an "
                f"integer, but got {type(stepsize).__name__}"
            )
        stepsize = [stepsize if stepsize > 0 else max_epoch]
    elif kind == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise ConfigError(
                "For multi_step lr_scheduler, OPTIM.STEPSIZE must be a list, "
                f"but got {type(stepsize).__name__}"
            )
    else:
        stepsize = ()

    warmup_epoch = optim_cfg.WARMUP_EPOCH
    warmup_type = optim_cfg.WARMUP_TYPE
    if warmup_epoch > 0 and warmup_type not in AVAI_WARMUPS:
        raise ConfigError(
            f"OPTIM.WARMUP_TYPE must be one of {AVAI_WARMUPS}, but got {warmup_type!r}"
        )
    warmup_lr = (
        optim_cfg.WARMUP_CONS_LR if warmup_type == "constant" else optim_cfg.WARMUP_MIN_LR
    )
    return EpochLRScheduler(
        optimizer, kind, max_epoch, stepsize=stepsize, gamma=optim_cfg.GAMMA,
        warmup_epoch=warmup_epoch, warmup_type=warmup_type, warmup_lr=warmup_lr,
        warmup_recount=optim_cfg.WARMUP_RECOUNT,
    )
