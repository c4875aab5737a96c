"""What every prompt trainer shares, so that a trainer file holds only its
prompt structure and loss wiring.

* precision (SPEC decision 5): fp32 on CPU, fp16 as the reference on CUDA,
  amp through ``torch.autocast`` and a GradScaler;
* our own scheduler and checkpoint I/O (SPEC decisions 1 and 4): checkpoints
  hold the learnable parameters (and optimizer, scheduler, epoch and RNG
  state), never the frozen CLIP; class-name-dependent buffers are not saved
  and are rebuilt for whatever class set is evaluated;
* a NaN/inf loss stops the run naming the epoch and batch;
* evaluation encodes the class text features once per evaluation.
"""
import contextlib
import os
import os.path as osp
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone import build_backbone, resolve_precision
from dassl_compat import (
    TrainerX,
    build_lr_scheduler,
    build_optimizer,
    compute_accuracy,
    load_checkpoint,
    load_pretrained_weights,
    save_checkpoint,
)
from errors import ConfigError, TrainingDiverged, UserError


class PromptCLIP(nn.Module):
    """A frozen CLIP plus a learnable ``prompt_learner``.

    Subclasses implement ``encode_text_features()`` (class text features for
    the current class set) and ``encode_image_features(images)``; the default
    ``forward`` turns them into CLIP logits. Inside ``cached_text_features()``
    the text features are computed once and reused.
    """

    def __init__(self, backbone, prompt_learner):
        super().__init__()
        self.backbone = backbone
        self.prompt_learner = prompt_learner
        self._text_cache = None

    @property
    def logit_scale(self):
        return self.backbone.logit_scale

    def encode_text_features(self):
        raise NotImplementedError

    def encode_image_features(self, images):
        return self.backbone.image(images)

    def text_features(self):
        if self._text_cache is not None:
            return self._text_cache
        return self.encode_text_features()

    @contextlib.contextmanager
    def cached_text_features(self):
        with torch.no_grad():
            self._text_cache = self.encode_text_features()
        try:
            yield
        finally:
            self._text_cache = None

    def logits(self, image_features, text_features):
        image_features = F.normalize(image_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1)
        return self.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, images):
        return self.logits(self.encode_image_features(images), self.text_features())


