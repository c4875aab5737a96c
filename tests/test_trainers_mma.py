"""MMA (MultiModalAdapter): numerical parity with the reference code (golden values), where the
adapters sit, what it reduces to with its adapters silent, the adapter hook leaving every
other forward untouched, and train / checkpoint / resume / evaluate through train.py.

The golden files (tests/golden/mma/*.json for fp32, tests/golden/fp16/MultiModalAdapter_*.json
for fp16) were written by running the reference implementation (ZjjConan/Multi-Modal-Adapter
trainers/mmadapter.py with its modified clip/model.py, Dassl.pytorch c61a1b5) on CPU, patched
only to read the local weights file, beside ours on the cases ``build_case`` makes: tiny
random OpenAI-format CLIP weights (text width 64, vision width 128, 4 layers; rounded to fp16
values, so that OpenAI's fp16 round trip on loading keeps them), our learner's tensors drawn
from a seed and copied into the reference by name, and a fixed batch. Each file holds the
reference's eval logits, training loss, the gradient of every learnable tensor and its value
after one SGD step (lr 0.5, momentum 0.9, weight decay 5e-4). The reference code is not part
of this repository.
"""
import functools
import json
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
GOLDEN = osp.join(REPO, "tests", "golden", "mma")
TRAINER = "MultiModalAdapter"
CONFIG = "configs/trainers/MultiModalAdapter/tiny_ep5.yaml"
WEIGHTS_SEED, VALUES_SEED, VALUES_STD = 0, 1, 0.1
# mma: the reference configs' prompt and scale 0.001 on the tiny towers' upper layers (2..4
# of 4); mma_layer0: the reference's default prompt (no words) and a scale the logits see,
# with the layer-0 adapters (text embeddings, image tokens after ln_pre). Bottleneck 8 (the
# configs' 32 changes no code path; at 8 no adapter's ReLUs are all dead on these values,
# so every tensor gets a gradient, which a test checks).
CASES = {
    "mma": dict(ADAPTER_START=2, ADAPTER_END=4, ADAPTER_DIM=8, ADAPTER_SCALE=0.001,
                TEXT_CTX_INIT="a photo of a"),
    "mma_layer0": dict(ADAPTER_START=0, ADAPTER_END=2, ADAPTER_DIM=8, ADAPTER_SCALE=0.1,
                       TEXT_CTX_INIT=""),
}
SGD = dict(lr=0.5, momentum=0.9, weight_decay=5e-4)
FP32_TOLERANCE = 1e-5  # relative to the largest entry of each tensor


# ------------------------------------------------------------------ the cases
def write_weights(path):
    """The wide tiny CLIP (tests/test_trainers_vl.py's) with every value rounded to fp16."""
    from tests.helpers.tiny import write_openai_state_dict
    from tests.test_trainers_vl import PARITY_BACKBONE

    write_openai_state_dict(path, seed=WEIGHTS_SEED, name=PARITY_BACKBONE)
    state = torch.load(path)
    torch.save({k: v.half().float() if v.is_floating_point() else v for k, v in state.items()},
               path)
    return str(path)


def case_cfg(case, weights, prec="fp32", truncate=True):
    import train
    from dassl_compat import get_cfg_default

    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, CONFIG))
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED = str(weights), ""
    cfg.MODEL.BACKBONE.TRUNCATE_TEXT = truncate
    cfg.TRAINER.MMADAPTER.update(CASES[case])
    cfg.TRAINER.MMADAPTER.PREC = prec
    cfg.TRAINER.NAME = TRAINER
    return cfg


def set_values(learner, seed=VALUES_SEED, std=VALUES_STD):
    """Every learnable tensor, in definition order, from seeded N(0, std^2) (then cast to
    its dtype)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def build_case(case, weights, prec="fp32", truncate=True, device="cpu"):
    """Our trainer (no data loaders) with the case's values, and the batch (on ``device``)."""
    import trainers  # noqa: F401  (registers the trainers)
    from clip_backbone import build_backbone
    from dassl_compat import TRAINER_REGISTRY
    from tests.test_trainers_vl import CLASSNAMES, parity_inputs

    cfg = case_cfg(case, weights, prec, truncate)
    cls = TRAINER_REGISTRY.get(TRAINER)
    t = cls.__new__(cls)
    t.cfg = cfg
    torch.manual_seed(0)
    t.model = t.build_custom_clip(cfg, CLASSNAMES, build_backbone(cfg, device, prec)).to(device)
    set_values(t.model.prompt_learner)
    return t, *(x.to(device) for x in parity_inputs())


