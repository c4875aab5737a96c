"""What every prompt trainer shares, so that a trainer file holds only its prompt structure
and its loss.

A trainer subclass sets ``METHOD_NODE`` (its cfg.TRAINER node) and ``CHECKPOINT_NAME`` (the
peers' registered model name), implements ``build_custom_clip`` and, when its loss is not
cross-entropy on the CLIP logits, ``step_loss``. Everything else is here, once:

* precision: fp32 on CPU (unless ``PREC_ON_CPU=1``); on CUDA, fp16 with the references'
  dtype layout (the backbone in OpenAI's fp16, each learner keeping in fp16 the tensors its
  reference keeps in fp16 and the rest in fp32, cast where they enter a tower), and amp as
  fp32 weights under ``torch.autocast`` with a GradScaler;
* the training step, in pieces: ``step_loss`` (the method's loss terms and features) ->
  regularizers -> the NaN check -> ``backward_and_update`` (the one piece a method that
  changes the update, e.g. a gradient projection, overrides) -> the LR step and the
  ``after_last_batch`` hook at the end of an epoch;
* the regularizers (``regularizers/``): whichever the config switches on, if this trainer
  ``provides`` what it needs; no regularizer is named here;
* our own scheduler and checkpoint I/O (both engines): checkpoints hold the learnable
  parameters (and optimizer, scheduler, epoch and RNG state), never the frozen CLIP;
* evaluation encodes the class text features once per evaluation.
"""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone import TowerHooks, build_backbone, resolve_precision
from clip_backbone.templates import clean_classname
from builtin_dassl.data.data_manager import read_image_or_explain
from dassl_compat import (
    DataManager,
    DatasetWrapper,
    TrainerX,
    build_lr_scheduler,
    build_optimizer,
    compute_accuracy,
    load_models,
    load_pretrained_weights,
    resume_models,
    save_models,
)
from datasets import dataset_template
from errors import ConfigError, TrainingDiverged, UserError
from regularizers import (FeatureSets, FrozenCLIP, build_regularizers, needed_features,
                          regularization_loss)

from .models import ForwardHooks, StepLoss


class ExplainedImageErrors(DatasetWrapper):
    """The engine's DatasetWrapper, with an image that cannot be read named in one
    ``UserError`` and the fix (the built-in engine's wrapper does this itself; upstream
    Dassl's lets PIL's error through, from a DataLoader worker as a traceback)."""

    def __getitem__(self, idx):
        try:
            return super().__getitem__(idx)
        except UserError:
            raise
        except Exception:
            read_image_or_explain(self.data_source[idx].impath)  # raises if it is the image
            raise


def build_explained_data_loader(trainer):
    """Dassl's ``TrainerX.build_data_loader`` (the same attributes), its datasets wrapped in
    ``ExplainedImageErrors``."""
    dm = DataManager(trainer.cfg, dataset_wrapper=ExplainedImageErrors)
    trainer.train_loader_x = dm.train_loader_x
    trainer.train_loader_u = dm.train_loader_u
    trainer.val_loader = dm.val_loader
    trainer.test_loader = dm.test_loader
    trainer.num_classes = dm.num_classes
    trainer.num_source_domains = dm.num_source_domains
    trainer.lab2cname = dm.lab2cname
    trainer.dm = dm


def with_batch_sampler(loader, batch_sampler):
    """The engine's train loader, drawing its batches from ``batch_sampler``: same dataset
    wrapper (transforms), workers and pinning. (Dassl's DataManager has no sampler hook a
    plug-in could fill, in either engine; this is the one place the loader is re-made.)"""
    return torch.utils.data.DataLoader(
        loader.dataset, batch_sampler=batch_sampler, num_workers=loader.num_workers,
        pin_memory=loader.pin_memory)