def _rng_state():
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class PromptTrainer(TrainerX):
    """Base trainer. Subclasses set ``METHOD_NODE`` (their cfg.TRAINER node),
    ``CHECKPOINT_NAME`` (the peers' registered model name) and implement
    ``build_custom_clip`` and ``compute_loss``."""

    METHOD_NODE = None
    CHECKPOINT_NAME = "prompt_learner"

    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.METHOD_NODE]

    def check_cfg(self, cfg):
        prec = cfg.TRAINER[self.METHOD_NODE].PREC
        if prec not in ("fp16", "fp32", "amp"):
            raise ConfigError(
                f"TRAINER.{self.METHOD_NODE}.PREC must be fp16, fp32 or amp, got {prec!r}."
            )

    # ----------------------------------------------------------------- model
    def build_custom_clip(self, cfg, classnames, backbone):
        raise NotImplementedError

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        self.precision = resolve_precision(self.method_cfg.PREC, self.device)
        backbone = build_backbone(cfg, self.device, self.precision)
        print(f"Building custom CLIP ({self.__class__.__name__})")
        self.model = self.build_custom_clip(cfg, classnames, backbone)
        learner = self.model.prompt_learner
        if self.precision == "fp16":
            learner.half()
        self.model.to(self.device)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(learner, cfg.MODEL.INIT_WEIGHTS)

        learnable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        assert all(n.startswith("prompt_learner.") for n in learnable), learnable
        n_params = sum(p.numel() for p in learner.parameters() if p.requires_grad)
        print(f"Parameters to be updated: {', '.join(learnable)} ({n_params:,} values)")

        self.optim = build_optimizer(learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.CHECKPOINT_NAME, learner, self.optim, self.sched)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None

    # -------------------------------------------------------------- training
    def compute_loss(self, images, labels):
        """Return ``(loss, summary dict of floats)``."""
        raise NotImplementedError

    def autocast(self):
        if self.precision == "amp":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with self.autocast():
            loss, summary = self.compute_loss(images, labels)
        self.check_finite(loss)
        self.model_zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            for name in self.get_model_names():
                if self._optims[name] is not None:
                    self.scaler.step(self._optims[name])
            self.scaler.update()
        else:
            loss.backward()
            self.model_update()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
            self.after_last_batch()
        return summary

    def after_last_batch(self):
        """Hook run once per epoch right after the LR step (PromptSRC's GPA)."""

    def check_finite(self, loss):
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(
                f"Loss is {loss.item()} at epoch {self.epoch + 1}/{self.max_epoch}, "
                f"batch {self.batch_idx + 1}/{self.num_batches}. Training stopped; the "
                f"last saved checkpoint is untouched. Lower OPTIM.LR or use PREC fp32."
            )

    @staticmethod
    def summary(loss, logits, labels, **extra):
        out = {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}
        out.update({k: float(v) for k, v in extra.items()})
        return out

    # ------------------------------------------------------------ evaluation
    def model_inference(self, images):
        with self.autocast():
            return self.model(images)

    def test(self, split=None):
        with self.model.cached_text_features():
            return super().test(split)

    # ----------------------------------------------------------- checkpoints
    def extra_checkpoint_state(self):
        """Trainer state saved beside the parameters (e.g. PromptSRC's GPA)."""
        return {}

    def load_extra_checkpoint_state(self, state):
        pass

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": self._models[name].state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                    "rng_state": _rng_state(),
                    "extra": self.extra_checkpoint_state(),
                },
                osp.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    def resume_model_if_exist(self, directory):
        names = self.get_model_names()
        pointers = [osp.join(directory, name, "checkpoint") for name in names]
        if not all(osp.isfile(p) for p in pointers):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name, pointer in zip(names, pointers):
            with open(pointer) as f:
                fpath = osp.join(osp.dirname(pointer), f.readline().strip())
            ckpt = load_checkpoint(fpath)
            self._models[name].load_state_dict(ckpt["state_dict"])
            print(f"Loaded model weights from {fpath}")
            if self._optims[name] is not None and ckpt.get("optimizer") is not None:
                self._optims[name].load_state_dict(ckpt["optimizer"])
                print("Loaded optimizer")
            if self._scheds[name] is not None and ckpt.get("scheduler") is not None:
                self._scheds[name].load_state_dict(ckpt["scheduler"])
                print("Loaded scheduler")
            start_epoch = ckpt["epoch"]
            print(f"Previous epoch: {start_epoch}")
            self.load_extra_checkpoint_state(ckpt.get("extra") or {})
            if ckpt.get("rng_state") is not None:
                _set_rng_state(ckpt["rng_state"])
        return start_epoch

    def load_model(self, directory, epoch=None):
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given "
                  "(ignore this if it's done on purpose)")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = osp.join(directory, name, model_file)
            if not osp.exists(path):
                folder = osp.join(directory, name)
                found = sorted(f for f in (os.listdir(folder) if osp.isdir(folder) else [])
                               if f.startswith("model"))
                raise UserError(
                    f"No model at {path}. Check --model-dir and --load-epoch "
                    f"(files found there: {found or 'none'})."
                )
            ckpt = load_checkpoint(path)
            val = ckpt.get("val_result")
            print(f"Load {path} to {name} (epoch={ckpt['epoch']}, "
                  f"val_result={'None' if val is None else f'{val:.1f}'})")
            try:
                self._models[name].load_state_dict(ckpt["state_dict"])
            except RuntimeError as exc:
                raise UserError(
                    f"The checkpoint {path} does not fit this model: "
                    f"{str(exc).splitlines()[0]} ... (were the trainer config and "
                    f"class-specific options the same as in training?)"
                ) from None
            self.load_extra_checkpoint_state(ckpt.get("extra") or {})