def run_case(t, images, labels):
    """Eval logits, training loss, every learnable tensor's gradient and its value after one
    SGD step."""
    t.model.eval()
    with torch.no_grad(), t.model.cached_text_features():
        logits = t.model(images)
    t.model.train()
    learnable = dict(t.model.prompt_learner.named_parameters())
    optim = torch.optim.SGD(learnable.values(), **SGD)
    loss, _ = t.compute_loss(images, labels)
    optim.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in learnable.items()}
    optim.step()
    return logits, loss.detach(), grads, {k: p.detach().clone() for k, p in learnable.items()}


@functools.lru_cache(maxsize=None)
def weights_in(tmp):
    return write_weights(osp.join(tmp, "tiny_wide_fp16_values.pt"))


def fp16_case(golden, tmp, truncate=True):
    """tests/test_parity_fp16.py's case builder for our fp16 golden files (their ``builder``)."""
    return build_case(golden["case"], weights_in(tmp), "fp16", truncate)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return weights_in(str(tmp_path_factory.mktemp("weights")))


def load_golden(case):
    with open(osp.join(GOLDEN, f"{case}.json")) as f:
        return json.load(f)


def error(ours, record):
    """(largest absolute difference, largest |reference entry|) against a golden record: full
    values, or for a large tensor its sum, sum of |entries| (per entry) and first 64 values."""
    ours = ours.detach().double().flatten()
    if "values" in record:
        ref = torch.tensor(record["values"], dtype=torch.float64)
        return (ours - ref).abs().max().item(), ref.abs().max().item()
    first = torch.tensor(record["first64"], dtype=torch.float64)
    err = max((ours[:64] - first).abs().max().item(),
              abs(ours.sum().item() - record["sum"]) / ours.numel(),
              abs(ours.abs().sum().item() - record["abs_sum"]) / ours.numel())
    return err, record["max_abs"]


def parity_errors(golden, logits, loss, grads, after):
    """Each quantity's worst difference from the golden file, relative to its largest entry."""
    ref_logits = torch.tensor(golden["logits"], dtype=torch.float64)
    worst = {"logits": ((logits.double() - ref_logits).abs().max() / ref_logits.abs().max()).item(),
             "loss": abs(loss.item() - golden["loss"]) / abs(golden["loss"])}
    for kind, ours, records in (("grad", grads, golden["grads"]),
                                ("step", after, golden["params_after_step"])):
        assert set(ours) == set(records)
        worst[kind] = max(err / scale for err, scale in
                          (error(ours[name], record) for name, record in records.items()))
    return worst


# ------------------------------------------------------------------ parity
# fp32, relative to each tensor's largest entry. Full text (the reference's 77 tokens):
# measured 0 (bit for bit) on the recording machine. Truncated text (the default) rounds
# shorter sums: measured worst 6.2e-6 (gradients). Both paths differ from exact arithmetic
# and their float32 errors add, so the bound leaves room for other CPUs and torches.
FP32_TOLERANCE = {"full": 1e-5, "truncated": 5e-5}


@pytest.mark.parametrize("text", ["full", "truncated"])
@pytest.mark.parametrize("case", list(CASES))
def test_fp32_logits_loss_gradients_and_step_equal_the_reference(case, text, weights):
    golden = load_golden(case)
    state = torch.load(weights)
    assert sum(float(v.double().abs().sum()) for v in state.values() if v.is_floating_point()) \
        == pytest.approx(golden["weights_abs_sum"], rel=1e-12), "tiny weights changed"
    t, images, labels = build_case(case, weights, truncate=text == "truncated")
    flat = torch.cat([p.detach().double().flatten() for p in t.model.prompt_learner.parameters()])
    assert [flat.sum().item(), flat.abs().sum().item()] == \
        pytest.approx(golden["values_fingerprint"], rel=1e-12), "adapter values changed"
    assert list(dict(t.model.prompt_learner.named_parameters())) == list(golden["dtypes"])
    # the case reaches every adapter: no gradient is all zero (a dead ReLU would hide a path)
    assert all(r["n_zero"] < torch.Size(r["shape"]).numel() for r in golden["grads"].values())
    worst = parity_errors(golden, *run_case(t, images, labels))
    assert all(err <= FP32_TOLERANCE[text] for err in worst.values()), worst


