"""MaPLe, IVLP and PromptSRC: the reference prompt structure, numerical parity
with the reference code (golden values), GPA, fp32 on CPU, and train /
checkpoint / resume / evaluate through train.py.

The golden files in tests/golden/ were written by running the reference
implementations (muzairkhattak/multimodal-prompt-learning and PromptSRC, CPU
fp32) and these trainers side by side on the case ``parity_case`` builds: tiny
random OpenAI-format CLIP weights from a seed (text width 64, vision width 128,
so MaPLe's projection changes width), prompt values drawn from a seed, and a
fixed batch. The reference code is not part of this repository.
"""
import functools
import json
import os.path as osp
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from tests.helpers.tiny import make_toy_dataset, read_log, run_train, train_args, write_openai_state_dict

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
GOLDEN = osp.join(REPO, "tests", "golden")
PARITY_BACKBONE = "tiny-vit-wide-quickgelu"
WEIGHTS_SEED, PROMPT_SEED, INPUT_SEED, PROMPT_STD = 0, 1, 2, 0.1
CLASSNAMES = ["red circle", "green_square", "blue triangle", "yellow cross", "purple circle"]
LABELS = [0, 3, 1, 4]
PARITY_CASES = {
    "MaPLe": ("configs/trainers/MaPLe/tiny_2ctx.yaml", []),
    "IVLP": ("configs/trainers/IVLP/tiny_2+2ctx.yaml", ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2]),
    "PromptSRC": ("configs/trainers/PromptSRC/tiny_4+4ctx.yaml",
                  ["TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2]),
}


# ------------------------------------------------------------------ the case
def parity_cfg(trainer, weights_path):
    import train
    from dassl_compat import get_cfg_default

    config, opts = PARITY_CASES[trainer]
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, config))
    cfg.merge_from_list([*map(str, opts), "MODEL.BACKBONE.NAME", str(weights_path),
                         "MODEL.BACKBONE.PRETRAINED", ""])
    cfg.TRAINER.NAME = trainer
    return cfg


def set_prompt_values(learner, seed=PROMPT_SEED, std=PROMPT_STD):
    """Overwrite every learnable tensor, in definition order, with seeded noise."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def parity_inputs(image_size=32):
    gen = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn(len(LABELS), 3, image_size, image_size, generator=gen), torch.tensor(LABELS)


@functools.lru_cache(maxsize=1)
def frozen_backbone(weights_path):
    """The frozen backbone is never changed by a prompt learner, so cases share it."""
    from clip_backbone import build_backbone

    return build_backbone(parity_cfg("MaPLe", weights_path), "cpu", "fp32")


def build_parity_model(trainer, weights_path, set_values=True):
    from dassl_compat import TRAINER_REGISTRY

    cfg = parity_cfg(trainer, weights_path)
    backbone = frozen_backbone(str(weights_path))
    model = TRAINER_REGISTRY.get(trainer).build_custom_clip(None, cfg, CLASSNAMES, backbone)
    if set_values:
        set_prompt_values(model.prompt_learner)
    return cfg, model


def training_loss(trainer, cfg, model, images, labels):
    """The trainer's training loss on one batch (compute_loss reads only
    ``self.cfg`` and ``self.model``, so no data loaders are needed)."""
    from dassl_compat import TRAINER_REGISTRY

    t = object.__new__(TRAINER_REGISTRY.get(trainer))
    t.cfg, t.model = cfg, model
    model.train()
    loss, _ = t.compute_loss(images, labels)
    return loss


def fingerprint(tensors):
    return [[float(t.detach().double().sum()), float(t.detach().double().abs().sum())] for t in tensors]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny_openai.pt"
    write_openai_state_dict(path, seed=WEIGHTS_SEED, name=PARITY_BACKBONE)
    return path


def load_golden(trainer):
    with open(osp.join(GOLDEN, f"vl_parity_{trainer}.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize("trainer", list(PARITY_CASES))
def test_logits_and_loss_equal_the_reference_code(trainer, weights):
    golden = load_golden(trainer)
    sd = torch.load(weights)
    assert np.allclose(fingerprint([torch.cat([v.flatten().double() for v in sd.values()])]),
                       golden["weights_fingerprint"], rtol=1e-9), "tiny weights are no longer reproducible"
    cfg, model = build_parity_model(trainer, weights)
    assert np.allclose(fingerprint(list(model.prompt_learner.parameters())),
                       golden["prompt_fingerprint"], rtol=1e-9), "prompt values are no longer reproducible"
    images, labels = parity_inputs()

    model.eval()
    with torch.no_grad():
        logits = model(images)
    expected = torch.tensor(golden["logits"])
    assert (logits - expected).abs().max() / expected.abs().max() < 1e-4
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)

    loss = training_loss(trainer, cfg, model, images, labels)
    assert abs(loss.item() - golden["loss"]) / abs(golden["loss"]) < 1e-4
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.prompt_learner.parameters())


# ---------------------------------------------------------------- structure
def capture_block_inputs(blocks):
    """Inputs (N, L, D) entering each block on the next forward."""
    seen, handles = {}, []
    for i, block in enumerate(blocks):
        # the blocks run sequence-first (L, N, D); keep their input batch-first
        handles.append(block.register_forward_pre_hook(
            lambda m, args, i=i: seen.__setitem__(i, args[0].permute(1, 0, 2))))
    return seen, handles


def run_with_hooks(model):
    text_in, h1 = capture_block_inputs(model.backbone.text.transformer.resblocks)
    vision_in, h2 = capture_block_inputs(model.backbone.image.visual.transformer.resblocks)
    images, _ = parity_inputs()
    model.eval()
    with torch.no_grad():
        model(images)
    for h in h1 + h2:
        h.remove()
    return text_in, vision_in


def assert_text_layers(model, text_in, deep, n_ctx):
    """Layer 0: [SOS][ctx][fixed words...] + positional embedding; blocks
    1..len(deep): tokens 1..n_ctx are that layer's prompt; later blocks: untouched."""
    learner, pos = model.prompt_learner, model.backbone.text.positional_embedding
    first = text_in[0][:, 1:1 + n_ctx]
    torch.testing.assert_close(first, (learner.ctx + pos[1:1 + n_ctx]).expand_as(first))
    for i, prompt in enumerate(deep, start=1):
        assert text_in[i].shape == text_in[0].shape  # same length: mask and EOT position hold
        assert torch.equal(text_in[i][:, 1:1 + n_ctx], prompt.expand(len(CLASSNAMES), -1, -1))
    for i in range(len(deep) + 1, len(text_in)):
        assert not torch.allclose(text_in[i][:, 1:1 + n_ctx], deep[-1].expand(len(CLASSNAMES), -1, -1))


