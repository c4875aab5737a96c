"""Pretrain the benchmark's tiny CLIP contrastively on captions of every set's classes.

    python benchmark/prepare_data.py --out DATA
    python benchmark/pretrain_tiny_clip.py --data DATA --out benchmark/tiny_clip.pt --seed 0

Images: each set's ``pretrain.json`` part (disjoint from its train/val/test
splits), read as the data pipeline reads them (RGB, bicubic resize to the model
size), with light augmentation (a small random affine: scale, rotation, shift;
no flips, which would change digits). Captions: for each image, one template
drawn from the shared and the set's own templates (benchmark/sets.py) filled
with its class name.

Loss: CLIP's symmetric image-text InfoNCE over the batch. A batch holds many
images of one class, so every pair with the same class name is a positive and
the targets are spread evenly over them (UniCL, Yang et al. 2022); digit names
are shared by MNIST and Digits. The text tower runs on the captions cut to the
longest one in the batch: with a causal mask the end-of-text feature does not
depend on the padding after it, so this equals running at the full 77 tokens.

Output: the model's state dict in fp16 with open_clip CLIP's (= OpenAI's) key
names, loadable as ``MODEL.BACKBONE.NAME <file>``. One thread, fixed steps and
seed: the same command on the same data rebuilds the same weights.
"""
import argparse
import math
import os
import os.path as osp
import random
import sys
import time

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import clip_backbone  # noqa: E402,F401  (registers clip_backbone/model_configs)
from benchmark.sets import SETS, captions  # noqa: E402
from benchmark.zeroshot import evaluate, read_split_images, to_tensor  # noqa: E402

MODEL = "bench-tiny-vit-quickgelu"


def load_pretrain_pool(data, size):
    """All sets' pretraining images as one normalised tensor, with caption ids."""
    xs, caption_rows, class_keys = [], [], []
    for image_set in SETS:
        images, labels = read_split_images(data, image_set, "pretrain")
        xs.append(to_tensor(images, size))
        for label in labels:
            caption_rows.append((image_set.name, int(label)))
            class_keys.append(image_set.classnames[label])
    return torch.cat(xs), caption_rows, class_keys


def augment(x, generator):
    n = x.shape[0]
    scale = torch.empty(n).uniform_(0.85, 1.15, generator=generator)
    angle = torch.empty(n).uniform_(-0.2, 0.2, generator=generator)  # radians, about 11 degrees
    shift = torch.empty(n, 2).uniform_(-0.12, 0.12, generator=generator)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    # pad with the normalised value of black, the background of every set
    background = x.amin(dim=(2, 3), keepdim=True)
    return F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background


def encode_text_cut(model, tokens):
    """``model.encode_text`` on tokens cut after the longest caption's end token."""
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
    return x @ model.text_projection


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # unused vocabulary rows keep their initialisation: no decay on the token table
        if p.ndim < 2 or "token_embedding" in name or "positional_embedding" in name or "class_embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the root written by benchmark/prepare_data.py")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=MODEL, help="open_clip config name")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    model = open_clip.create_model(args.model, pretrained=None).float()
    tokenizer = open_clip.get_tokenizer(args.model)
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, (tuple, list)) else model.visual.image_size

    pool, caption_rows, class_keys = load_pretrain_pool(args.data, size)
    all_captions = {s.name: captions(s) for s in SETS}
    caption_list = sorted({c for per_set in all_captions.values() for per_class in per_set for c in per_class})
    caption_index = {c: i for i, c in enumerate(caption_list)}
    caption_tokens = tokenizer(caption_list)
    choices = [[caption_index[c] for c in all_captions[name][label]] for name, label in caption_rows]
    keys = sorted(set(class_keys))
    class_ids = torch.tensor([keys.index(k) for k in class_keys])
    print(f"{len(pool)} pretraining images, {len(caption_list)} captions, {len(keys)} class names")

    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        return 0.5 * args.lr * (1 + math.cos(math.pi * (step - args.warmup) / (args.steps - args.warmup)))

    model.train()
    start = time.time()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.randint(len(pool), (args.batch_size,), generator=generator)
        picks = torch.tensor([choices[i][int(torch.randint(len(choices[i]), (1,), generator=generator))]
                              for i in idx.tolist()])
        unique, inverse = torch.unique(picks, return_inverse=True)

        image_features = F.normalize(model.encode_image(augment(pool[idx], generator)), dim=-1)
        text_features = F.normalize(encode_text_cut(model, caption_tokens[unique]), dim=-1)[inverse]
        logits = model.logit_scale.exp() * image_features @ text_features.T
        same = (class_ids[idx][:, None] == class_ids[idx][None, :]).float()
        targets = same / same.sum(dim=1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step}/{args.steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} "
                  f"lr {lr_at(step):.2e} {time.time() - start:.0f}s", flush=True)

    model.eval()
    state_dict = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()
                  if not k.endswith("attn_mask")}
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    torch.save(state_dict, args.out)
    print(f"saved {args.out} ({osp.getsize(args.out) / 2**20:.2f} MiB, fp16)")

    # zero-shot check from the saved fp16 file, as the benchmark will load it
    from clip_backbone import load_clip
    from clip_backbone.loading import get_tokenizer

    loaded, name = load_clip(args.out)
    accs = evaluate(loaded, get_tokenizer(loaded, name), args.data, "test")
    print("zero-shot top-1 on test: " + ", ".join(f"{k} {v:.1f}" for k, v in accs.items()))


if __name__ == "__main__":
    main()