@pytest.mark.parametrize("case", list(CASES))
def test_the_parity_check_sees_one_nudged_adapter_tensor(case, weights):
    """The negative control: N(0, 1e-3) added to one adapter tensor. Added to the reference's
    instead, the check failed by the same amounts: gradients 1.1e-2 and 1.7e-2 of their
    largest entry, parameters after the step 8.6e-3 and 7.9e-3. The logits see it only where
    the scale lets them (mma_layer0, scale 0.1: 5.6e-5); at the configs' 0.001 they move
    8.9e-7, below the tolerance: there the gradients are the detector."""
    t, images, labels = build_case(case, weights, truncate=False)
    tensor = dict(t.model.prompt_learner.named_parameters())["text_adapter.2.down.0.weight"]
    with torch.no_grad():
        tensor.add_(torch.randn(tensor.shape, generator=torch.Generator().manual_seed(123)) * 1e-3)
    worst = parity_errors(load_golden(case), *run_case(t, images, labels))
    assert min(worst["grad"], worst["step"]) > 100 * FP32_TOLERANCE["truncated"], worst
    assert (worst["logits"] > FP32_TOLERANCE["truncated"]) == (case == "mma_layer0"), worst


# ---------------------------------------------------------------- structure
def test_adapters_sit_on_the_configured_layers_with_the_references_widths_and_init(weights):
    t, _, _ = build_case("mma", weights)
    backbone, learner = t.model.backbone, t.model.prompt_learner
    for adapters, width in ((learner.text_adapter, backbone.text_width),
                            (learner.visual_adapter, backbone.vision_width)):
        assert [k for k, a in enumerate(adapters) if a is not None] == [2, 3, 4]
        assert (adapters[2].down[0].in_features, adapters[2].down[0].out_features) == (width, 8)
        assert (adapters[2].up.in_features, adapters[2].up.out_features) == (8, width)
    assert (backbone.text_width, backbone.vision_width) == (64, 128)  # the towers differ
    assert [k for k, a in enumerate(learner.shared_adapter) if a is not None] == [2, 3, 4]
    shared = learner.shared_adapter[3][0]
    assert (shared.in_features, shared.out_features) == (8, 8)
    assert isinstance(learner.shared_adapter[3][1], torch.nn.ReLU)
    assert t.prompted_towers() == ("text", "image")  # the image features are learned
    t.cfg.defrost()
    t.cfg.TRAINER.MMADAPTER.ADAPTER_END = 3
    assert t.prompt_depth() == 4  # PACE: the residual at layer k gets layer k's sigma

    # the reference's init: Kaiming-normal (fan_out, ReLU) weights, zero biases
    fresh = t.build_custom_clip(t.cfg, ["a", "b"], backbone).prompt_learner
    torch.manual_seed(0)
    big = type(fresh)(case_cfg("mma", weights), ["a"], backbone)  # 8 x 128 weights: a sample
    for name, p in list(fresh.named_parameters()) + list(big.named_parameters()):
        if name.endswith("bias"):
            assert not p.any(), name
    std = big.visual_adapter[2].up.weight.std().item()  # fan_out 128
    assert abs(std - (2 / 128) ** 0.5) < 0.15 * (2 / 128) ** 0.5


def test_fp16_adapters_are_fp16_as_the_references(weights):
    t, _, _ = build_case("mma", weights, prec="fp16")
    assert {p.dtype for p in t.model.prompt_learner.parameters()} == {torch.float16}


