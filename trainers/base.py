"""What every prompt trainer shares, so that a trainer file holds only its
prompt structure and loss wiring.

* precision: fp32 on CPU (unless ``PREC_ON_CPU=1``); on CUDA, fp16 with the
  reference's dtype layout (the backbone in OpenAI's fp16, each learner keeping
  the tensors its reference keeps in fp16 in fp16 and the rest in fp32, cast
  where they enter a tower), and amp as fp32 weights under ``torch.autocast``
  with a GradScaler;
* our own scheduler and checkpoint I/O (SPEC decisions 1 and 4): checkpoints
  hold the learnable parameters (and optimizer, scheduler, epoch and RNG
  state), never the frozen CLIP; class-name-dependent buffers are not saved
  and are rebuilt for whatever class set is evaluated;
* a NaN/inf loss stops the run naming the epoch and batch;
* evaluation encodes the class text features once per evaluation;
* the anti-forgetting regularizers (Proxy-FDA, FDA, LDIFS, PACE): whichever
  the config switches on gets the feature sets it asks for, with no code in
  the trainer files (SPEC decision 7).
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
from regularizers import (
    FeatureSets,
    SimilarClassBatchSampler,
    build_regularizers,
    class_similarity,
    needed_features,
    regularization_loss,
)

from .templates import PROMPTSRC_TEMPLATES, clean_classname, dataset_template


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
        self.last = {}

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
        """CLIP logits; in training, the features and logits are kept in ``last`` for the
        regularizers."""
        logits = self.logit_scale.exp() * F.normalize(image_features, dim=-1) \
            @ F.normalize(text_features, dim=-1).t()
        if torch.is_grad_enabled():
            self.last = {"image": image_features, "text": text_features, "logits": logits}
        return logits

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
    #: towers whose features the prompts change; regularizers act on these only
    PROMPTED_TOWERS = ("text",)
    REGULARIZER_NAME = "regularizers"  # checkpoint sub-folder of the regularizers' own state
    #: config nodes of regularizers this trainer cannot feed (a clear error if switched on)
    UNSUPPORTED_REGULARIZERS = ()

    def prompt_depth(self):
        """Number of prompted layers (PACE's noise schedule)."""
        return 1

    def prompted_towers(self):
        return self.PROMPTED_TOWERS

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
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "amp" else None
        self.build_regularizers(classnames)
        if self.cfg.PROXYFDA.SAMPLER.ENABLE:
            self.use_similar_class_sampler(classnames)

    def use_similar_class_sampler(self, classnames):
        """Batches of m similar classes x n images (Proxy-FDA's hard class mining), with
        class similarity from frozen CLIP text features."""
        node = self.cfg.PROXYFDA.SAMPLER
        wrapper = self.train_loader_x.dataset
        labels = [item.label for item in wrapper.data_source]
        template = dataset_template(self.cfg.DATASET.NAME)
        frozen = self.model.backbone.encode_prompts(
            [template.format(clean_classname(c)) for c in classnames])
        sampler = SimilarClassBatchSampler(labels, class_similarity(frozen.cpu()),
                                           node.NUM_CLASSES, node.NUM_IMAGES)
        self.train_loader_x = torch.utils.data.DataLoader(
            wrapper, batch_sampler=sampler, num_workers=self.cfg.DATALOADER.NUM_WORKERS,
            pin_memory=self.device.type == "cuda")
        print(f"Similar-class batches: {sampler.num_classes} classes x {node.NUM_IMAGES} images, "
              f"{len(sampler)} batches per epoch")

    # ---------------------------------------------------------- regularizers
    def build_regularizers(self, classnames):
        for node in self.UNSUPPORTED_REGULARIZERS:
            if self.cfg[node].ENABLE:
                raise ConfigError(
                    f"{node} does not apply to {self.__class__.__name__}; set {node}.ENABLE False "
                    f"(see the README's regularizer table)."
                )
        backbone = self.model.backbone
        embed_dim = backbone.encode_prompts(["a"]).shape[-1]
        regs = build_regularizers(self.cfg, embed_dim=embed_dim, towers=self.prompted_towers(),
                                  prompt_depth=self.prompt_depth())
        self.regularizers = regs
        if not regs:
            return
        print(f"Regularizers: {', '.join(type(r).__name__ for r in regs)}")
        self.reg_needs = needed_features(regs)
        self.reg_module = nn.ModuleList(regs).to(self.device)
        generator = [p for r in regs for p in r.generator_parameters()]
        optim = torch.optim.Adam(generator, lr=self.cfg.PROXYFDA.PROXY.LR) if generator else None
        self.register_model(self.REGULARIZER_NAME, self.reg_module, optim, None)
        self.step_count = 0

        names = [clean_classname(c) for c in classnames]
        if "text_frozen" in self.reg_needs:
            self.text_frozen = self.frozen_text_features(names)
        self.ldifs_layers = {}
        for reg in regs:
            for tower in self.prompted_towers():
                encoder = backbone.text if tower == "text" else backbone.image
                layers = reg.hidden_layers(encoder.num_layers)
                if layers:
                    encoder.capture_layers = layers
                    self.ldifs_layers[tower] = layers
            if reg.perturbs_prompts:
                towers = self.prompted_towers()
                backbone.text.prompt_noise = reg.perturb if "text" in towers else None
                backbone.image.prompt_noise = reg.perturb if "image" in towers else None
        if "text" in self.ldifs_layers:
            template = dataset_template(self.cfg.DATASET.NAME)
            tokens = backbone.tokenize([template.format(n) for n in names])
            with torch.no_grad():
                _, self.text_hidden_frozen = backbone.text(
                    backbone.embed(tokens), tokens, hidden_layers=self.ldifs_layers["text"])

    def frozen_text_features(self, names):
        """Frozen CLIP class text features under the dataset template or the ensemble."""
        if self.cfg.PROXYFDA.TEMPLATES == "ensemble":  # PromptSRC's template ensemble
            feats = torch.stack([
                F.normalize(self.model.backbone.encode_prompts([t.replace("{}", n) for n in names]),
                            dim=-1)
                for t in PROMPTSRC_TEMPLATES])
            return F.normalize(feats.mean(0), dim=-1)
        template = dataset_template(self.cfg.DATASET.NAME)
        return self.model.backbone.encode_prompts([template.format(n) for n in names])

    def regularizer_loss(self, images, labels):
        """Hand the enabled regularizers the feature sets they asked for."""
        needs, last, backbone = self.reg_needs, self.model.last, self.model.backbone
        feats = FeatureSets(labels=labels, logits=last.get("logits"))
        if "text" in needs:
            feats.text = last.get("text")
        if "text_frozen" in needs:
            feats.text_frozen = self.text_frozen
        if "image" in needs:
            feats.image = last.get("image")
        if "image_frozen" in needs:
            feats.image_frozen = last.get("image_frozen")  # a trainer may have it already
            if feats.image_frozen is None:
                with torch.no_grad():
                    feats.image_frozen = backbone.image(images)
        if "hidden" in needs:
            feats.hidden = {}
            if "text" in self.ldifs_layers:
                feats.hidden["text"] = (backbone.text.captured, self.text_hidden_frozen)
            if "image" in self.ldifs_layers:
                with torch.no_grad():
                    _, frozen = backbone.image(images, hidden_layers=self.ldifs_layers["image"])
                feats.hidden["image"] = (backbone.image.captured, frozen)
        if "logits_second_pass" in needs:
            n = max(r.second_pass_size(self.step_count, len(images)) for r in self.regularizers)
            feats.logits_second_pass = self.model(images[:n]) if n else None
        self.step_count += 1
        return regularization_loss(self.regularizers, feats)

    # -------------------------------------------------------------- training
    def compute_loss(self, images, labels):
        """Return ``(loss, summary dict of floats)``; by default cross-entropy on the CLIP
        logits (CoOp, IVLP, MaPLe)."""
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        return loss, self.summary(loss, logits, labels)

    def autocast(self):
        if self.precision == "amp":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with self.autocast():
            loss, summary = self.compute_loss(images, labels)
            if self.regularizers:
                reg_loss, reg_summary = self.regularizer_loss(images, labels)
                loss = loss + reg_loss
                summary = {**summary, **reg_summary}
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
        # The regularizers (and Proxy-FDA's generator) play no part in inference.
        for name in [n for n in self.get_model_names() if n != self.REGULARIZER_NAME]:
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

