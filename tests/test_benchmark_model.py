"""The committed tiny CLIP of the CPU benchmark (benchmark/README.md) loads through
the backbone loader and classifies real images zero-shot far above chance.

The fixed sample (tests/data/benchmark_sample.npz: 5 test images per class of
each set, never seen in pretraining) is written by
``benchmark/prepare_data.py --sample``, so this test needs none of the packages
the sets come from.
"""
import os.path as osp

import numpy as np
import pytest
import torch

from benchmark.sets import SETS
from benchmark.zeroshot import zeroshot_accuracy
from clip_backbone import load_clip
from clip_backbone.loading import get_tokenizer

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CHECKPOINT = osp.join(REPO, "benchmark", "tiny_clip.pt")
SAMPLE = osp.join(REPO, "tests", "data", "benchmark_sample.npz")
MARGIN = 30.0  # percentage points above chance on every set


@pytest.fixture(scope="module")
def tiny_clip():
    model, name = load_clip(CHECKPOINT)
    return model, get_tokenizer(model, name)


def test_checkpoint_is_an_openai_format_file_of_a_few_megabytes(tiny_clip):
    model, _ = tiny_clip
    assert osp.getsize(CHECKPOINT) < 8 * 2**20
    assert model.visual.image_size in (32, (32, 32))
    assert model.token_embedding.num_embeddings == 49408  # the standard BPE vocabulary


@pytest.mark.parametrize("image_set", SETS, ids=[s.name for s in SETS])
def test_zero_shot_beats_chance_by_a_margin_on_the_fixed_sample(tiny_clip, image_set):
    model, tokenizer = tiny_clip
    sample = np.load(SAMPLE)
    images, labels = sample[f"{image_set.name}_images"], sample[f"{image_set.name}_labels"]
    assert len(images) == 5 * len(image_set.classnames)
    chance = 100.0 / len(image_set.classnames)
    accuracy = zeroshot_accuracy(model, tokenizer, images, labels, image_set.classnames)
    assert accuracy >= chance + MARGIN, f"{image_set.name}: {accuracy:.1f}% vs chance {chance:.1f}%"


@pytest.mark.parametrize("image_set", SETS, ids=[s.name for s in SETS])
def test_each_set_has_a_hand_prompt_the_tiny_clip_was_pretrained_with(image_set):
    # ZeroshotCLIP, KgCoOp and Proxy-FDA's frozen class-text set read this template; one the
    # text tower never saw in pretraining would make a weaker zero-shot reference.
    from benchmark.sets import COMMON_TEMPLATES
    from dassl_compat import DATASET_REGISTRY
    from datasets import dataset_template
    assert DATASET_REGISTRY.get(image_set.name).TEMPLATE  # its own, not a default
    assert dataset_template(image_set.name) in COMMON_TEMPLATES + list(image_set.templates)