def test_the_text_prompts_are_the_fixed_words_and_the_class_name(weights):
    from tests.test_trainers_vl import CLASSNAMES

    for case, words in (("mma", "a photo of a "), ("mma_layer0", "")):
        t, _, _ = build_case(case, weights)
        backbone, learner = t.model.backbone, t.model.prompt_learner
        names = [c.replace("_", " ") for c in CLASSNAMES]
        tokens = backbone.tokenize([f"{words}{n}." for n in names])
        assert torch.equal(learner.classes.tokenized_prompts, tokens)
        assert torch.equal(learner.text_embeddings(), backbone.embed(tokens))
        assert not any(p.requires_grad for p in learner.buffers())


def tower_trace(model, images):
    """Batch-first tensors on one eval forward, per tower: what enters each block, what each
    block returns, and what enters the final LayerNorm."""
    traces, handles = {}, []
    towers = {"text": (model.backbone.text.transformer.resblocks, model.backbone.text.ln_final),
              "image": (model.backbone.image.visual.transformer.resblocks,
                        model.backbone.image.visual.ln_post)}
    for tower, (blocks, final_norm) in towers.items():
        trace = traces[tower] = {"in": [], "out": []}
        for block in blocks:
            handles.append(block.register_forward_pre_hook(
                lambda m, args, tr=trace: tr["in"].append(args[0].permute(1, 0, 2))))
            handles.append(block.register_forward_hook(
                lambda m, args, out, tr=trace: tr["out"].append(out.permute(1, 0, 2))))
        handles.append(final_norm.register_forward_pre_hook(
            lambda m, args, tr=trace: tr.__setitem__("final", args[0])))
    model.eval()
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    return traces


def test_each_adapter_adds_its_residual_to_the_output_of_its_block(weights):
    """Block k's output plus scale * up(shared(down(ln_1(block k's input)))) enters block k+1
    (the final LayerNorm after the last block), for k in ADAPTER_START..END only."""
    t, images, _ = build_case("mma", weights)
    model, learner = t.model, t.model.prompt_learner
    traces = tower_trace(model, images)
    blocks = {"text": model.backbone.text.transformer.resblocks,
              "image": model.backbone.image.visual.transformer.resblocks}
    own = {"text": learner.text_adapter, "image": learner.visual_adapter}
    with torch.no_grad():
        for tower, trace in traces.items():
            after = trace["in"][1:] + [trace["final"]]
            for k in range(1, 5):
                x, out = trace["in"][k - 1], trace["out"][k - 1]
                if k < 2:
                    assert torch.equal(after[k - 1], out), (tower, k)
                    continue
                a = own[tower][k]
                y = a.up(learner.shared_adapter[k](a.down(blocks[tower][k - 1].ln_1(x))))
                torch.testing.assert_close(after[k - 1], out + 0.001 * y, rtol=0, atol=1e-6)
                assert not torch.equal(after[k - 1], out), (tower, k)


def test_layer_0_adapts_the_text_embeddings_and_the_image_tokens_after_ln_pre(weights):
    t, images, _ = build_case("mma_layer0", weights)
    model, learner = t.model, t.model.prompt_learner
    traces = tower_trace(model, images)

    def residual(tower, x):
        a = (learner.text_adapter if tower == "text" else learner.visual_adapter)[0]
        return a.up(learner.shared_adapter[0](a.down(x))) * 0.1

    with torch.no_grad():
        text_in = traces["text"]["in"][0]
        emb = learner.text_embeddings()[:, :text_in.shape[1]]
        pos = model.backbone.text.positional_embedding[:text_in.shape[1]]
        torch.testing.assert_close(text_in, emb + residual("text", emb) + pos, rtol=0, atol=1e-6)
        v = model.backbone.image.visual
        x = v.conv1(images).flatten(2).permute(0, 2, 1)
        x = torch.cat([v.class_embedding.expand(len(x), 1, -1), x], dim=1) + v.positional_embedding
        x = v.ln_pre(x)
        torch.testing.assert_close(traces["image"]["in"][0], x + residual("image", x),
                                   rtol=0, atol=1e-6)


def test_gradient_scale_is_the_identity_with_a_scaled_backward():
    from trainers.mma import GradientScale

    x = torch.randn(3, requires_grad=True)
    y = GradientScale.apply(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.25, 0.5, 0.75]))