def assert_vision_layers(model, vision_in, shallow, deep, n_ctx):
    """Shallow prompts are appended after the positional embedding and before
    ln_pre; blocks 1..len(deep) get the last n_ctx tokens replaced; the class and
    patch tokens are never touched."""
    visual = model.backbone.image.visual
    n_patches = visual.positional_embedding.shape[0]
    assert vision_in[0].shape[1] == n_patches + n_ctx
    torch.testing.assert_close(vision_in[0][:, n_patches:], visual.ln_pre(shallow).expand(len(LABELS), -1, -1))
    for i, prompt in enumerate(deep, start=1):
        assert torch.equal(vision_in[i][:, n_patches:], prompt.expand(len(LABELS), -1, -1))
    for i in range(len(deep) + 1, len(vision_in)):
        assert vision_in[i].shape[1] == n_patches + n_ctx
        assert not torch.allclose(vision_in[i][:, n_patches:], deep[-1].expand(len(LABELS), -1, -1))


def test_maple_prompt_structure(weights):
    # tiny_2ctx: N_CTX 2, PROMPT_DEPTH 3 on 4-layer towers, text width 64 -> vision width 128
    _, model = build_parity_model("MaPLe", weights)
    learner = model.prompt_learner
    assert learner.proj.in_features == model.backbone.text_width == 64
    assert learner.proj.out_features == model.backbone.vision_width == 128
    text_in, vision_in = run_with_hooks(model)
    deep_text = list(learner.compound_prompts_text)
    assert len(deep_text) == 2
    assert_text_layers(model, text_in, deep_text, 2)
    with torch.no_grad():
        deep_vision = [proj(p) for proj, p in zip(learner.compound_prompt_projections, deep_text)]
        assert_vision_layers(model, vision_in, learner.proj(learner.ctx), deep_vision, 2)


def test_ivlp_prompt_structure(weights):
    # parity case: text 2 ctx / depth 2, vision 2 ctx / depth 3, independent
    _, model = build_parity_model("IVLP", weights)
    learner = model.prompt_learner
    text_in, vision_in = run_with_hooks(model)
    assert len(learner.deep_ctx_text) == 1 and len(learner.deep_ctx_vision) == 2
    assert_text_layers(model, text_in, list(learner.deep_ctx_text), 2)
    assert_vision_layers(model, vision_in, learner.ctx_vision, list(learner.deep_ctx_vision), 2)


def test_maple_context_keeps_the_full_init_words(weights):
    """N_CTX 2 with "a photo of a": "a photo" is learned, "of a" stays in the prompt."""
    _, model = build_parity_model("MaPLe", weights, set_values=False)
    backbone, learner = model.backbone, model.prompt_learner
    expected = backbone.tokenize(["a photo of a red circle."])
    assert torch.equal(learner.classes.tokenized_prompts[0], expected[0])
    torch.testing.assert_close(learner.ctx, backbone.embed(expected)[0, 1:3])
    assert learner.classes.token_suffix.shape[1] == expected.shape[1] - 3


