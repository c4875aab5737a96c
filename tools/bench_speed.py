"""Training-step cost of our towers against the batch-first, full-length path they replaced.

    python tools/bench_speed.py [--quick] [--steps 3] [--threads 1] [--out table.md]
    python tools/bench_speed.py --eval-cache [--quick] [--rounds 3]

For each case (trainer, number of classes, batch) it builds the trainer's model twice from
the same random weights and the same prompt values: ours (blocks sequence-first, text only up
to the longest end-of-text token) and the baseline (open_clip's blocks batch-first, the text
at the full context length: this project's towers before, kept here only as the baseline).
Then, in one process and alternating the two sides, it times training steps (forward,
loss, backward, optimizer step) in CPU time (``time.process_time``), and it counts the bytes
autograd keeps for the backward pass (the distinct storages of the saved tensors, frozen
weights included: what grows with classes and sequence length, and what limits a GPU). Ratios are ours / baseline, medians over the
steps. The logits of both paths are compared too (``max_rel_err``).

Cases: CoOp at 10, 100 and 1000 classes (memory also at 300), MaPLe and PromptSRC at 10 and
100 classes, batch 4; CoCoOp at 10 and 50 classes, batch 1. Class names are ImageNet's.
Full size is ViT-B/16 (random weights, 224 px, 77-token context); ``--quick`` uses a narrow
model (width 128, 12 layers per tower, 64 px) with the same 77-token context, in a few
minutes on 2 CPU cores.

The last line printed is one JSON object: ``text_step`` (CoOp step ratio at 100 classes),
``vision_step`` (MaPLe at 10), ``promptsrc_step`` (PromptSRC at 10), ``cocoop_step``
(CoCoOp at 50), ``memory`` (CoOp activation bytes at 300 classes), ``max_rel_err``.
This is a measurement tool, not a test: timings on a shared machine vary.

``--imagenet-step`` instead runs one CoOp training step at 1000 classes (ImageNet's) on
ViT-B/16 with the text blocks checkpointed (``MODEL.BACKBONE.TEXT_CHECKPOINTING``), ours only,
and prints the process's peak memory (``ru_maxrss``): what ImageNet-scale prompt tuning needs.

``--eval-cache`` instead times whole evaluations (``trainer.test()``, Dassl's loop: decode,
transform, forward, evaluator) of CoOp at 100 classes on 200 generated JPEG images (2 per
class, 400x300), ViT-B/16 random weights at 224 px, in three ways, alternating in one
process: the full path (``TEST.FEATURE_CACHE False``), ours with an empty image-feature
cache (it computes and stores the features) and ours with the filled cache. Each timed
lookup hashes the weights again, as a fresh process does. The last line is JSON:
``eval_first`` (empty cache / full path), ``eval_cached`` (filled cache / full path),
``max_rel_err`` (logits against the full path's), the CPU seconds of each side, and
``decoded_cached`` (images the cached evaluations read: none). With ``--quick``: the narrow
model at 64 px, 10 classes, 20 images (seconds; it checks the tool's plumbing).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

import clip_backbone  # noqa: F401  (registers the tiny model configs)
from clip_backbone.encoders import ImageEncoder, TextEncoder, _batched

# CoOp at 1000 classes: at full size only ours runs (the baseline would keep tens of GB of
# activations); --quick runs both
CASES = [("CoOp", 10, 4), ("CoOp", 100, 4), ("CoOp", 300, 4), ("CoOp", 1000, 4),
         ("MaPLe", 10, 4), ("MaPLe", 100, 4), ("PromptSRC", 10, 4), ("PromptSRC", 100, 4),
         ("CoCoOp", 10, 1), ("CoCoOp", 50, 1)]
CONFIGS = {"CoOp": "configs/trainers/CoOp/vit_b16_ctxv1.yaml",
           "CoCoOp": "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
           "MaPLe": "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
           "PromptSRC": "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"}
QUICK_MODEL = {"embed_dim": 128, "quick_gelu": True,
               "vision_cfg": {"image_size": 64, "layers": 12, "width": 128, "patch_size": 16},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128,
                            "heads": 2, "layers": 12}}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ the baseline
class BaselineText(TextEncoder):
    """The text tower as it was: open_clip's blocks batch-first, the full context."""

    def __init__(self, clip_model):
        super().__init__(clip_model, truncate=False)
        _batch_first(self.transformer)

    def forward(self, embeddings, tokens, deep_prompts=None, n_ctx=0, hooks=None):
        x = embeddings.to(self.dtype) + self.positional_embedding.to(self.dtype)
        for i, block in enumerate(self.transformer.resblocks):
            if i > 0 and deep_prompts is not None and i - 1 < len(deep_prompts) \
                    and deep_prompts[i - 1] is not None:
                prompt = _batched(deep_prompts[i - 1], x.shape[0]).to(x.dtype)
                x = torch.cat([x[:, :1], prompt, x[:, 1 + prompt.shape[1]:]], dim=1)
            x = block(x, attn_mask=self.attn_mask)
        x = self._pool(self.ln_final(x), self.eot_positions(tokens))
        return x @ self.text_projection