def test_the_adapters_learn_at_scale_one_and_the_towers_see_the_scaled_residual(weights,
                                                                                 monkeypatch):
    """The reference's gradient scale layers: the adapters' gradient is 1 / ADAPTER_SCALE
    times that of the plain ``scale * adapter`` residual, whose forward it equals."""
    import trainers.mma as mma

    t, images, labels = build_case("mma_layer0", weights)  # scale 0.1, layers 0..2
    learner = t.model.prompt_learner
    loss, _ = t.compute_loss(images, labels)
    scaled = torch.autograd.grad(loss, list(learner.parameters()))
    monkeypatch.setattr(mma, "GradientScale",
                        type("Identity", (), {"apply": staticmethod(lambda x, scale: x)}))
    plain_loss, _ = t.compute_loss(images, labels)
    plain = torch.autograd.grad(plain_loss, list(learner.parameters()))
    assert torch.equal(loss, plain_loss)
    names = [n for n, _ in learner.named_parameters()]
    for name, g, p in zip(names, scaled, plain):
        if name.startswith(("text_adapter.0.", "visual_adapter.0.", "shared_adapter.0.")):
            torch.testing.assert_close(g, p, rtol=1e-4, atol=1e-9)  # layer 0: no scaling
        else:
            torch.testing.assert_close(g, p / 0.1, rtol=1e-3, atol=1e-7)


