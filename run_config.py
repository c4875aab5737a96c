"""The run's yacs config, as train.py builds it from its command line: Dassl's defaults, the
keys the peers' train.py adds and ours (trainers, datasets, regularizers), the config files
and the trailing KEY VALUE options; and the checks a run's config must pass.

    from run_config import build_parser, setup_cfg
    cfg = setup_cfg(build_parser().parse_args([...train.py arguments...]))

Importing this module registers the trainers, datasets and regularizers (in Dassl's
registries when upstream Dassl is used).
"""
import argparse
import difflib
import os.path as osp

import datasets  # noqa: F401  (registers the datasets)
import regularizers
import trainers  # noqa: F401  (registers the trainers)
from dassl_compat import DATASET_REGISTRY, TRAINER_REGISTRY, get_cfg_default
from errors import ConfigError, DatasetError


def reset_cfg(cfg, args):
    if args.root:
        cfg.DATASET.ROOT = osp.expanduser(args.root)
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg):
    """Add the keys the peers' train.py adds, plus ours."""
    # A pretrained tag (open_clip) instead of Dassl's boolean; "" = the default
    # for the name ("openai" for Dassl/OpenAI names).
    cfg.MODEL.BACKBONE.PRETRAINED = ""
    # Activation checkpointing of the text tower's blocks: the same gradients, with the
    # activations recomputed in the backward pass instead of kept (many classes, small GPU).
    cfg.MODEL.BACKBONE.TEXT_CHECKPOINTING = False
    # Run the text tower only up to the longest end-of-text token of the prompts (exact: the
    # tower is causal; in fp16 it rounds differently, README "Fidelity to the reference
    # code"). False: the full context, as the reference repositories (their fp16 numbers bit
    # for bit on the same kernels; the text tower several times slower).
    cfg.MODEL.BACKBONE.TRUNCATE_TEXT = True
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    trainers.add_trainer_config(cfg)
    trainers.add_feature_cache_config(cfg)
    datasets.add_dataset_config(cfg)
    regularizers.add_regularizer_config(cfg)


def _all_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _all_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _merge(cfg, merge, source):
    """Run a yacs merge, turning its errors into one ConfigError."""
    try:
        merge()
    except (KeyError, ValueError, AssertionError, TypeError) as exc:
        message = str(exc.args[0]) if exc.args else str(exc)
        if "Non-existent" in message:  # KeyError from files, AssertionError from lists
            key = message.split(":", 1)[1].strip()
            close = difflib.get_close_matches(key, list(_all_keys(cfg)), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"Unknown config key {key} in {source}.{hint}") from None
        raise ConfigError(f"Invalid config in {source}: {message}") from None


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    for path in (args.dataset_config_file, args.config_file):
        if path:
            if not osp.isfile(path):
                raise ConfigError(f"Config file not found: {path}")
            _merge(cfg, lambda: cfg.merge_from_file(path), path)
    reset_cfg(cfg, args)
    if len(args.opts) % 2:
        raise ConfigError(
            f"Trailing options must be KEY VALUE pairs; got an odd number: {args.opts}"
        )
    _merge(cfg, lambda: cfg.merge_from_list(args.opts), "the command-line options")
    cfg.freeze()
    return cfg


def _check_name(kind, name, available, fix):
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" (do you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"Unknown {kind} {name!r}{hint}. Available: {', '.join(sorted(available))}. {fix}"
        )


def _check_batch_sizes(cfg):
    for loader in ("TRAIN_X", "TEST"):
        size = cfg.DATALOADER[loader].BATCH_SIZE
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(
                f"DATALOADER.{loader}.BATCH_SIZE must be a positive integer, got {size!r}; "
                f"set it in the config file or pass e.g. DATALOADER.{loader}.BATCH_SIZE 4."
            )


def check_cfg(cfg):
    _check_batch_sizes(cfg)
    _check_name("trainer", cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names(),
                "Pass one with --trainer.")
    _check_name("dataset", cfg.DATASET.NAME, DATASET_REGISTRY.registered_names(),
                "Set DATASET.NAME in the --dataset-config-file.")
    if not cfg.DATASET.ROOT:
        raise DatasetError("No dataset root given; pass --root /path/to/datasets.")
    if not osp.isdir(cfg.DATASET.ROOT):
        raise DatasetError(
            f"Dataset root {cfg.DATASET.ROOT} does not exist; pass --root with the folder "
            f"that holds the datasets (see DATASETS.md)."
        )


def build_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="",
                        help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1,
                        help="only positive value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="",
                        help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="",
                        help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int,
                        help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line")
    return parser