class BaselineImage(ImageEncoder):
    """The image tower as it was: open_clip's blocks batch-first."""

    def __init__(self, clip_model):
        super().__init__(clip_model)
        _batch_first(self.visual.transformer)

    def forward(self, images, shallow_prompt=None, deep_prompts=None, hooks=None):
        v = self.visual
        x = v.conv1(images.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        if shallow_prompt is not None:
            x = torch.cat([x, _batched(shallow_prompt, x.shape[0]).to(x.dtype)], dim=1)
        x = v.ln_pre(v.patch_dropout(x))
        for i, block in enumerate(v.transformer.resblocks):
            if i > 0 and deep_prompts is not None and i - 1 < len(deep_prompts):
                prompt = _batched(deep_prompts[i - 1], x.shape[0]).to(x.dtype)
                x = torch.cat([x[:, : x.shape[1] - prompt.shape[1]], prompt], dim=1)
            x = block(x, attn_mask=None)
        pooled, _ = v._pool(x)
        return pooled @ v.proj


def _batch_first(transformer):
    transformer.batch_first = True
    for block in transformer.resblocks:
        block.attn.batch_first = True


# ------------------------------------------------------------------ building
def _cfg(trainer, weights, image_size):
    from dassl_compat import get_cfg_default
    from run_config import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(REPO, CONFIGS[trainer]))
    cfg.MODEL.BACKBONE.NAME = weights
    cfg.MODEL.BACKBONE.PRETRAINED = ""
    cfg.TRAINER.NAME = trainer
    cfg.INPUT.SIZE = (image_size, image_size)
    return cfg


def build(trainer, n_classes, weights, image_size, baseline, checkpoint_text=False):
    import trainers  # noqa: F401
    from clip_backbone import build_backbone
    from dassl_compat import TRAINER_REGISTRY
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    cfg = _cfg(trainer, weights, image_size)
    cfg.MODEL.BACKBONE.TEXT_CHECKPOINTING = checkpoint_text
    backbone = build_backbone(cfg, "cpu", "fp32")
    if baseline:
        backbone.text = BaselineText(backbone.clip)
        backbone.image = BaselineImage(backbone.clip)
    cls = TRAINER_REGISTRY.get(trainer)
    t = cls.__new__(cls)
    t.cfg = cfg
    torch.manual_seed(0)
    t.model = t.build_custom_clip(cfg, list(IMAGENET_CLASSNAMES[:n_classes]), backbone)
    t.model.train()
    learner = t.model.prompt_learner
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in learner.parameters():
            p.copy_(p + 0.02 * torch.randn(p.shape, generator=gen))
    t.optim = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=1e-3)
    return t


def write_weights(path, quick):
    """Random weights, OpenAI format: ViT-B/16 or the quick model."""
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(**QUICK_MODEL) if quick else \
        open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    torch.save(model.state_dict(), path)
    return QUICK_MODEL["vision_cfg"]["image_size"] if quick else 224


# ------------------------------------------------------------------ measuring
def step(t, images, labels):
    """One training step: CPU seconds and bytes of activations saved for backward."""
    from trainers.models import ForwardHooks

    storages = {}

    def pack(x):
        # distinct storages: a view, or a tensor saved by several operations, counts once
        storage = x.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return x

    start = time.process_time()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss = t.step_loss(images, labels, ForwardHooks()).total()
    t.optim.zero_grad()
    loss.backward()
    t.optim.step()
    return time.process_time() - start, sum(storages.values())


def logits(t, images):
    with torch.no_grad():
        return t.model.forward_features(images).logits


