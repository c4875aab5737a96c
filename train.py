"""Train or evaluate a prompt learner; the same CLI as CoOp, MaPLe and PromptSRC.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base
"""
import argparse
import difflib
import os
import os.path as osp
import sys

from errors import ConfigError, DatasetError, OutputDirError, UserError

try:
    # dassl_compat checks DASSL_ENGINE when it is imported, which is before cli() and its
    # handler; that check runs before torch is imported, so a bad value fails at once.
    import datasets  # noqa: F401  (registers the datasets)
    import trainers  # noqa: F401  (registers the trainers)
    from dassl_compat import (
        DATASET_REGISTRY,
        ENGINE,
        TRAINER_REGISTRY,
        build_trainer,
        collect_env_info,
        get_cfg_default,
        set_random_seed,
        setup_logger,
    )

    import regularizers
except UserError as exc:
    if __name__ != "__main__":
        raise
    print(f"ERROR: {exc}", file=sys.stderr, flush=True)
    sys.exit(1)

import torch

import run_folder


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


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
    # tower is causal). False: the full context, as the reference repositories (their fp16
    # numbers bit for bit; the text tower several times slower).
    cfg.MODEL.BACKBONE.TRUNCATE_TEXT = True
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    trainers.add_trainer_config(cfg)
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


def output_folder(output_dir):
    """The run's folder: Dassl's setup_logger takes a path ending in .txt or .log as the log
    file itself, in its folder."""
    return osp.dirname(output_dir) if output_dir.endswith((".txt", ".log")) else output_dir


def _output_dir_error(output_dir, exc):
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and exc.filename != output_dir else ""
    return OutputDirError(
        f"Cannot create or write the output directory {output_dir}: {reason}{where}. "
        f"Pass --output-dir with a folder you can write to."
    )


def start_log(output_dir):
    """Create the output folder and start its log, or one OutputDirError: a folder that
    cannot be made (a file in the way, no permission, a read-only or full disk) fails here,
    before anything is built, not with a traceback from the first write."""
    try:
        if output_folder(output_dir):
            os.makedirs(output_folder(output_dir), exist_ok=True)
        setup_logger(output_dir)
    except OSError as exc:
        raise _output_dir_error(output_dir, exc) from None


def main(args):
    cfg = setup_cfg(args)
    check_cfg(cfg)
    folder = output_folder(cfg.OUTPUT_DIR)
    if not folder:
        return run(args, cfg)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise _output_dir_error(cfg.OUTPUT_DIR, exc) from None
    with run_folder.lock(folder):  # one writer per output folder
        if not args.eval_only and not args.no_train:
            run_folder.check_identity(folder, cfg)  # never continue another run
        return run(args, cfg)


def run(args, cfg):
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    start_log(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\nDassl engine: {ENGINE}\n")

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


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


def cli(argv=None):
    args = build_parser().parse_args(argv)
    try:
        main(args)
    except UserError as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        # stdout may be the tee into log.txt; keep the reason in the log too
        if getattr(sys.stdout, "file", None) is not None:
            sys.stdout.file.write(f"ERROR: {exc}\n")
            sys.stdout.file.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