class PromptTrainer(TrainerX):
    """Base trainer; see the module docstring."""

    METHOD_NODE = None
    CHECKPOINT_NAME = "prompt_learner"
    #: towers whose features the prompts change; regularizers act on these only
    PROMPTED_TOWERS = ("text",)

    def prompt_depth(self):
        """Number of prompted layers (PACE's noise schedule)."""
        return 1

    def prompted_towers(self):
        return self.PROMPTED_TOWERS

    def provides(self):
        """The ``FeatureSets`` fields this trainer can hand a regularizer: for each prompted
        tower its prompted and frozen features, hidden states (its towers take hooks) and a
        second, noisy pass (its learned prompts go through the hooks' noise)."""
        provided = {"logits", "labels", "hidden", "logits_second_pass"}
        for tower in self.prompted_towers():
            provided |= {tower, f"{tower}_frozen"}
        return frozenset(provided)

    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.METHOD_NODE]

    def check_cfg(self, cfg):
        prec = cfg.TRAINER[self.METHOD_NODE].PREC
        if prec not in ("fp16", "fp32", "amp"):
            raise ConfigError(
                f"TRAINER.{self.METHOD_NODE}.PREC must be fp16, fp32 or amp, got {prec!r}."
            )
        if cfg.OPTIM.MAX_EPOCH < 1:  # it would "finish" at once and test untrained prompts
            raise ConfigError(f"OPTIM.MAX_EPOCH must be >= 1, got {cfg.OPTIM.MAX_EPOCH}.")

    # ----------------------------------------------------------------- data
    def build_data_loader(self):
        build_explained_data_loader(self)

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

    # ---------------------------------------------------------- regularizers
    def build_regularizers(self, classnames):
        backbone = self.model.backbone
        frozen = FrozenCLIP(backbone, [clean_classname(c) for c in classnames],
                            dataset_template(self.cfg.DATASET.NAME))
        regs = build_regularizers(
            self.cfg, embed_dim=backbone.embed_dim, towers=self.prompted_towers(),
            prompt_depth=self.prompt_depth(), frozen=frozen, provides=self.provides(),
            trainer=type(self).__name__, batch_size=self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
        self.regularizers = nn.ModuleList(regs).to(self.device)
        self.regularizer_names = []
        if not regs:
            return
        print(f"Regularizers: {', '.join(type(r).__name__ for r in regs)}")
        for reg in regs:
            optim = reg.optimizer()
            if optim is not None:  # its own parameters: trained and checkpointed with it
                self.register_model(reg.name, reg, optim, None)
                self.regularizer_names.append(reg.name)
        labels = [item.label for item in self.train_loader_x.dataset.data_source]
        samplers = [s for s in (reg.batch_sampler(labels) for reg in regs) if s is not None]
        if len(samplers) > 1:
            raise ConfigError("Two regularizers want to choose the training batches; "
                              "switch one sampler off.")
        if samplers:
            self.train_loader_x = with_batch_sampler(self.train_loader_x, samplers[0])
        towers = {"text": backbone.text, "image": backbone.image}
        self.hidden_layers = {
            tower: sorted({i for reg in regs for i in reg.hidden_layers(towers[tower].num_layers)})
            for tower in self.prompted_towers()}
        self.perturber = next((reg for reg in regs if reg.perturbs_prompts), None)
        self.regularizer_needs = needed_features(regs)
        self.step_count = 0

    def forward_hooks(self, hidden=True):
        """What the regularizers ask of this step's prompted forward pass."""
        if not self.regularizers:
            return ForwardHooks()
        noise = self.perturber.perturb if self.perturber is not None else None
        hooks = {t: TowerHooks(hidden_layers=tuple(self.hidden_layers[t]) if hidden else (),
                               prompt_noise=noise) for t in self.prompted_towers()}
        return ForwardHooks(**hooks)

    def regularizer_loss(self, images, labels, step, hooks):
        """Hand the regularizers the feature sets they asked for (in one FeatureSets)."""
        needs, features, backbone = self.regularizer_needs, step.features, self.model.backbone
        feats = FeatureSets(labels=labels, logits=features.logits)
        if "text" in needs:
            feats.text = features.text
        if "image" in needs:
            feats.image = features.image
        if "image_frozen" in needs:
            feats.image_frozen = features.image_frozen
            if feats.image_frozen is None:
                with torch.no_grad():
                    feats.image_frozen = backbone.image(images)
        if "hidden" in needs:
            feats.hidden = {}
            if "text" in self.prompted_towers():  # frozen side: the regularizer's own
                feats.hidden["text"] = (hooks.text.hidden, None)
            if "image" in self.prompted_towers():
                frozen = TowerHooks(hidden_layers=tuple(self.hidden_layers["image"]))
                with torch.no_grad():
                    backbone.image(images, hooks=frozen)
                feats.hidden["image"] = (hooks.image.hidden, frozen.hidden)
        if "logits_second_pass" in needs:
            n = max(r.second_pass_size(self.step_count, len(images)) for r in self.regularizers)
            feats.logits_second_pass = self.model.forward_features(
                images[:n], self.forward_hooks(hidden=False)).logits if n else None
        self.step_count += 1
        return regularization_loss(self.regularizers, feats)

    # -------------------------------------------------------------- training
    def step_loss(self, images, labels, hooks):
        """The method's loss on one batch (a ``StepLoss``); by default cross-entropy on the
        CLIP logits (CoOp, CoCoOp, IVLP, MaPLe)."""
        features = self.model.forward_features(images, hooks)
        return StepLoss({"ce": F.cross_entropy(features.logits, labels)}, features)

    def compute_loss(self, images, labels):
        """``(loss, summary)`` of one batch, without regularizers or an update."""
        step = self.step_loss(images, labels, ForwardHooks())
        loss = step.total()
        return loss, self.summary(loss, step.features.logits, labels, **step.log)

    def autocast(self):
        if self.precision == "amp":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        hooks = self.forward_hooks()
        with self.autocast():
            step = self.step_loss(images, labels, hooks)
            terms, reg_summary = dict(step.terms), {}
            if self.regularizers:
                terms["regularizers"], reg_summary = self.regularizer_loss(images, labels, step,
                                                                           hooks)
        loss = StepLoss(terms, step.features).total()
        self.check_finite(loss)
        self.backward_and_update(loss, terms)
        summary = self.summary(loss, step.features.logits, labels, **step.log, **reg_summary)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
            self.after_last_batch()
        return summary

    def backward_and_update(self, loss, terms):
        """Backward and one step of every optimizer (the prompt learner's and the
        regularizers'); under amp with the GradScaler. ``terms`` are the loss's parts, for a
        method that treats them apart (e.g. ProGrad's gradient projection)."""
        self.model_zero_grad()
        if self.scaler is None:
            loss.backward()
            self.model_update()
            return
        self.scaler.scale(loss).backward()
        for name in self.get_model_names():
            if self._optims[name] is not None:
                self.scaler.step(self._optims[name])
        self.scaler.update()

    def after_last_batch(self):
        """Hook run once per epoch right after the LR step (PromptSRC's GPA)."""

    def check_finite(self, loss):
        if not torch.isfinite(loss).all():
            fix = "Lower OPTIM.LR" + ("" if self.precision == "fp32" else " or use PREC fp32")
            raise TrainingDiverged(
                f"Loss is {loss.item()} at epoch {self.epoch + 1}/{self.max_epoch}, "
                f"batch {self.batch_idx + 1}/{self.num_batches}. Training stopped; the "
                f"last saved checkpoint is untouched. {fix}."
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

    # Ours under either engine (upstream Dassl's pickles what torch >= 2.6 will not load).
    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        save_models(self, epoch, directory, is_best, val_result, model_name)

    def resume_model_if_exist(self, directory):
        return resume_models(self, directory)

    def load_model(self, directory, epoch=None):
        # The regularizers (and Proxy-FDA's generator) play no part in inference.
        load_models(self, directory, epoch,
                    [n for n in self.get_model_names() if n not in self.regularizer_names])
