"""Trainer classes with Dassl 0.6.3's lifecycle and log lines (dassl/engine).

``train()``: before_train (resume, tensorboard, timer) -> per epoch
before_epoch, run_epoch, after_epoch (checkpoint) -> after_train
("Finish training", final test, "Elapsed: h:mm:ss").
"""
import datetime
import os.path as osp
import time
from collections import OrderedDict

import numpy as np
import torch
from tqdm import tqdm

from errors import TrainingDiverged

from .checkpoint import load_models, resume_models, save_models
from .data import DataManager
from .evaluation import build_evaluator
from .utils import AverageMeter, MetricMeter, Registry, check_availability, mkdir_if_missing, tolist_if_not

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError:  # tensorboard not installed: train without a writer
    SummaryWriter = None

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    check_availability(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


class TrainerBase:
    """Registered models (with their optimizer and scheduler) and the loop."""

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None

    def register_model(self, name="model", model=None, optim=None, sched=None):
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        assert name not in self._models, "Found duplicate model names"
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = tolist_if_not(names)
        for name in names:
            assert name in names_real
        return names

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        save_models(self, epoch, directory, is_best, val_result, model_name)

    def resume_model_if_exist(self, directory):
        """Resume every registered model from the newest epoch all of them have under
        ``<directory>/<name>/``; return the epoch to start from (0 if none)."""
        return resume_models(self, directory)

    def load_model(self, directory, epoch=None):
        load_models(self, directory, epoch)

    def set_model_mode(self, mode="train", names=None):
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(mode)

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss):
        if not torch.isfinite(loss).all():
            raise TrainingDiverged("Loss is infinite or NaN!")

    def init_writer(self, log_dir):
        if self._writer is None and SummaryWriter is not None:
            print(f"Initialize tensorboard (log_dir={log_dir})")
            mkdir_if_missing(log_dir)
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag, scalar_value, global_step=None):
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch, max_epoch):
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss):
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss, names=None):
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Data loaders, model, evaluator, and the generic train/test steps."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg):
        """Assert trainer-specific config requirements (optional)."""

    def build_data_loader(self):
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self):
        # Dassl builds a SimpleNet from its backbone registry here; this engine
        # has no backbone registry, so every trainer builds its own model.
        raise NotImplementedError(
            f"{type(self).__name__} must implement build_model() and register "
            "its model with self.register_model(name, model, optim, sched)"
        )

    def train(self):
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self):
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_train(self):
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        self.close_writer()

    def after_epoch(self):
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0

        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(
                    self.epoch, self.output_dir, val_result=curr_result,
                    model_name="model-best.pth.tar",
                )
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    @torch.no_grad()
    def test(self, split=None):
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"  # also when there is no val loader
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")

        for batch in tqdm(data_loader):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)

        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None):
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Trains on labeled data only (``train_loader_x``)."""

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ

        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            meet_freq = (self.batch_idx + 1) % print_freq == 0
            if meet_freq or self.num_batches < print_freq:
                nb_remain = self.num_batches - self.batch_idx - 1
                nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = datetime.timedelta(seconds=int(batch_time.avg * nb_remain))
                print(
                    f"epoch [{self.epoch + 1}/{self.max_epoch}] "
                    f"batch [{self.batch_idx + 1}/{self.num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) "
                    f"data {data_time.val:.3f} ({data_time.avg:.3f}) "
                    f"{losses} "
                    f"lr {self.get_current_lr():.4e} "
                    f"eta {eta}"
                )

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def parse_batch_train(self, batch):
        return (
            batch["img"].to(self.device),
            batch["label"].to(self.device),
            batch["domain"].to(self.device),
        )
