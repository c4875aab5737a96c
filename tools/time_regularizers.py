"""Time one training step with and without each regularizer (a benchmark, not a test).

    python tools/time_regularizers.py --trainers MaPLe PromptSRC --steps 3

Builds each trainer on ViT-B/16-sized random weights (open_clip ViT-B-16-quickgelu,
224 px), fp32, batch 4, on a generated image-folder dataset, and times
``forward_backward`` on one fixed batch. All variants of a trainer are built in one
process and stepped round-robin (one warm-up round, then ``--steps`` rounds), so a
slow spell of the machine hits every variant alike; the table gives the medians and
their ratio to the unregularized step. Prints a Markdown table.
"""
import contextlib
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


def build_variant(run_config, build_trainer, root, out, trainer, extra):
    args = run_config.build_parser().parse_args([
        "--root", root, "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/image_folder.yaml",
        "--config-file", CONFIGS[trainer], "--output-dir", out,
        "MODEL.BACKBONE.NAME", "ViT-B-16-quickgelu", "MODEL.BACKBONE.PRETRAINED", "random",
        f"TRAINER.{train_node(trainer)}.PREC", "fp32", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATASET.SUBSAMPLE_CLASSES", "base", *extra])
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        t = build_trainer(run_config.setup_cfg(args))
    torch.manual_seed(0)
    batch = next(iter(t.train_loader_x))
    t.set_model_mode("train")
    t.epoch, t.batch_idx, t.num_batches = 0, 0, 10**9  # never the epoch's last batch
    return t, batch


def step_seconds(t, batch):
    start = time.perf_counter()
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        t.forward_backward(batch)
    return time.perf_counter() - start


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

    import run_config
    from dassl_compat import build_trainer

    work = tempfile.mkdtemp(prefix="time-regularizers-")
    subprocess.run([sys.executable, "-m", "datasets.make_toy_dataset", "--out",
                    osp.join(work, "toy"), "--classes", str(args.classes), "--size", "224"],
                   check=True, capture_output=True)
    torch.manual_seed(0)
    rows = []
    for trainer in args.trainers:
        built = {name: build_variant(run_config, build_trainer, work,
                                     osp.join(work, f"{trainer}-{name}"), trainer, VARIANTS[name])
                 for name in args.variants}
        times = {name: [] for name in built}
        for round_ in range(args.steps + 1):
            for name, (t, batch) in built.items():
                sec = step_seconds(t, batch)
                if round_:  # round 0 warms up
                    times[name].append(sec)
                print(f"{trainer} round {round_} {name}: {sec:.3f} s", file=sys.stderr, flush=True)
        base = statistics.median(times["none"]) if "none" in times else None
        for name in built:
            sec = statistics.median(times[name])
            rows.append((trainer, name, sec, sec / base if base else float("nan")))
        del built

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.classes // 2} base classes, batch 4, fp32, median of {args.steps} steps\n")
    print("| trainer | regularizer | s / step | ratio to none |")
    print("|---|---|---|---|")
    for trainer, name, sec, ratio in rows:
        print(f"| {trainer} | {name} | {sec:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