# ---------------------------------------------------------------- reductions and hooks
def test_with_silent_adapters_mma_is_zero_shot_clip_bit_for_bit(weights):
    """Every up-projection zero: each residual is exactly 0, and MMA's logits are zero-shot
    CLIP's with the prompt "a photo of a {class}." (ZeroshotCLIP on a dataset with that hand
    template), bit for bit."""
    from tests.test_trainers_vl import CLASSNAMES
    from trainers.zsclip import ZeroshotModel

    t, images, _ = build_case("mma_layer0", weights)
    learner = t.model.prompt_learner
    with torch.no_grad():
        for adapters in (learner.text_adapter, learner.visual_adapter):
            for a in adapters:
                if a is not None:
                    a.up.weight.zero_()
                    a.up.bias.zero_()
    learner.classes = build_case("mma", weights)[0].model.prompt_learner.classes  # the words
    zero_shot = ZeroshotModel(t.model.backbone,
                              [f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
    t.model.eval()
    with torch.no_grad():
        assert torch.equal(t.model(images), zero_shot(images))


def test_an_adapter_hook_that_adds_nothing_leaves_both_towers_bit_for_bit(weights):
    from clip_backbone import TowerHooks

    t, images, _ = build_case("mma", weights)
    backbone, learner = t.model.backbone, t.model.prompt_learner
    calls = []

    def nothing(x, layer, block):
        calls.append(layer)

    tokens = learner.classes.tokenized_prompts
    with torch.no_grad():
        for hooks in (None, TowerHooks(hidden_layers=(0, 2, 4))):
            assert torch.equal(backbone.image(images, hooks=hooks, block_adapter=nothing),
                               backbone.image(images, hooks=hooks))
            embeddings = learner.text_embeddings()
            assert torch.equal(
                backbone.text(embeddings, tokens, hooks=hooks, block_adapter=nothing),
                backbone.text(embeddings, tokens, hooks=hooks))
    assert calls == [0, 1, 2, 3, 4] * 4


def test_pace_noise_reaches_every_adapter_residual_with_its_layer(weights):
    """The learned contributions pass through the prompt-noise hook (PACE's, as its official
    code puts the noise on adapter outputs), batch-first, once per adapted layer."""
    from clip_backbone import TowerHooks

    t, images, _ = build_case("mma", weights)
    model = t.model
    seen = {"text": [], "image": []}

    def recorder(tower):
        def noise(residual, layer, batch_size):
            seen[tower].append((layer, tuple(residual.shape), batch_size))
            return residual * 2
        return noise

    with torch.no_grad():
        text = model.encode_text_features(TowerHooks(prompt_noise=recorder("text")))
        image = model.encode_image_features(images, TowerHooks(prompt_noise=recorder("image")))
        assert not torch.equal(text, model.encode_text_features())
        assert not torch.equal(image, model.encode_image_features(images))
    n_cls, tokens = len(model.prompt_learner.classes), 1 + (32 // 8) ** 2
    assert [(layer, batch) for layer, _, batch in seen["text"]] == [(k, n_cls) for k in (2, 3, 4)]
    assert all(shape[0] == n_cls and shape[2] == 64 for _, shape, _ in seen["text"])
    assert seen["image"] == [(k, (4, tokens, 128), 4) for k in (2, 3, 4)]


# ---------------------------------------------------------------- configs and end to end
def test_the_reference_configs_merge_with_their_values():
    import train
    from dassl_compat import get_cfg_default

    for name, batch in (("vit_b16_ep5", 16), ("vit_b16_ep5_imnet", 128)):
        cfg = get_cfg_default()
        train.extend_cfg(cfg)
        cfg.merge_from_file(osp.join(REPO, "configs", "trainers", TRAINER, name + ".yaml"))
        c = cfg.TRAINER.MMADAPTER
        assert (c.TEXT_CTX_INIT, c.ADAPTER_START, c.ADAPTER_END, c.ADAPTER_DIM, c.ADAPTER_SCALE,
                c.PREC) == ("a photo of a", 5, 12, 32, 0.001, "amp")
        assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH,
                cfg.OPTIM.WARMUP_EPOCH) == (batch, 0.0015, 5, 0)


def test_bad_adapter_layers_are_refused_with_the_fix(weights):
    from errors import ConfigError

    for values in (dict(ADAPTER_START=3, ADAPTER_END=5), dict(ADAPTER_START=3, ADAPTER_END=2),
                   dict(ADAPTER_SCALE=0.0)):
        CASES["bad"] = dict(CASES["mma"], **values)
        try:
            with pytest.raises(ConfigError, match=r"ADAPTER_END <= 4 \(the towers' depth\)"):
                build_case("bad", weights)
        finally:
            del CASES["bad"]


def test_train_checkpoint_and_evaluate_new_classes(tmp_path):
    from tests.helpers.tiny import make_toy_dataset, read_log, run_train, train_args

    root = make_toy_dataset(str(tmp_path / "data"), classes=4, train_per_class=2, test_per_class=2)
    out = tmp_path / "base"
    # PREC fp16 is asked for on purpose: on CPU it falls back to fp32
    opts = ["DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 2, "TRAINER.MMADAPTER.PREC", "fp16"]
    run_train(train_args(root, out, TRAINER, CONFIG, extra=[
        *opts, "DATASET.SUBSAMPLE_CLASSES", "base"]))
    state = torch.load(osp.join(out, "adapter_learner", "model.pth.tar-2"),
                       weights_only=True)["state_dict"]
    assert state and all(k.startswith(("text_adapter.", "visual_adapter.", "shared_adapter."))
                         for k in state)  # no class-name buffers, nothing of CLIP
    assert "WARNING: PREC fp16 needs CUDA" in read_log(out)
    run_train(train_args(root, tmp_path / "new", TRAINER, CONFIG, extra=[
        "--model-dir", out, "--load-epoch", 2, "--eval-only", *opts,
        "DATASET.SUBSAMPLE_CLASSES", "new"]))
    log = read_log(tmp_path / "new")
    assert "adapter_learner/model.pth.tar-2" in log and "* accuracy:" in log


def test_the_protocol_table_and_the_published_row_are_the_references():
    from tools import protocol, results

    cfg = protocol.default_config
    assert cfg("mmadapter", "base2new_train", "imagenet") == "vit_b16_ep5_imnet"  # batch 128
    assert cfg("MultiModalAdapter", "base2new_test", "dtd") == "vit_b16_ep5"
    assert cfg("mmadapter", "xd_train", "imagenet") == cfg("mmadapter", "dg_test", "imagenet_a") \
        == "vit_b16_ep5_imnet"
    assert results.published_label(TRAINER, "vit_b16_ep5") == "MMA"
    assert results.PUBLISHED["MMA"] == (83.20, 76.80, 79.87)  # its README's 11-dataset average
