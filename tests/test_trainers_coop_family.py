"""CoOp, CoCoOp and KgCoOp: numerical parity with the reference code (pinned by
golden values), prompt structure, and train / checkpoint / resume / evaluate
through train.py.

The golden files (tests/golden/coop_family/*.json) were made by running the reference
implementations (KaiyangZhou/CoOp trainers/coop.py and trainers/cocoop.py with
its vendored ``clip``; htyao89/KgCoOp trainers/kgcoop.py), on CPU in fp32, on
the tiny random CLIP that ``write_tiny_openai_weights`` writes. Each file holds
the prompt parameter values both codes were given, and the reference's logits
and training loss. The reference code itself is not part of this repository.
"""
import functools
import json
import logging
import os
import os.path as osp
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.tiny import ENGINE, HANG_GUARD

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "coop_family"
TINY = "tiny-vit-quickgelu"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))


# ------------------------------------------------------------------ helpers
def write_tiny_openai_weights(path, seed=0):
    """Save a tiny random CLIP as an OpenAI-format state dict; return the sum
    of |w| over all tensors (a fingerprint the golden files record).

    Values are rounded to fp16: OpenAI's ``build_model`` rounds weights to
    fp16 on load, so rounding first makes both codes use exactly the file."""
    import open_clip

    import clip_backbone  # noqa: F401  (registers the tiny model configs)

    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # "No pretrained weights loaded ..."
    try:
        model = open_clip.create_model(TINY, pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    state = {k: v.half().float() if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save(state, path)
    return sum(float(v.double().abs().sum()) for v in state.values() if v.is_floating_point())


def trainer_class(name):
    from trainers.cocoop import CoCoOp
    from trainers.coop import CoOp
    from trainers.kgcoop import KgCoOp

    return {"CoOp": CoOp, "CoCoOp": CoCoOp, "KgCoOp": KgCoOp}[name]


def make_cfg(weights, trainer, dataset="Caltech101", node_values=None):
    from dassl_compat import get_cfg_default
    from train import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.MODEL.BACKBONE.NAME = str(weights)
    cfg.INPUT.SIZE = (32, 32)
    cfg.DATASET.NAME = dataset
    node = cfg.TRAINER[trainer_class(trainer).METHOD_NODE]
    node.PREC = "fp32"
    node.update(node_values or {})
    return cfg


@functools.lru_cache(maxsize=2)
def frozen_backbone(weights):
    """The frozen CLIP is never changed by a trainer, so tests share one."""
    from clip_backbone import build_backbone

    return build_backbone(make_cfg(weights, "CoOp"), "cpu", "fp32")


def build_trainer_model(weights, trainer, classnames, dataset="Caltech101", node_values=None):
    """A trainer object with its model built (no data loaders), on CPU, fp32."""
    cls = trainer_class(trainer)
    cfg = make_cfg(weights, trainer, dataset, node_values)
    t = cls.__new__(cls)  # skip TrainerX.__init__: no dataset needed here
    t.cfg = cfg
    torch.manual_seed(0)
    t.model = t.build_custom_clip(cfg, classnames, frozen_backbone(str(weights)))
    return t


def golden_inputs(golden):
    g = torch.Generator().manual_seed(golden["image_seed"])
    images = torch.randn(3, 3, 32, 32, generator=g)
    return images, torch.tensor(golden["labels"])


def run_golden_case(golden, weights):
    """Our initial context, logits (evaluation path) and training loss for a case."""
    t = build_trainer_model(weights, golden["trainer"], golden["classnames"],
                            golden["dataset"], golden["cfg"])
    learner = t.model.prompt_learner
    init_ctx = learner.ctx.detach().clone()
    learner.load_state_dict({k: torch.tensor(v) for k, v in golden["params"].items()})
    images, labels = golden_inputs(golden)
    t.model.eval()
    with torch.no_grad(), t.model.cached_text_features():
        logits = t.model(images)
    t.model.train()
    loss, _ = t.compute_loss(images, labels)
    return init_ctx, logits, loss.detach()


# ------------------------------------------------------------------ parity
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-vit-openai.pt"
    fingerprint = write_tiny_openai_weights(path)
    return path, fingerprint


@pytest.mark.parametrize("case", CASES)
def test_logits_and_loss_equal_the_reference(case, tiny_weights):
    weights, fingerprint = tiny_weights
    golden = json.loads((GOLDEN / f"{case}.json").read_text())
    assert fingerprint == pytest.approx(golden["weights_abs_sum"], rel=1e-9), (
        "the tiny random CLIP differs from the one the golden values were made with "
        "(open_clip or torch init changed?)"
    )
    init_ctx, logits, loss = run_golden_case(golden, weights)
    ref_logits = torch.tensor(golden["logits"])
    scale = ref_logits.abs().max()
    assert (logits - ref_logits).abs().max() <= 1e-4 * scale
    assert loss.item() == pytest.approx(golden["loss"], rel=1e-4)
    if golden.get("init_ctx") is not None:  # CTX_INIT: the words' token embeddings
        torch.testing.assert_close(init_ctx, torch.tensor(golden["init_ctx"]), rtol=0, atol=0)


# ------------------------------------------------------------------ structure
CLASSNAMES = ["golden_retriever", "space shuttle", "cat"]


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_coop_class_token_position(position, tiny_weights):
    t = build_trainer_model(tiny_weights[0], "CoOp", CLASSNAMES,
                            node_values=dict(N_CTX=4, CLASS_TOKEN_POSITION=position))
    learner = t.model.prompt_learner
    classes = learner.classes
    prompts = learner()
    ctx = learner.ctx
    assert prompts.shape == (3, classes.tokenized_prompts.shape[1], t.model.backbone.text_width)
    for i, name_len in enumerate(classes.name_lens):
        p, suffix = prompts[i], classes.token_suffix[i]
        name, rest = suffix[:name_len], suffix[name_len:]
        assert torch.equal(p[0], classes.token_prefix[i, 0])  # SOS always first
        if position == "end":
            expected = [ctx, name, rest]
        elif position == "middle":
            expected = [ctx[:2], name, ctx[2:], rest]
        else:
            expected = [name, ctx, rest]
        assert torch.equal(p[1:], torch.cat(expected))
    # EOT (the pooled token) is where the token ids say it is: sequence length unchanged
    assert prompts.shape[1] == t.model.backbone.context_length


def test_coop_csc_gives_each_class_its_own_context(tiny_weights):
    t = build_trainer_model(tiny_weights[0], "CoOp", CLASSNAMES,
                            node_values=dict(N_CTX=4, CSC=True))
    learner = t.model.prompt_learner
    assert learner.ctx.shape == (3, 4, t.model.backbone.text_width)
    prompts = learner()
    for i in range(3):
        assert torch.equal(prompts[i, 1:5], learner.ctx[i])
    shared = build_trainer_model(tiny_weights[0], "CoOp", CLASSNAMES,
                                 node_values=dict(CSC=True, CTX_INIT="a photo of a"))
    assert shared.model.prompt_learner.ctx.shape == (4, t.model.backbone.text_width)


def test_cocoop_meta_net_widths_come_from_the_backbone(tiny_weights):
    t = build_trainer_model(tiny_weights[0], "CoCoOp", CLASSNAMES, node_values=dict(N_CTX=4))
    backbone, meta = t.model.backbone, t.model.prompt_learner.meta_net
    assert (meta.linear1.in_features, meta.linear1.out_features) == \
        (backbone.embed_dim, backbone.embed_dim // 16)
    assert meta.linear2.out_features == backbone.text_width
    learnable = [n for n, p in t.model.named_parameters() if p.requires_grad]
    assert learnable == ["prompt_learner.ctx"] + [
        f"prompt_learner.meta_net.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]


def test_cocoop_prompts_are_per_image(tiny_weights):
    t = build_trainer_model(tiny_weights[0], "CoCoOp", CLASSNAMES, node_values=dict(N_CTX=4))
    learner = t.model.prompt_learner
    features = F.normalize(torch.randn(2, t.model.backbone.embed_dim), dim=-1)
    prompts = learner(features)
    assert prompts.shape[:2] == (2, 3)
    shift = learner.meta_net(features)
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(prompts[b, c, 1:5], learner.ctx + shift[b])
    assert not torch.equal(prompts[0, :, 1:5], prompts[1, :, 1:5])


def test_cocoop_evaluation_caches_nothing_and_chunks_exactly(tiny_weights, monkeypatch):
    t = build_trainer_model(tiny_weights[0], "CoCoOp", CLASSNAMES, node_values=dict(N_CTX=4))
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.enable_grad():
        whole = t.model(images).detach()  # one text-encoder call over 5 x 3 prompts
    monkeypatch.setattr(type(t.model), "MAX_PROMPTS_PER_CALL", 6)  # chunks of 2 images
    with torch.no_grad(), t.model.cached_text_features():
        assert t.model._text_cache is None
        chunked = t.model(images)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_kgcoop_hand_crafted_features_use_kgcoops_templates(tiny_weights):
    from datasets import dataset_template, kgcoop_template

    assert kgcoop_template("DescribableTextures") == "a photo of a {}, a type of texture."
    assert dataset_template("DescribableTextures") == "{} texture."
    assert kgcoop_template("OxfordPets") == dataset_template("OxfordPets")
    t = build_trainer_model(tiny_weights[0], "KgCoOp", CLASSNAMES, dataset="DescribableTextures",
                            node_values=dict(CTX_INIT="a photo of a"))
    backbone = t.model.backbone
    expected = backbone.encode_prompts(
        ["a photo of a golden retriever, a type of texture.",
         "a photo of a space shuttle, a type of texture.", "a photo of a cat, a type of texture."])
    torch.testing.assert_close(t.model.hand_text_features, F.normalize(expected, dim=-1))
    assert [n for n, p in t.model.named_parameters() if p.requires_grad] == ["prompt_learner.ctx"]
    assert list(t.model.prompt_learner.state_dict()) == ["ctx"]  # nothing frozen is saved


def test_kgcoop_loss_is_ce_plus_w_times_text_distance(tiny_weights):
    t = build_trainer_model(tiny_weights[0], "KgCoOp", CLASSNAMES, node_values=dict(N_CTX=4, W=8.0))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2])
    loss, summary = t.compute_loss(images, labels)
    text = F.normalize(t.model.text_features(), dim=-1)
    distance = 1 - (text * t.model.hand_text_features).sum(-1).mean()
    ce = F.cross_entropy(t.model(images), labels)
    torch.testing.assert_close(loss, ce + 8.0 * distance)
    assert summary["kg"] == pytest.approx(distance.item(), rel=1e-5)
    loss.backward()
    assert t.model.prompt_learner.ctx.grad is not None


def test_peer_configs_merge():
    from dassl_compat import get_cfg_default
    from train import extend_cfg

    for path, check in [
        ("configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
         lambda c: (c.TRAINER.COCOOP.N_CTX, c.TRAINER.COCOOP.CTX_INIT,
                    c.DATALOADER.TRAIN_X.BATCH_SIZE) == (4, "a photo of a", 1)),
        ("configs/trainers/CoCoOp/vit_b16_c16_ep10_batch1.yaml",
         lambda c: (c.TRAINER.COCOOP.N_CTX, c.OPTIM.MAX_EPOCH) == (16, 10)),
        ("configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml",
         lambda c: (c.TRAINER.COOP.CTX_INIT, c.TRAINER.COOP.N_CTX, c.TRAINER.COOP.W,
                    c.DATALOADER.TRAIN_X.BATCH_SIZE)
         == ("a photo of a", 4, 8.0, 128)),  # N_CTX 4 and W 8.0: what KgCoOp's scripts pass
    ]:
        cfg = get_cfg_default()
        extend_cfg(cfg)
        cfg.merge_from_file(str(REPO / path))
        assert check(cfg), path


# ------------------------------------------------------------------ end to end
def _run_both(commands, env):
    """Run the trainers' train.py commands side by side (each is a subprocess)."""
    procs = {name: subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, args in commands.items()}
    outs = {name: p.communicate(timeout=HANG_GUARD)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outs[name][-3000:]
    return outs


def test_cocoop_and_kgcoop_train_checkpoint_resume_and_evaluate_new_classes(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "datasets.make_toy_dataset", "--out", str(data / "toy"),
                    "--classes", "4", "--train-per-class", "4", "--test-per-class", "3"],
                   cwd=REPO, check=True, capture_output=True)
    env = {**os.environ, "DASSL_ENGINE": ENGINE}
    learnable = {
        "CoCoOp": ["ctx"] + [f"meta_net.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias")],
        "KgCoOp": ["ctx"],
    }

    def args(trainer, output_dir, *flags, opts=()):
        return ["--root", str(data), "--seed", "1", "--trainer", trainer,
                "--dataset-config-file", "configs/datasets/image_folder.yaml",
                "--config-file", f"configs/trainers/{trainer}/tiny_ctxv1.yaml",
                "--output-dir", str(output_dir), *flags, "DATASET.NUM_SHOTS", "2", *opts]

    out = {t: tmp_path / t for t in learnable}
    base = ("DATASET.SUBSAMPLE_CLASSES", "base")
    # 1) train one epoch on the base classes
    logs = _run_both({t: args(t, out[t], opts=(*base, "OPTIM.MAX_EPOCH", "1"))
                      for t in learnable}, env)
    for t, names in learnable.items():
        assert "No checkpoint found, train from scratch" in logs[t]
        path = out[t] / "prompt_learner" / "model.pth.tar-1"
        ckpt = torch.load(path, weights_only=True)
        assert list(ckpt["state_dict"]) == names  # learnable parameters only, no CLIP
        assert ckpt["epoch"] == 1
        assert osp.getsize(path) < 100_000
    # 2) the same output dir with more epochs resumes after epoch 1
    logs = _run_both({t: args(t, out[t], opts=(*base, "OPTIM.MAX_EPOCH", "2"))
                      for t in learnable}, env)
    for t in learnable:
        assert f"Found checkpoint at {out[t]} (will resume training)" in logs[t]
        assert "Previous epoch: 1" in logs[t]
        assert "epoch [1/2]" not in logs[t] and re.search(r"epoch \[2/2\] batch", logs[t])
        assert (out[t] / "prompt_learner" / "model.pth.tar-2").is_file()
        assert "Finish training" in logs[t]
    # 3) evaluate the epoch-2 prompts on the new classes
    logs = _run_both({t: args(t, tmp_path / f"{t}_new", "--eval-only", "--model-dir", str(out[t]),
                              "--load-epoch", "2", opts=("DATASET.SUBSAMPLE_CLASSES", "new"))
                      for t in learnable}, env)
    for t in learnable:
        assert re.search(r"Load .*model\.pth\.tar-2 to prompt_learner \(epoch=2", logs[t])
        assert "* total: 6" in logs[t]  # 2 new classes x 3 test images
        assert re.search(r"\* accuracy: \d+\.\d%", logs[t])
