"""What every prompt trainer shares, so that a trainer file holds only its prompt structure
and its loss.

A trainer subclass sets ``METHOD_NODE`` (its cfg.TRAINER node) and ``CHECKPOINT_NAME`` (the
peers' registered model name), implements ``build_custom_clip`` and, when its loss is not
cross-entropy on the CLIP logits, ``step_loss``; a method that changes the update rather than
the loss (ProGrad's gradient projection) overrides ``adjust_gradients``. A reference that
trains for a number of iterations rather than epochs (CLIP-LoRA) sets ``LR_STEP = "batch"``,
overrides ``build_scheduler`` and wraps its train loader in ``IterationEpochs``. It registers
itself with its config node (``trainers.registry.register_trainer``). Everything else is here,
once:

* precision: fp32 on CPU (unless ``PREC_ON_CPU=1``); on CUDA, fp16 with the references'
  dtype layout (the backbone in OpenAI's fp16, each learner keeping in fp16 the tensors its
  reference keeps in fp16 and the rest in fp32, cast where they enter a tower), and amp as
  fp32 weights under ``torch.autocast`` with a GradScaler;
* the training step: ``step_loss`` (the method's loss terms and features) -> the
  regularizers' loss, from the features they need, produced by name
  (``regularizers/features.py``) -> the NaN check -> ``backward_and_update`` (the method's
  gradients, through ``adjust_gradients``, plus the regularizers', then one step of every
  optimizer, under the amp scaler) -> the LR step and the ``after_last_batch`` hook at the end
  of an epoch. ``forward_backward`` and ``backward_and_update`` are the base's own: a trainer
  that overrides them is refused, because the regularizers and the scaler would be skipped;
* the extension contract, checked when the run is built: each regularizer switched on gets
  every feature it needs, on one probe batch through this trainer's own step, or the run is
  refused with the reason; no regularizer is named here;
* our own scheduler and checkpoint I/O (both engines): checkpoints hold the learnable
  parameters (and optimizer, scheduler, epoch and RNG state), never the frozen CLIP;
* evaluation encodes the class text features once per evaluation, and takes the image
  features of a frozen image tower from the feature cache (``feature_cache.py``).
* a plug-in used at inference (``Regularizer.used_at_inference``, DePT's head) is loaded with
  the prompts and turns the logits into the reported ones (``inference_logits``).
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
from regularizers import (FeatureUnavailable, FrozenCLIP, StepContext, build_regularizers,
                          needed_features, produce_features, regularization_loss)

from . import feature_cache
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


class IterationEpochs:
    """A train loader whose every epoch is ``num_batches`` batches (iterations), drawn from
    consecutive passes over the training set: each pass a fresh shuffle, its last batch
    smaller where the batch size does not divide the set (as the loops of references that
    train for a number of iterations, CLIP-LoRA's). The pass running when an epoch ends is
    dropped, so an epoch depends only on the random state it starts with, and a resumed run
    is the uninterrupted one. A loader with its own batch sampler (a regularizer's) is
    passed through as it is; a plain one is rebuilt without Dassl's ``drop_last``."""

    def __init__(self, loader, num_batches):
        if num_batches < 1:
            raise ConfigError(f"An epoch needs at least one iteration, got {num_batches}.")
        if loader.batch_size is not None and loader.drop_last:
            loader = torch.utils.data.DataLoader(
                loader.dataset, batch_size=loader.batch_size, shuffle=True, drop_last=False,
                num_workers=loader.num_workers, pin_memory=loader.pin_memory)
        self.loader, self.num_batches, self.dataset = loader, int(num_batches), loader.dataset

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        produced = 0
        while True:
            for batch in self.loader:
                yield batch
                produced += 1
                if produced == self.num_batches:
                    return


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
    #: when the LR scheduler steps: "epoch" (Dassl: once, after the last batch of an epoch)
    #: or "batch" (after every update: a schedule counted in iterations)
    LR_STEP = "epoch"
    #: the precisions whose loss is scaled for the backward pass (``torch.amp.GradScaler``,
    #: which also skips a step whose gradients overflow): amp; fp16 too for a learner whose
    #: reference scales its fp16 loss
    LOSS_SCALING = ("amp",)

    def prompt_depth(self):
        """Number of prompted layers (PACE's noise schedule)."""
        return 1

    def prompted_towers(self):
        """The towers whose features depend on what this trainer learns (regularizers act on
        these only)."""
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
        if cfg.OPTIM.MAX_EPOCH < 1:  # it would "finish" at once and test untrained prompts
            raise ConfigError(f"OPTIM.MAX_EPOCH must be >= 1, got {cfg.OPTIM.MAX_EPOCH}.")
        for name in ("forward_backward", "backward_and_update"):
            if getattr(type(self), name) is not getattr(PromptTrainer, name):
                raise ConfigError(
                    f"{type(self).__name__} overrides {name}, which would leave out the "
                    f"regularizers, their optimizers and the amp scaler. Override step_loss "
                    f"(to change the loss) or adjust_gradients (to change the gradients) "
                    f"instead.")

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
        self.sched = self.build_scheduler(self.optim)
        self.register_model(self.CHECKPOINT_NAME, learner, self.optim, self.sched)
        scaled = self.precision in self.LOSS_SCALING
        self.scaler = torch.amp.GradScaler(self.device.type) if scaled else None
        self.build_regularizers(classnames)

    def build_scheduler(self, optim):
        """The prompt learner's LR scheduler: Dassl's, from cfg.OPTIM (stepped per epoch)."""
        return build_lr_scheduler(optim, self.cfg.OPTIM)

    def hand_template(self):
        """The hand-crafted prompt of the frozen class text features (``text_frozen``, and
        the regularizers' own frozen class features and hidden states): the dataset's. A
        learner whose own text input is another hand-crafted prompt returns that one, so
        that the frozen side reads the same words."""
        return dataset_template(self.cfg.DATASET.NAME)

    # ---------------------------------------------------------- regularizers
    def build_regularizers(self, classnames):
        backbone = self.model.backbone
        self.frozen_clip = FrozenCLIP(backbone, [clean_classname(c) for c in classnames],
                                      self.hand_template())
        self._frozen_text = None
        regs = build_regularizers(
            self.cfg, embed_dim=backbone.embed_dim, towers=self.prompted_towers(),
            prompt_depth=self.prompt_depth(), frozen=self.frozen_clip,
            batch_size=self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
        self.regularizers = nn.ModuleList(regs).to(self.device)
        self.regularizer_names = []  # models that serve training only (not loaded to evaluate)
        if not regs:
            return
        print(f"Regularizers: {', '.join(type(r).__name__ for r in regs)}")
        towers = {"text": backbone.text, "image": backbone.image}
        self.hidden_layers = {
            tower: sorted({i for reg in regs for i in reg.hidden_layers(towers[tower].num_layers)})
            for tower in self.prompted_towers()}
        self.perturber = next((reg for reg in regs if reg.perturbs_prompts), None)
        self.regularizer_needs = needed_features(regs)
        self.step_count = 0
        self.check_regularizers()
        for reg in regs:
            optim = reg.optimizer()
            if optim is not None:  # its own parameters: trained and checkpointed with it
                self.register_model(reg.name, reg, optim, reg.scheduler(optim))
                if not reg.used_at_inference:
                    self.regularizer_names.append(reg.name)
        labels = [item.label for item in self.train_loader_x.dataset.data_source]
        samplers = [s for s in (reg.batch_sampler(labels) for reg in regs) if s is not None]
        if len(samplers) > 1:
            raise ConfigError("Two regularizers want to choose the training batches; "
                              "switch one sampler off.")
        if samplers:
            self.train_loader_x = with_batch_sampler(self.train_loader_x, samplers[0])

    def frozen_text_features(self):
        """Frozen CLIP class text features under the dataset template (the ``text_frozen``
        feature), computed once per run."""
        if self._frozen_text is None:
            self._frozen_text = self.frozen_clip.text_features()
        return self._frozen_text

    def check_regularizers(self):
        """The extension contract, checked before anything trains: one probe batch (two blank
        images) through this trainer's own ``step_loss`` with the regularizers' hooks, in
        train mode, without gradients and without touching any random number generator's
        state. Each regularizer must get every feature it needs, each prompted tower must
        return the hidden states asked for and pass its learned prompts through the prompt
        noise of a regularizer that perturbs them, and each regularizer's ``forward`` must run
        on what it gets. Otherwise the run is refused here, with the reason."""
        trainer = type(self).__name__
        size = tuple(self.cfg.INPUT.SIZE)
        images = torch.zeros(2, 3, *size, device=self.device)
        labels = torch.zeros(2, dtype=torch.long, device=self.device)
        noised = {}

        def counting(tower, noise):
            def count(prompt, layer, batch_size, *args, **kwargs):
                noised[tower] = noised.get(tower, 0) + 1
                return noise(prompt, layer, batch_size, *args, **kwargs)
            return count

        modes = [(m, m.training) for top in (self.model, self.regularizers)
                 for m in top.modules()]
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad(), self.autocast():
                self.model.train()
                self.regularizers.train()
                hooks = self.forward_hooks()
                for tower in self.prompted_towers():
                    tower_hooks = getattr(hooks, tower)
                    if tower_hooks.prompt_noise is not None:
                        tower_hooks.prompt_noise = counting(tower, tower_hooks.prompt_noise)
                step = self.weighted_step_loss(images, labels, hooks)
                ctx = StepContext(self, images, labels, step.features, hooks)
                for reg in self.regularizers:
                    for name in sorted(reg.needs):
                        try:
                            ctx.get(name)
                        except FeatureUnavailable as exc:
                            raise ConfigError(self._refusal(reg, trainer, f"it needs the feature "
                                                            f"{name!r}, and {exc}")) from None
                    if reg.perturbs_prompts:
                        silent = [t for t in self.prompted_towers() if not noised.get(t)]
                        if silent:
                            raise ConfigError(self._refusal(
                                reg, trainer, f"no learned prompt of its {' or '.join(silent)} "
                                f"tower passes through the prompt-noise hook (with this "
                                f"config, e.g. a context split around the class name)"))
                feats = produce_features(ctx, self.regularizer_needs)
                for reg in self.regularizers:
                    try:
                        reg(feats)
                    except (ConfigError, FeatureUnavailable):
                        raise
                    except Exception as exc:  # noqa: BLE001  (refused at build, with the cause)
                        raise ConfigError(self._refusal(
                            reg, trainer, f"on a probe batch its forward failed with "
                            f"{type(exc).__name__}: {exc}")) from None
        finally:
            for m, mode in modes:
                m.training = mode

    @staticmethod
    def _refusal(reg, trainer, reason):
        return (f"{reg.node} does not apply to {trainer}: {reason}. Set {reg.node}.ENABLE False "
                f"(see the README's regularizer table).")

    def forward_hooks(self, hidden=True):
        """What the regularizers ask of this step's prompted forward pass."""
        if not self.regularizers:
            return ForwardHooks()
        noise = self.perturber.perturb if self.perturber is not None else None
        hooks = {t: TowerHooks(hidden_layers=tuple(self.hidden_layers[t]) if hidden else (),
                               prompt_noise=noise) for t in self.prompted_towers()}
        return ForwardHooks(**hooks)

    def regularizer_loss(self, images, labels, step, hooks):
        """The regularizers' summed loss and summary, from the features they need, each made
        by its registered producer (``regularizers/features.py``)."""
        ctx = StepContext(self, images, labels, step.features, hooks)
        feats = produce_features(ctx, self.regularizer_needs)
        self.step_count += 1
        return regularization_loss(self.regularizers, feats)

    # -------------------------------------------------------------- training
    def step_loss(self, images, labels, hooks):
        """The method's loss on one batch (a ``StepLoss``); by default cross-entropy on the
        CLIP logits (CoOp, CoCoOp, IVLP, MaPLe)."""
        features = self.model.forward_features(images, hooks)
        return StepLoss({"ce": F.cross_entropy(features.logits, labels)}, features)

    def weighted_step_loss(self, images, labels, hooks):
        """``step_loss``, its terms multiplied by the factors regularizers ask for
        (``Regularizer.method_term_weights``; none of the shipped regularizers asks)."""
        step = self.step_loss(images, labels, hooks)
        for reg in self.regularizers:
            for name, weight in reg.method_term_weights().items():
                if name not in step.terms:
                    raise ConfigError(self._refusal(
                        reg, type(self).__name__, f"it weights the method's loss term "
                        f"{name!r}, and this trainer's loss has {', '.join(step.terms)}"))
                step.terms[name] = weight * step.terms[name]
        return step

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
        reg_loss, reg_summary = None, {}
        with self.autocast():
            step = self.weighted_step_loss(images, labels, hooks)
            if self.regularizers:
                reg_loss, reg_summary = self.regularizer_loss(images, labels, step, hooks)
        loss = step.total() if reg_loss is None else step.total() + reg_loss
        self.check_finite(loss)
        self.backward_and_update(loss, step, reg_loss)
        summary = self.summary(loss, step.features.logits, labels, **step.log, **reg_summary)
        last_batch = (self.batch_idx + 1) == self.num_batches
        if last_batch or self.LR_STEP == "batch":
            self.update_lr()
        if last_batch:
            self.after_last_batch()
        return summary

    def learnable_parameters(self):
        """The prompt learner's parameters that are trained (``adjust_gradients`` order)."""
        return [p for p in self.model.prompt_learner.parameters() if p.requires_grad]

    def adjust_gradients(self, grads):
        """The hook of a method that changes the update, not the loss (ProGrad's projection).

        ``grads`` maps each of ``step_loss``'s terms to its gradients w.r.t.
        ``learnable_parameters()`` (a tuple, zeros where a term does not reach a parameter);
        return the gradients to use instead of their sum. The regularizers' gradients are added
        to what this returns, their own parameters get theirs, and every optimizer steps (under
        amp, the scale is taken off before this hook and put back after). The base does not
        call it unless a trainer overrides it (one backward pass then serves the whole loss)."""
        raise NotImplementedError

    def adjusts_gradients(self):
        return type(self).adjust_gradients is not PromptTrainer.adjust_gradients

    def backward_and_update(self, loss, step, reg_loss):
        """Gradients of ``loss`` (the method's terms, through ``adjust_gradients`` if the
        method changes them, plus the regularizers'), then one step of every registered
        optimizer (the prompt learner's and the regularizers' own), under the amp scaler."""
        self.model_zero_grad()
        scaler = self.scaler
        scaled = scaler.scale if scaler is not None else (lambda t: t)
        if not self.adjusts_gradients():
            scaled(loss).backward()
        else:
            params = self.learnable_parameters()
            factor = float(scaler.get_scale()) if scaler is not None else 1.0
            grads = {}
            for name, term in step.terms.items():
                got = torch.autograd.grad(scaled(term), params, retain_graph=True,
                                          allow_unused=True)
                grads[name] = tuple(torch.zeros_like(p) if g is None else g / factor
                                    for p, g in zip(params, got))
            adjusted = self.adjust_gradients(grads)
            for p, g in zip(params, adjusted):
                p.grad = (g * factor).to(p.dtype)
            if reg_loss is not None:  # the regularizers' gradients add to the adjusted ones
                scaled(reg_loss).backward()
        if scaler is None:
            self.model_update()
            return
        for name in self.get_model_names():
            if self._optims[name] is not None:
                scaler.step(self._optims[name])
        scaler.update()

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
    def image_features_frozen(self):
        """Whether this learner's image features depend on nothing it learns, so that an
        evaluation may reuse cached ones (``trainers/feature_cache.py``). By default: its
        prompts do not reach the image tower (``prompted_towers()``, the statement the
        regularizers rely on too). A learner that changes the image tower in any other way
        (adapters, LoRA) lists "image" there or overrides this."""
        return "image" not in self.prompted_towers()

    def model_inference(self, images):
        with self.autocast():
            image = feature_cache.image_features(self, images)
            logits = self.model.logits_from_image_features(image)
            for reg in self.regularizers:
                if reg.used_at_inference:
                    logits = reg.inference_logits(logits, image)
            return logits

    def test(self, split=None):
        self.set_model_mode("eval")  # before the class text is encoded (a learner's dropout)
        with self.model.cached_text_features(), feature_cache.evaluation(self, split):
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
        # The regularizers (and Proxy-FDA's generator) play no part in inference; a plug-in
        # ``used_at_inference`` is loaded with the prompts.
        load_models(self, directory, epoch,
                    [n for n in self.get_model_names() if n not in self.regularizer_names])
