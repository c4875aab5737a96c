"""DataManager and DatasetWrapper (dassl/data/data_manager.py)."""
import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset

from errors import DatasetError, ImageReadError

from ..utils import read_image
from .datasets import build_dataset
from .samplers import build_sampler
from .transforms import build_transform, interpolation_mode

# A bad image can surface in any epoch (or only in the final test); the run stops there, and
# nothing it has already written is touched.
_KEPT = ("the checkpoints saved so far are kept, and a training resumes from the last one.")

def read_image_or_explain(path):
    """``read_image(path)``; a file that has gone or cannot be decoded ends in one
    ``UserError`` naming it and the fix (a DataLoader worker's traceback is cut to it)."""
    try:
        return read_image(path)
    except FileNotFoundError:
        raise DatasetError(
            f"Image {path} has disappeared since the dataset was listed. Restore it (or "
            f"the dataset folder) and rerun the same command: {_KEPT}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, it is this file
        raise ImageReadError(
            f"Image {path} cannot be read ({type(exc).__name__}: {exc}): the file is "
            f"corrupt or not an image. Replace it with a good copy (extract it again from "
            f"the dataset's archive) and rerun the same command: {_KEPT}"
        ) from None


_SPLIT_NAMES = {
    "train_x": "training",
    "train_u": "unlabeled training",
    "val": "validation",
    "test": "test",
}


def build_data_loader(
    cfg,
    sampler_type="SequentialSampler",
    data_source=None,
    batch_size=64,
    n_domain=0,
    n_ins=2,
    tfm=None,
    is_train=True,
    dataset_wrapper=None,
    sampler=None,
    split="train_x",
):
    """A DataLoader as Dassl builds it. ``sampler`` (optional) overrides
    ``sampler_type``; ``split`` only names the split in error messages."""
    if not data_source:
        raise DatasetError(
            f"the {_SPLIT_NAMES.get(split, split)} split of {cfg.DATASET.NAME} is "
            "empty (0 images): check DATASET.ROOT, the dataset's split files and "
            "DATASET.NUM_SHOTS / DATASET.SUBSAMPLE_CLASSES"
        )
    if sampler is None:
        sampler = build_sampler(
            sampler_type, cfg=cfg, data_source=data_source,
            batch_size=batch_size, n_domain=n_domain, n_ins=n_ins,
        )
    wrapper = dataset_wrapper or DatasetWrapper
    loader = torch.utils.data.DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        # A split smaller than one batch still yields one (partial) batch.
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )
    if len(loader) == 0:
        raise DatasetError(
            f"the {_SPLIT_NAMES.get(split, split)} loader of {cfg.DATASET.NAME} "
            f"yields no batch ({len(data_source)} images, batch size {batch_size})"
        )
    return loader


class DataManager:
    """Builds the dataset, the transforms and the loaders from ``cfg``.

    Keeps ``tfm_train``, ``tfm_test`` and ``dataset_wrapper`` so that a
    trainer can rebuild ``train_loader_x`` with its own sampler through
    ``build_data_loader(..., sampler=...)``.
    """

    def __init__(
        self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None
    ):
        dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        x_cfg = cfg.DATALOADER.TRAIN_X
        train_loader_x = build_data_loader(
            cfg, sampler_type=x_cfg.SAMPLER, data_source=dataset.train_x,
            batch_size=x_cfg.BATCH_SIZE, n_domain=x_cfg.N_DOMAIN, n_ins=x_cfg.N_INS,
            tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper,
            split="train_x",
        )

        train_loader_u = None
        if dataset.train_u:
            u_cfg = x_cfg if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
            train_loader_u = build_data_loader(
                cfg, sampler_type=u_cfg.SAMPLER, data_source=dataset.train_u,
                batch_size=u_cfg.BATCH_SIZE, n_domain=u_cfg.N_DOMAIN,
                n_ins=u_cfg.N_INS, tfm=tfm_train, is_train=True,
                dataset_wrapper=dataset_wrapper, split="train_u",
            )

        test_cfg = cfg.DATALOADER.TEST
        val_loader = None
        if dataset.val:
            val_loader = build_data_loader(
                cfg, sampler_type=test_cfg.SAMPLER, data_source=dataset.val,
                batch_size=test_cfg.BATCH_SIZE, tfm=tfm_test, is_train=False,
                dataset_wrapper=dataset_wrapper, split="val",
            )
        test_loader = build_data_loader(
            cfg, sampler_type=test_cfg.SAMPLER, data_source=dataset.test,
            batch_size=test_cfg.BATCH_SIZE, tfm=tfm_test, is_train=False,
            dataset_wrapper=dataset_wrapper, split="test",
        )

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        self.dataset = dataset
        self.tfm_train = tfm_train
        self.tfm_test = tfm_test
        self.dataset_wrapper = dataset_wrapper
        self.train_loader_x = train_loader_x
        self.train_loader_u = train_loader_u
        self.val_loader = val_loader
        self.test_loader = test_loader

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))


class DatasetWrapper(TorchDataset):
    """Item dict: ``label, domain, impath, index, img`` (``img2``... for a list
    of transforms, a list of K views if K_TRANSFORMS > 1, ``img0`` if
    RETURN_IMG0)."""

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"Cannot augment the image {self.k_tfm} times because transform is None"
            )
        to_tensor = [
            T.Resize(cfg.INPUT.SIZE, interpolation=interpolation_mode(cfg)),
            T.ToTensor(),
        ]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        img0 = self._read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                key = "img" if i == 0 else f"img{i + 1}"
                output[key] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _read_image(self, path):
        return read_image_or_explain(path)

    def _transform_image(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views