def measure(trainer, n_classes, batch, weights, image_size, steps, baseline=True):
    ours = build(trainer, n_classes, weights, image_size, False)
    if not baseline:  # too big to run on this machine: ours alone
        size = ours.model.backbone.image_size
        gen = torch.Generator().manual_seed(2)
        images = torch.randn(batch, 3, size, size, generator=gen)
        labels = torch.randint(n_classes, (batch,), generator=gen)
        step(ours, images, labels)
        runs = [step(ours, images, labels) for _ in range(steps)]
        nan = float("nan")
        return dict(trainer=trainer, classes=n_classes, batch=batch,
                    ours_s=statistics.median(r[0] for r in runs), base_s=nan, step=nan,
                    memory=nan, ours_mb=runs[-1][1] / 2 ** 20, base_mb=nan, rel_err=0.0)
    base = build(trainer, n_classes, weights, image_size, True)
    size = ours.model.backbone.image_size
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(batch, 3, size, size, generator=gen)
    labels = torch.randint(n_classes, (batch,), generator=gen)
    a, b = logits(ours, images), logits(base, images)
    rel_err = ((a - b).abs().max() / b.abs().max()).item()
    times = {"ours": [], "base": []}
    memory = {}
    step(ours, images, labels)  # warm-up, both sides
    step(base, images, labels)
    for i in range(steps):
        for side, t in ((("ours", ours), ("base", base)) if i % 2 == 0
                        else (("base", base), ("ours", ours))):
            seconds, saved = step(t, images, labels)
            times[side].append(seconds)
            memory[side] = saved
    ours_s, base_s = statistics.median(times["ours"]), statistics.median(times["base"])
    return dict(trainer=trainer, classes=n_classes, batch=batch, ours_s=ours_s, base_s=base_s,
                step=ours_s / base_s, memory=memory["ours"] / memory["base"],
                ours_mb=memory["ours"] / 2 ** 20, base_mb=memory["base"] / 2 ** 20,
                rel_err=rel_err)


def table(rows):
    lines = ["| trainer | classes | batch | step ours / baseline (CPU s) | ratio | activations "
             "ours / baseline (MiB) | ratio | logits rel. diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['trainer']} | {r['classes']} | {r['batch']} | {r['ours_s']:.3f} / "
                     f"{r['base_s']:.3f} | {r['step']:.2f} | {r['ours_mb']:.1f} / "
                     f"{r['base_mb']:.1f} | {r['memory']:.2f} | {r['rel_err']:.1e} |")
    return "\n".join(lines)


def imagenet_step(threads):
    """One CoOp step at 1000 classes, ViT-B/16, text blocks checkpointed: peak memory."""
    import resource

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.pt")
        image_size = write_weights(weights, quick=False)
        t = build("CoOp", 1000, weights, image_size, baseline=False, checkpoint_text=True)
        gen = torch.Generator().manual_seed(2)
        images = torch.randn(4, 3, image_size, image_size, generator=gen)
        labels = torch.randint(1000, (4,), generator=gen)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        seconds, saved = step(t, images, labels)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"classes": 1000, "cpu_seconds": seconds, "peak_rss_gib": peak / 2 ** 20,
              "rss_before_step_gib": before / 2 ** 20, "saved_activations_gib": saved / 2 ** 30}
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------ evaluation cache
def write_image_set(root, n_classes, per_class, seed=0):
    """An ImageFolder set of smooth random JPEGs (400x300, as a typical photo) under
    ``root/bench``: ``per_class`` test images and one training image per class (ImageNet's
    class names)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    for name in IMAGENET_CLASSNAMES[:n_classes]:
        folder = name.replace(" ", "_").replace("/", "_")
        for part, count in (("train", 1), ("test", per_class)):
            os.makedirs(os.path.join(root, "bench", part, folder), exist_ok=True)
            for i in range(count):
                coarse = torch.rand(1, 3, 6, 8, generator=gen)
                img = torch.nn.functional.interpolate(coarse, size=(300, 400), mode="bilinear")[0]
                img = (img + 0.05 * torch.randn(img.shape, generator=gen)).clamp(0, 1)
                pixels = (img.permute(1, 2, 0) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(
                    os.path.join(root, "bench", part, folder, f"{i:03d}.jpg"), quality=90)


def eval_trainer(root, weights, image_size, out):
    """CoOp as train.py builds it, evaluating in this process (no loader workers, so every
    decode is counted in this process's CPU time)."""
    import contextlib
    import io

    from dassl_compat import build_trainer
    from run_config import build_parser, setup_cfg

    args = ["--root", root, "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/image_folder.yaml"),
            "--config-file", os.path.join(REPO, CONFIGS["CoOp"]), "--output-dir", out,
            "MODEL.BACKBONE.NAME", weights, "MODEL.BACKBONE.PRETRAINED", "",
            "DATASET.IMAGE_FOLDER.DIR", "bench", "INPUT.SIZE", f"({image_size}, {image_size})",
            "DATALOADER.NUM_WORKERS", "0", "TRAINER.COOP.PREC", "fp32"]
    with contextlib.redirect_stdout(io.StringIO()):
        return build_trainer(setup_cfg(build_parser().parse_args(args)))


