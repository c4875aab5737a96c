"""Zero-shot accuracy of a CLIP on the benchmark sets' test splits.

    python benchmark/zeroshot.py --data DATA --model benchmark/tiny_clip.pt

Every set written under DATA is scored: the clean sources and the noisy base-to-novel sets.
Images go through the same steps as the data pipeline's test transform
(grayscale PNG -> RGB, bicubic resize to the model's input size, CLIP mean/std),
and each class is prompted with ZeroshotCLIP's default "a photo of a {}.".
"""
import argparse
import json
import os.path as osp
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from benchmark.sets import BENCH_SETS, SETS  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEMPLATE = "a photo of a {}."


def to_tensor(images, size, normalise=True):
    """uint8 grayscale arrays ``(N, H, W)`` -> RGB ``(N, 3, size, size)``, CLIP-normalised."""
    out = []
    for img in images:
        pil = Image.fromarray(np.asarray(img, dtype=np.uint8)).convert("RGB").resize((size, size), Image.BICUBIC)
        out.append(np.asarray(pil, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    if not normalise:
        return x
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def read_split_images(data, image_set, part="test"):
    root = osp.join(data, image_set.folder)
    split = image_set.split_file if part in ("train", "val", "test") else "pretrain.json"
    with open(osp.join(root, split)) as f:
        rows = json.load(f)[part]
    images = [np.asarray(Image.open(osp.join(root, "images", r[0])).convert("L")) for r in rows]
    return images, np.array([r[1] for r in rows])


@torch.no_grad()
def class_text_features(model, tokenizer, classnames, template=TEMPLATE):
    feats = model.encode_text(tokenizer([template.format(c) for c in classnames]))
    return feats / feats.norm(dim=-1, keepdim=True)


@torch.no_grad()
def zeroshot_accuracy(model, tokenizer, images, labels, classnames, template=TEMPLATE, batch_size=256):
    """Top-1 accuracy (%) of the nearest class prompt."""
    model.eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    text = class_text_features(model, tokenizer, classnames, template)
    correct = 0
    for i in range(0, len(images), batch_size):
        feats = model.encode_image(to_tensor(images[i : i + batch_size], size))
        feats = feats / feats.norm(dim=-1, keepdim=True)
        correct += (feats @ text.T).argmax(dim=-1).eq(torch.as_tensor(labels[i : i + batch_size])).sum().item()
    return 100.0 * correct / len(images)


def evaluate(model, tokenizer, data, part="test", sets=SETS):
    return {s.name: zeroshot_accuracy(model, tokenizer, *read_split_images(data, s, part), s.classnames)
            for s in sets}


def main(argv=None):
    from clip_backbone import load_clip
    from clip_backbone.loading import get_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, help="MODEL.BACKBONE.NAME: a weights file or open_clip name")
    parser.add_argument("--pretrained", default="")
    parser.add_argument("--part", default="test", choices=["train", "val", "test", "pretrain"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, name = load_clip(args.model, args.pretrained)
    sets = [s for s in SETS + BENCH_SETS
            if osp.isfile(osp.join(args.data, s.folder, s.split_file))]
    accs = evaluate(model, get_tokenizer(model, name), args.data, args.part, sets)
    print(f"| set | classes | zero-shot top-1 ({args.part}) | chance |\n|---|---|---|---|")
    for s in sets:
        print(f"| {s.name} | {len(s.classnames)} | {accs[s.name]:.1f} | {100 / len(s.classnames):.1f} |")


if __name__ == "__main__":
    main()
