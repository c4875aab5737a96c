"""Write a tiny image-folder dataset of coloured shapes.

    python -m datasets.make_toy_dataset --out data/toy [--classes 6 --train-per-class 16
        --test-per-class 8 --val-per-class 0 --size 32 --seed 0]

Each class is a (colour, shape) pair with a real-word name such as "red circle", so
the hand-crafted prompt "a photo of a red circle." means something to a text
encoder. Images vary in position, scale, background shade and noise, and the same
arguments always give the same bytes. Read it with ``DATASET.NAME ImageFolder``,
``DATASET.ROOT data`` and ``DATASET.IMAGE_FOLDER.DIR toy``.
"""
import argparse
import os
import random
import sys

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "orange": (240, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "cross")


def class_names(n):
    """n distinct "colour shape" names, alternating shapes so neighbours differ in both."""
    pairs = []
    colours = list(COLOURS)
    for i in range(len(colours) * len(SHAPES)):
        colour = colours[i % len(colours)]
        shape = SHAPES[(i + i // len(colours)) % len(SHAPES)]
        pairs.append((colour, shape))
    if n > len(pairs):
        raise SystemExit(f"At most {len(pairs)} classes can be made, got --classes {n}.")
    return pairs[:n]


def draw(colour, shape, size, rng):
    from PIL import Image, ImageDraw

    shade = rng.randint(90, 160)
    img = Image.new("RGB", (size, size), (shade, shade, shade))
    pen = ImageDraw.Draw(img)
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = (rng.uniform(r, size - r) for _ in range(2))
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    elif shape == "triangle":
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:  # cross
        w = r / 3
        pen.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        pen.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    noise = bytes(rng.randint(0, 24) for _ in range(size * size * 3))
    return Image.blend(img, Image.frombytes("RGB", (size, size), noise), 0.15)


def make_toy_dataset(out, classes=6, train_per_class=16, test_per_class=8, val_per_class=0, size=32, seed=0):
    """Write ``out/{train,[val,]test}/<colour_shape>/NNN.png``; returns the class names."""
    rng = random.Random(seed)
    names = class_names(classes)
    counts = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
    for part, count in counts.items():
        for colour, shape in names:
            if count <= 0:
                continue
            class_dir = os.path.join(out, part, f"{colour}_{shape}")
            os.makedirs(class_dir, exist_ok=True)
            for i in range(count):
                draw(colour, shape, size, rng).save(os.path.join(class_dir, f"{i:03d}.png"))
    return [f"{c} {s}" for c, s in names]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write (e.g. data/toy)")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--train-per-class", type=int, default=16)
    p.add_argument("--test-per-class", type=int, default=8)
    p.add_argument("--val-per-class", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    names = make_toy_dataset(a.out, a.classes, a.train_per_class, a.test_per_class, a.val_per_class, a.size, a.seed)
    print(f"Wrote {len(names)} classes to {a.out}: {', '.join(names)}")


if __name__ == "__main__":
    sys.exit(main())
