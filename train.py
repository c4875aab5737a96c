"""Train or evaluate a prompt learner; the same CLI as CoOp, MaPLe and PromptSRC.

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

A thin CLI: the config is run_config.py's, the output folder's rules run_folder.py's, the
training the trainer's.
"""
import os
import os.path as osp
import sys

from errors import OutputDirError, UserError

try:
    # dassl_compat checks DASSL_ENGINE when it is imported, which is before cli() and its
    # handler; that check runs before torch is imported, so a bad value fails at once.
    from dassl_compat import ENGINE, build_trainer, collect_env_info, set_random_seed, setup_logger
    from run_config import build_parser, check_cfg, extend_cfg, setup_cfg  # noqa: F401
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
    """Start the run's log in its folder (``main`` made it), or one OutputDirError: a log
    that cannot be written (no permission, a read-only or full disk) fails here, before
    anything is built, not with a traceback from the first write."""
    try:
        setup_logger(output_dir)
    except OSError as exc:
        raise _output_dir_error(output_dir, exc) from None


def main(args):
    cfg = setup_cfg(args)
    check_cfg(cfg)
    folder = output_folder(cfg.OUTPUT_DIR)
    if not folder:
        return run(args, cfg)
    try:  # a folder that cannot be made (a file in the way, no permission): one error
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