def test_learnable_parameters_all_live_in_the_prompt_learner(weights):
    for trainer in PARITY_CASES:
        _, model = build_parity_model(trainer, weights)
        learnable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert learnable and all(n.startswith("prompt_learner.") for n in learnable)
        assert not any(p.requires_grad for p in model.backbone.parameters())


# --------------------------------------------------------------------- GPA
def test_gpa_weights_for_the_base_to_novel_config():
    from trainers.promptsrc import gpa_weights

    w = gpa_weights(20, 15, 1)
    assert w.shape == (20,) and abs(w.sum() - 1) < 1e-12
    assert [round(float(x), 3) for x in w[12:17]] == [0.054, 0.242, 0.399, 0.242, 0.054]


# -------------------------------------------------------------- end to end
E2E = {
    "MaPLe": ("configs/trainers/MaPLe/tiny_2ctx.yaml", "MultiModalPromptLearner"),
    "IVLP": ("configs/trainers/IVLP/tiny_2+2ctx.yaml", "VLPromptLearner"),
    "PromptSRC": ("configs/trainers/PromptSRC/tiny_4+4ctx.yaml", "VLPromptLearner"),
}
# fp16 is asked for on purpose: on CPU the trainers must fall back to fp32
RUN_OPTS = ["DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("data"), classes=4, train_per_class=2,
                            test_per_class=2)


def checkpoint(out, name, epoch):
    return torch.load(osp.join(out, name, f"model.pth.tar-{epoch}"), map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def e2e(root, tmp_path_factory):
    """For each trainer: train for 2 epochs but stop after epoch 1, re-run the
    same command (resumes), then evaluate on the new classes; plus an
    uninterrupted PromptSRC run. Independent runs go in parallel."""
    base = tmp_path_factory.mktemp("e2e")

    def args(trainer, out, extra=()):
        config, _ = E2E[trainer]
        node = {"MaPLe": "MAPLE", "IVLP": "IVLP", "PromptSRC": "PROMPTSRC"}[trainer]
        return train_args(root, base / trainer / out, trainer, config, extra=[
            *extra, *RUN_OPTS, f"TRAINER.{node}.PREC", "fp16"])

    base_args = {t: args(t, "base", ["DATASET.SUBSAMPLE_CLASSES", "base"]) for t in E2E}
    with ThreadPoolExecutor(max_workers=4) as pool:
        straight = pool.submit(run_train, args("PromptSRC", "whole", ["DATASET.SUBSAMPLE_CLASSES", "base"]))
        first = dict(zip(E2E, pool.map(lambda t: run_train(
            base_args[t], script="tests/helpers/interrupt_after_first_epoch.py", check=False), E2E)))
        list(pool.map(lambda t: run_train(base_args[t]) if first[t].returncode == 3 else None, E2E))
        list(pool.map(lambda t: run_train(args(t, "new", [
            "--model-dir", base / t / "base", "--load-epoch", 2, "--eval-only",
            "DATASET.SUBSAMPLE_CLASSES", "new"])), E2E))
        straight.result()
    return base, first


@pytest.mark.parametrize("trainer", list(E2E))
def test_train_checkpoint_resume_and_evaluate_new_classes(trainer, e2e):
    base, first = e2e
    _, name = E2E[trainer]
    out = base / trainer / "base"
    assert first[trainer].returncode == 3, first[trainer].stdout[-3000:] + first[trainer].stderr[-3000:]
    assert "WARNING: PREC fp16 needs CUDA" in first[trainer].stdout  # fp32 on CPU

    state = checkpoint(out, name, 1)["state_dict"]
    assert state and all(v.dtype == torch.float32 for v in state.values())
    assert not any(k.startswith(("backbone", "clip", "visual", "transformer", "token_embedding"))
                   or "resblocks" in k for k in state), sorted(state)
    assert sum(v.numel() for v in state.values()) < 20_000  # the tiny CLIP has ~4M values

    log = read_log(out, latest=True)  # the re-run of the same command
    assert "Previous epoch: 1" in log and "epoch [2/2]" in log and "epoch [1/2]" not in log
    assert "Finish training" in log and "* accuracy:" in log

    log = read_log(base / trainer / "new")
    assert f"{name}/model.pth.tar-2" in log and "* accuracy:" in log


def test_promptsrc_resumes_mid_aggregation(e2e):
    """GPA's running sum is in the checkpoint: a run stopped after epoch 1 and
    resumed ends with the same aggregated prompts as an uninterrupted run."""
    base, _ = e2e
    assert "Using GPA model for final inference..." in read_log(base / "PromptSRC" / "base", latest=True)
    resumed = checkpoint(base / "PromptSRC" / "base", "VLPromptLearner", 2)
    straight = checkpoint(base / "PromptSRC" / "whole", "VLPromptLearner", 2)
    assert resumed["extra"]["gpa_state"].keys() == straight["state_dict"].keys()
    for k, v in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][k], v, rtol=0, atol=0)
        # after the last epoch the prompts *are* the aggregate
        torch.testing.assert_close(v, straight["extra"]["gpa_state"][k], rtol=0, atol=0)