def timed_eval(trainer, cache):
    """One ``trainer.test()`` with the cache in ``cache`` (None: off): CPU seconds, logits,
    images decoded."""
    import contextlib
    import io

    from trainers import feature_cache

    trainer.cfg.defrost()
    trainer.cfg.TEST.FEATURE_CACHE = cache is not None
    trainer.cfg.TEST.FEATURE_CACHE_DIR = cache or ""
    trainer.cfg.freeze()
    logits, decoded = [], [0]
    evaluator, wrapper = trainer.evaluator, type(trainer.test_loader.dataset)
    process, getitem = evaluator.process, wrapper.__getitem__

    def counting_getitem(self, i):
        decoded[0] += 1
        return getitem(self, i)

    evaluator.process = lambda mo, gt: (logits.append(mo.detach().clone()), process(mo, gt))
    wrapper.__getitem__ = counting_getitem
    feature_cache.forget_weight_digests()  # a later run is a fresh process: it hashes again
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.process_time()
            trainer.test()
            seconds = time.process_time() - start
    finally:
        del evaluator.process
        wrapper.__getitem__ = getitem
    return seconds, torch.cat(logits), decoded[0]


def eval_cache(quick, threads, rounds):
    """Full evaluation path vs ours with an empty and with a filled feature cache."""
    torch.set_num_threads(threads)
    n_classes, per_class = (10, 2) if quick else (100, 2)
    times = {"full": [], "first": [], "cached": []}
    max_rel_err, decoded_cached = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.pt")
        image_size = write_weights(weights, quick)
        write_image_set(tmp, n_classes, per_class)
        trainer = eval_trainer(tmp, weights, image_size, os.path.join(tmp, "out"))
        full_logits, filled = None, None
        for r in range(rounds):
            order = ("full", "first", "cached") if r % 2 == 0 else ("cached", "first", "full")
            if filled is None:  # the first round fills before it reads
                order = ("full", "first", "cached")
            for side in order:
                cache = None
                if side == "first":
                    cache = filled = os.path.join(tmp, f"cache{r}")
                elif side == "cached":
                    cache = filled
                seconds, logits, decoded = timed_eval(trainer, cache)
                times[side].append(seconds)
                if side == "full":
                    full_logits = logits
                else:
                    ref = full_logits
                    max_rel_err = max(max_rel_err,
                                      ((logits - ref).abs().max() / ref.abs().max()).item())
                if side == "cached":
                    decoded_cached += decoded
                print(f"  round {r + 1}: {side} {seconds:.2f} CPU s ({decoded} images decoded)",
                      file=sys.stderr, flush=True)
    med = {side: statistics.median(t) for side, t in times.items()}
    result = {"eval_first": med["first"] / med["full"], "eval_cached": med["cached"] / med["full"],
              "max_rel_err": max_rel_err, "full_s": med["full"], "first_s": med["first"],
              "cached_s": med["cached"], "classes": n_classes, "images": n_classes * per_class,
              "decoded_cached": decoded_cached}
    print(json.dumps(result))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="narrow model, a few minutes")
    p.add_argument("--steps", type=int, default=3,
                   help="timed steps per side and case (1 at 1000 classes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--cases", nargs="*", help="e.g. CoOp:100 MaPLe:10 (default: all)")
    p.add_argument("--out", help="also write the table (markdown) here")
    p.add_argument("--imagenet-step", action="store_true",
                   help="one CoOp step at 1000 classes with checkpointed text: peak memory")
    p.add_argument("--eval-cache", action="store_true",
                   help="evaluation: full path vs an empty and a filled image-feature cache")
    p.add_argument("--rounds", type=int, default=3,
                   help="--eval-cache: timed evaluations per side (alternating order)")
    a = p.parse_args(argv)
    if a.imagenet_step:
        return imagenet_step(a.threads)
    if a.eval_cache:
        return eval_cache(a.quick, a.threads, a.rounds)
    torch.set_num_threads(a.threads)
    cases = CASES
    if a.cases:
        wanted = {tuple(c.split(":")) for c in a.cases}
        cases = [c for c in CASES if (c[0], str(c[1])) in wanted]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.pt")
        image_size = write_weights(weights, a.quick)
        for trainer, n, batch in cases:
            print(f"{trainer}, {n} classes, batch {batch} ...", file=sys.stderr, flush=True)
            # at full size the 1000-class baseline keeps tens of GB of activations
            rows.append(measure(trainer, n, batch, weights, image_size,
                                1 if n >= 1000 else a.steps, baseline=a.quick or n < 1000))
            r = rows[-1]
            print(f"  step {r['step']:.2f}, activations {r['memory']:.2f}, logits {r['rel_err']:.1e}",
                  file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")

    def ratio(trainer, n, key="step"):
        return next((r[key] for r in rows if (r["trainer"], r["classes"]) == (trainer, n)), None)

    print(json.dumps({"text_step": ratio("CoOp", 100), "vision_step": ratio("MaPLe", 10),
                      "promptsrc_step": ratio("PromptSRC", 10), "cocoop_step": ratio("CoCoOp", 50),
                      "memory": ratio("CoOp", 300, "memory"),
                      "max_rel_err": max(r["rel_err"] for r in rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
