"""Time one training step with and without each regularizer (a benchmark, not a test).

    python tools/time_regularizers.py --trainers MaPLe PromptSRC --steps 3

Builds each trainer on ViT-B/16-sized random weights (open_clip ViT-B-16-quickgelu,
224 px), fp32, batch 4, on a generated image-folder dataset, and times
``forward_backward`` on one fixed batch: the median of ``--steps`` steps after one
warm-up step. All variants of a trainer are timed in one process, one after the
other, so their ratios compare like with like. Prints a Markdown table.
"""
import argparse
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIGS = {
    "CoOp": "configs/trainers/CoOp/vit_b16_ctxv1.yaml",
    "MaPLe": "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptSRC": "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "IVLP": "configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
}
VARIANTS = {
    "none": [],
    "Proxy-FDA": ["PROXYFDA.ENABLE", "True"],
    "Proxy-FDA (text set only)": ["PROXYFDA.ENABLE", "True", "PROXYFDA.IMAGE_WEIGHT", "0.0"],
    "FDA": ["PROXYFDA.ENABLE", "True", "PROXYFDA.PROXY.ENABLE", "False"],
    "LDIFS": ["LDIFS.ENABLE", "True"],
    "PACE": ["PACE.ENABLE", "True"],
}


def time_variant(train, build_trainer, root, out, trainer, extra, steps):
    args = train.build_parser().parse_args([
        "--root", root, "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/image_folder.yaml",
        "--config-file", CONFIGS[trainer], "--output-dir", out,
        "MODEL.BACKBONE.NAME", "ViT-B-16-quickgelu", "MODEL.BACKBONE.PRETRAINED", "random",
        f"TRAINER.{train_node(trainer)}.PREC", "fp32", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATASET.SUBSAMPLE_CLASSES", "base", *extra])
    t = build_trainer(train.setup_cfg(args))
    batch = next(iter(t.train_loader_x))
    t.set_model_mode("train")
    t.epoch, t.batch_idx, t.num_batches = 0, 0, 10**9  # never the epoch's last batch
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        t.forward_backward(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def train_node(trainer):
    return {"CoOp": "COOP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC", "IVLP": "IVLP"}[trainer]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", nargs="+", default=["MaPLe", "PromptSRC"], choices=CONFIGS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10, help="toy classes (half are base)")
    args = parser.parse_args()
    os.environ.setdefault("DASSL_ENGINE", "builtin")

    import train
    from dassl_compat import build_trainer

    work = tempfile.mkdtemp(prefix="time-regularizers-")
    subprocess.run([sys.executable, "-m", "datasets.make_toy_dataset", "--out",
                    osp.join(work, "toy"), "--classes", str(args.classes), "--size", "224"],
                   check=True, capture_output=True)
    torch.manual_seed(0)
    rows = []
    for trainer in args.trainers:
        base = None
        for name in args.variants:
            sec = time_variant(train, build_trainer, work, osp.join(work, f"{trainer}-{name}"),
                               trainer, VARIANTS[name], args.steps)
            base = sec if name == "none" else base
            rows.append((trainer, name, sec, sec / base if base else float("nan")))
            print(f"{trainer:10s} {name:28s} {sec:7.3f} s/step", file=sys.stderr, flush=True)

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.classes // 2} base classes, batch 4, fp32, median of {args.steps} steps\n")
    print("| trainer | regularizer | s / step | ratio to none |")
    print("|---|---|---|---|")
    for trainer, name, sec, ratio in rows:
        print(f"| {trainer} | {name} | {sec:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
