"""Pretrain the benchmark's tiny CLIP contrastively on captions of every set's classes.

    python benchmark/prepare_data.py --out DATA
    python benchmark/pretrain_tiny_clip.py --data DATA --out benchmark/tiny_clip.pt --seed 0

Images: each set's ``pretrain.json`` part (disjoint from its train/val/test
splits), read as the data pipeline reads them (bicubic resize to the model
size), then per sample: a small random rotation and shift, a random scale, and a
random ink colour (white ink, as in the test images, half of the time).

Captions: a template drawn from the shared and the set's own templates
(benchmark/sets.py), filled with the class name, and with the image's colour
("a photo of a red coat.") and size ("small"/"large", when the scale is far from
1) each named half of the time. Without these words a caption says only the class,
whatever the template, and the text tower learns to ignore every word but the
class name; then no learned context (CoOp) can move its output. With them, words
around the class name carry information, as in real captions.

Loss: CLIP's symmetric image-text InfoNCE over the batch. A caption fits every
image of its class whose colour and size match the words it names, so a batch
has many positives per row; the targets are spread evenly over them (UniCL, Yang
et al. 2022). Digit names are shared by MNIST and Digits. The text tower runs on
the captions cut to the longest one in the batch: with a causal mask the
end-of-text feature does not depend on the padding after it, so this equals
running at the full 77 tokens.

Output: the model's state dict in fp16 with open_clip CLIP's (= OpenAI's) key
names, loadable as ``MODEL.BACKBONE.NAME <file>``. One thread, fixed steps and
seed: the same command on the same data rebuilds the same weights (the file's
bytes differ run to run only by torch.save's random serialization id).
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
from benchmark.sets import COMMON_TEMPLATES, SETS  # noqa: E402
from benchmark.zeroshot import CLIP_MEAN, CLIP_STD, evaluate, read_split_images, to_tensor  # noqa: E402

MODEL = "bench-tiny-vit-quickgelu"
# ink colours (RGB in [0, 1]); white, the colour of every test image, half of the time
COLOURS = {"white": (1.0, 1.0, 1.0), "red": (1.0, 0.15, 0.15), "green": (0.15, 1.0, 0.15),
           "blue": (0.25, 0.35, 1.0), "yellow": (1.0, 1.0, 0.15)}
COLOUR_PROBS = (0.5, 0.125, 0.125, 0.125, 0.125)
SCALE_RANGE = (0.65, 1.2)
SIZE_WORDS = ((0.8, "small"), (1.05, "large"))  # scale below 0.8: small; above 1.05: large


def load_pretrain_pool(data, size):
    """All sets' pretraining images as one ``(N, 1, size, size)`` tensor in [0, 1],
    with each image's class name and its set's caption templates."""
    xs, classnames, templates = [], [], []
    for image_set in SETS:
        images, labels = read_split_images(data, image_set, "pretrain")
        xs.append(to_tensor(images, size, normalise=False)[:, :1])
        set_templates = COMMON_TEMPLATES + image_set.templates
        for label in labels:
            classnames.append(image_set.classnames[label])
            templates.append(set_templates)
    return torch.cat(xs), classnames, templates


def size_word(scale):
    if scale < SIZE_WORDS[0][0]:
        return SIZE_WORDS[0][1]
    if scale > SIZE_WORDS[1][0]:
        return SIZE_WORDS[1][1]
    return None


def augment(x, scale, colours, generator):
    """Rotate, shift and scale ``x`` (N, 1, H, W), colour its ink, normalise as CLIP."""
    n = x.shape[0]
    angle = torch.empty(n).uniform_(-0.2, 0.2, generator=generator)  # radians, about 11 degrees
    shift = torch.empty(n, 2).uniform_(-0.1, 0.1, generator=generator)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # black background
    x = x * colours[:, :, None, None]
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


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


def sample_batch(pool, classnames, templates, batch_size, generator):
    """Images, captions and the image-caption match matrix of one batch."""
    idx = torch.randint(len(pool), (batch_size,), generator=generator)
    scale = torch.empty(batch_size).uniform_(*SCALE_RANGE, generator=generator)
    names = list(COLOURS)
    colour_ids = torch.multinomial(torch.tensor(COLOUR_PROBS), batch_size, replacement=True, generator=generator)
    coins = torch.rand(batch_size, 3, generator=generator)
    captions, said_colour, said_size = [], [], []
    for b, i in enumerate(idx.tolist()):
        colour = names[colour_ids[b]] if coins[b, 0] < 0.5 else None
        size = size_word(scale[b].item()) if coins[b, 1] < 0.5 else None
        words = " ".join(w for w in (size, colour, classnames[i]) if w)
        template = templates[i][int(coins[b, 2] * len(templates[i]))]
        captions.append(template.format(words))
        said_colour.append(colour)
        said_size.append(size)
    cls = [classnames[i] for i in idx.tolist()]
    img_colour = [names[c] for c in colour_ids.tolist()]
    img_size = [size_word(s) for s in scale.tolist()]
    match = torch.tensor([[cls[i] == cls[j] and said_colour[j] in (None, img_colour[i])
                           and said_size[j] in (None, img_size[i]) for j in range(batch_size)]
                          for i in range(batch_size)], dtype=torch.float32)
    colours = torch.tensor([COLOURS[c] for c in img_colour])
    images = augment(pool[idx], scale, colours, generator)
    return images, captions, match


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
    pool, classnames, templates = load_pretrain_pool(args.data, size)
    print(f"{len(pool)} pretraining images, {len(set(classnames))} class names")

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
        images, captions, match = sample_batch(pool, classnames, templates, args.batch_size, generator)
        unique = sorted(set(captions))
        inverse = torch.tensor([unique.index(c) for c in captions])
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(encode_text_cut(model, tokenizer(unique)), dim=-1)[inverse]
        logits = model.logit_scale.exp() * image_features @ text_features.T
        loss = 0.5 * (F.cross_entropy(logits, match / match.sum(1, keepdim=True))
                      + F.cross_entropy(logits.T, match.T / match.T.sum(1, keepdim=True)))

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
