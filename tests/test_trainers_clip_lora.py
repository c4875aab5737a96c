"""CLIP-LoRA: numerical parity with the reference code (golden values, fp32 and fp16), the
frozen side staying frozen, reductions, and training through train.py.

The golden files (tests/golden/clip_lora/*.json) were made by running the reference
(MaxZanella/CLIP-LoRA: its vendored OpenAI ``clip`` and its ``loralib``, applied by its own
``apply_lora``) on CPU, on the tiny OpenAI-format weights ``write_parity_weights`` writes, with
our LoRA values copied into its ``w_lora_A``/``w_lora_B`` by name. The reference has no
trainer class: its step is the loop body of ``lora.py`` (``run_lora``) and its evaluation that
of ``evaluate_lora``, run as written, patched only for the device: ``.cuda()`` dropped and, in
fp16, its ``autocast(device_type="cuda")`` and ``torch.cuda.amp.GradScaler()`` on the CPU
(in fp32, OpenAI's ``convert_weights`` skipped and its CUDA autocast and GradScaler left as
they are, which a CPU run ignores). Its optimizer and schedule are its own (AdamW, weight
decay 1e-2, CosineAnnealingLR to 1e-6 over n_iters x shots iterations), with a larger
learning rate so that one step shows. Dropout masks come from ``portable_dropout`` on both
sides (torch's CPU dropout draws differently on different CPUs). The reference code is not
part of this repository.

What is pinned, per case: the evaluation logits (loralib's merged weights), and for each
training step (three in fp32; seven in fp16, where the GradScaler skips the first five, its
scaled fp16 loss overflowing) on its own batch the logits, the loss, the GradScaler's scale,
whether the step was skipped, the gradient of every LoRA tensor and the learning rate after
it; and every LoRA tensor after the last step. Full-length text
(``MODEL.BACKBONE.TRUNCATE_TEXT False``) as the reference: then fp16 is bit for bit on the
machine and torch the files were recorded with. Truncated text changes the shape, and so the
random draws, of the text tower's dropout: training is then not comparable, and the
evaluation logits are within float (fp32) or fp16 rounding.
"""
import json
import math
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "clip_lora"
CONFIG = "configs/trainers/CLIPLoRA/tiny_lora.yaml"
# the toy dataset's classes (make_toy_dataset --classes 5), in label order
CLASSNAMES = ["blue triangle", "green square", "purple circle", "red circle", "yellow cross"]
CASES = {
    # the reference's defaults: both towers, every block, q, k, v, rank 2, alpha 1
    "default": dict(layers=4, node={}),
    # text tower only (the image features are frozen CLIP's, computed without gradients)
    "text_only": dict(layers=4, node={"ENCODER": "text"}),
    # 12 blocks, so that POSITION maps onto loralib's table; the output projection too
    "half_up_qkvo": dict(layers=12, node={"POSITION": "half-up", "PARAMS": ["q", "k", "v", "o"],
                                          "R": 4, "ALPHA": 2}),
}
WEIGHTS_SEED, LORA_SEED, LORA_STD, INPUT_SEED, DROPOUT_SEED = 0, 1, 0.1, 2, 3
BATCH, LR = 4, 0.01
# training steps per precision: in fp16 the GradScaler skips the first five (the scaled loss
# overflows from its initial 65536 down to 4096), so two more are taken
STEPS = {"fp32": 3, "fp16": 7}


# ------------------------------------------------------------------ the cases
def portable_dropout(input, p=0.5, training=True, inplace=False):
    """torch's dropout arithmetic (a 0/1 mask in the input's dtype, divided by 1 - p), with
    the mask from ``torch.rand``: the same draws on every CPU."""
    if not training or p == 0:
        return input
    noise = (torch.rand(input.shape) >= p).to(input.dtype)
    noise.div_(1 - p)
    return input * noise


def write_parity_weights(path, layers):
    """A tiny random CLIP with ``layers`` blocks per tower (widths 64, one head, 32 px) as an
    OpenAI-format state dict, its values rounded to fp16 (OpenAI's fp16 loading is then
    exact); returns the sum of |w| (a fingerprint the golden files record)."""
    import open_clip.model as oc

    torch.manual_seed(WEIGHTS_SEED)
    model = oc.CLIP(64, oc.CLIPVisionCfg(layers=layers, width=64, head_width=64, patch_size=8,
                                         image_size=32),
                    oc.CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1,
                                   layers=layers), quick_gelu=True)
    state = {k: v.half().float() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return sum(float(v.double().abs().sum()) for v in state.values())


def lora_values(learner):
    """Seeded values for every LoRA tensor, by name, in the learner's order."""
    gen = torch.Generator().manual_seed(LORA_SEED)
    return {name: torch.randn(p.shape, generator=gen) * LORA_STD
            for name, p in learner.named_parameters()}


def step_inputs(step):
    gen = torch.Generator().manual_seed(INPUT_SEED + step)
    images = torch.randn(BATCH, 3, 32, 32, generator=gen)
    return images, torch.randint(0, len(CLASSNAMES), (BATCH,), generator=gen)


def case_options(case, weights, prec, truncate):
    """train.py options of a case on top of CONFIG: one epoch of STEPS iterations."""
    node = {"PREC": prec, "N_ITERS": STEPS[prec], **CASES[case]["node"]}
    opts = ["MODEL.BACKBONE.NAME", str(weights), "MODEL.BACKBONE.PRETRAINED", "",
            "MODEL.BACKBONE.TRUNCATE_TEXT", str(truncate), "OPTIM.LR", str(LR),
            "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2"]
    for key, value in node.items():
        opts += [f"TRAINER.CLIPLORA.{key}", str(value)]
    return opts


def record(t):
    """A tensor as the golden files keep it: dtype, shape, non-finite count, float64 sum,
    sum of |x|, position-weighted sum, and its first values."""
    flat = t.detach().double().flatten()
    finite = torch.isfinite(flat)
    flat = torch.where(finite, flat, torch.zeros_like(flat))
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64) / flat.numel()
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
            "n_nonfinite": int((~finite).sum()), "sum": flat.sum().item(),
            "abs_sum": flat.abs().sum().item(), "weighted": (flat * weights).sum().item(),
            "head": flat[:4].tolist()}


def build_trainer(case, weights, prec, truncate, root, out):
    """Our CLIPLoRA trainer, built by train.py's own setup, on the toy dataset in ``root``."""
    import train
    from dassl_compat import build_trainer as build
    from tests.helpers.tiny import train_args

    args = train.build_parser().parse_args(train_args(
        root, out, trainer="CLIPLoRA", config=CONFIG,
        extra=case_options(case, weights, prec, truncate)))
    return build(train.setup_cfg(args))


def run_ours(trainer, steps=None, nudge=None):
    """What the golden files hold, from our trainer: its LoRA set to ``lora_values`` (plus
    ``nudge``, name -> added tensor), evaluation logits on the first batch, then ``steps``
    calls of its own ``forward_backward`` (AdamW, GradScaler in fp16, the LR per step)."""
    steps = STEPS[trainer.method_cfg.PREC] if steps is None else steps
    from trainers.models import ForwardHooks

    learner = trainer.model.prompt_learner
    values = lora_values(learner)
    with torch.no_grad():
        for name, p in learner.named_parameters():
            p.copy_(values[name] + (nudge or {}).get(name, 0))
    images, _ = step_inputs(0)
    trainer.set_model_mode("eval")
    with torch.no_grad(), trainer.model.cached_text_features():
        out = {"eval_logits": trainer.model_inference(images), "steps": []}
    trainer.epoch, trainer.num_batches = 0, steps
    for step in range(steps):
        images, labels = step_inputs(step)
        trainer.set_model_mode("train")
        torch.manual_seed(DROPOUT_SEED + step)
        logits = trainer.step_loss(images, labels, ForwardHooks()).features.logits.detach()
        scale = trainer.scaler.get_scale() if trainer.scaler is not None else None
        torch.manual_seed(DROPOUT_SEED + step)
        trainer.batch_idx = step
        loss = trainer.forward_backward({"img": images, "label": labels})["loss"]
        out["steps"].append({
            "logits": logits, "loss": loss, "scale": scale, "lr": trainer.get_current_lr(),
            "grads": {n: p.grad.detach().clone() for n, p in learner.named_parameters()}})
    out["params_after"] = {n: p.detach().clone() for n, p in learner.named_parameters()}
    return out


# ------------------------------------------------------------------ parity
# Tolerances, in one place, relative to the largest entry (logits, gradients, parameters) or
# to the value (loss). fp16 is bit for bit on the machine and torch a file was recorded with;
# elsewhere CPU fp16 kernels may round differently (about 10 fp16 ulps in the forward pass).
FP32 = 1e-5
FP16_ELSEWHERE = {"logits": 1e-2, "loss": 1e-2, "step": 5e-2}
FP16_TRUNCATED_LOGITS = 4e-3  # truncated text rounds differently in fp16 (test_parity_fp16.py)


def load(case, prec):
    return json.loads((GOLDEN / f"{case}_{prec}.json").read_text())


def bit_for_bit(golden):
    from tests.helpers.torch_support import recorded_here

    return golden["prec"] == "fp16" and recorded_here(golden)


def tolerance(golden, what):
    if golden["prec"] == "fp32":
        return FP32
    return 0.0 if bit_for_bit(golden) else FP16_ELSEWHERE[what]


def check_close(ours, expected, tol, what):
    expected = torch.tensor(expected, dtype=torch.float64)
    err = (ours.double() - expected).abs().max().item()
    assert err <= tol * expected.abs().max().item(), f"{what}: max abs difference {err:.3g}"


def check_record(ours, expected, tol, what):
    got = record(ours)
    assert (got["dtype"], got["shape"], got["n_nonfinite"]) == \
        (expected["dtype"], expected["shape"], expected["n_nonfinite"]), what
    if tol == 0:
        assert got == expected, what
        return
    scale = expected["abs_sum"]
    for key in ("sum", "abs_sum", "weighted"):
        assert abs(got[key] - expected[key]) <= tol * scale, f"{what}: {key}"
    err = (torch.tensor(got["head"]) - torch.tensor(expected["head"])).abs().max().item()
    typical = max(max(map(abs, expected["head"])), scale / math.prod(expected["shape"]))
    assert err <= tol * typical, f"{what}: first values differ by {err:.3g}"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    from tests.helpers.tiny import make_toy_dataset

    return make_toy_dataset(str(tmp_path_factory.mktemp("data")), classes=5, train_per_class=4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    paths = {n: folder / f"tiny_{n}.pt" for n in {case["layers"] for case in CASES.values()}}
    return {layers: (path, write_parity_weights(path, layers)) for layers, path in paths.items()}


@pytest.fixture
def parity(monkeypatch, toy_root, weights, tmp_path):
    """Builds a case's trainer as the golden files were made: portable dropout masks, one
    thread, fp16 on the CPU allowed."""
    monkeypatch.setattr(torch.nn.functional, "dropout", portable_dropout)
    monkeypatch.setenv("PREC_ON_CPU", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def build(case, prec, truncate=False):
        path, fingerprint = weights[CASES[case]["layers"]]
        golden = load(case, prec)
        assert fingerprint == pytest.approx(golden["weights_abs_sum"], rel=1e-12), \
            "the tiny weights differ from the golden files' (open_clip or torch init changed?)"
        trainer = build_trainer(case, path, prec, truncate, toy_root, tmp_path / "out")
        assert trainer.dm.dataset.classnames == CLASSNAMES
        values = lora_values(trainer.model.prompt_learner)
        assert sum(float(v.double().abs().sum()) for v in values.values()) == \
            pytest.approx(golden["lora_abs_sum"], rel=1e-12)
        return trainer, golden

    yield build
    torch.set_num_threads(threads)


@pytest.mark.parametrize("prec", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES)
def test_logits_loss_gradients_and_steps_equal_the_reference(parity, case, prec):
    from tests.helpers.torch_support import NO_CPU_FP16, cpu_fp16_training

    trainer, golden = parity(case, prec)
    learner = trainer.model.prompt_learner
    assert {str(p.dtype) for p in learner.parameters()} == {"torch.float32"}  # as loralib's
    if prec == "fp16" and not cpu_fp16_training():
        pytest.skip(NO_CPU_FP16)
    ours = run_ours(trainer)
    assert str(ours["eval_logits"].dtype).endswith(golden["eval_logits_dtype"])
    check_close(ours["eval_logits"], golden["eval_logits"], tolerance(golden, "logits"),
                "evaluation logits")
    assert len(ours["steps"]) == len(golden["steps"])
    for i, (step, expected) in enumerate(zip(ours["steps"], golden["steps"])):
        check_close(step["logits"], expected["logits"], tolerance(golden, "logits"),
                    f"step {i} logits")
        assert step["loss"] == pytest.approx(expected["loss"], rel=tolerance(golden, "loss"),
                                             abs=0), f"step {i} loss"
        assert step["lr"] == pytest.approx(expected["lr"], rel=1e-12), f"step {i} lr"
        assert step["scale"] == expected["scale"], f"step {i} GradScaler scale"
        nonfinite = sum(int((~torch.isfinite(g)).sum()) for g in step["grads"].values())
        assert (nonfinite > 0) == expected["skipped"], f"step {i}: skipped or not"
        for name, record_ in expected.get("grads", {}).items():
            check_record(step["grads"][name], record_, tolerance(golden, "step"),
                         f"step {i} grad of {name}")
    assert set(ours["params_after"]) == set(golden["params_after"])
    for name, record_ in golden["params_after"].items():
        check_record(ours["params_after"][name], record_, tolerance(golden, "step"),
                     f"{name} after the steps")


@pytest.mark.parametrize("prec", ["fp32", "fp16"])
@pytest.mark.parametrize("case", ["default", "half_up_qkvo"])
def test_truncated_text_gives_the_reference_evaluation_logits(parity, case, prec):
    trainer, golden = parity(case, prec, truncate=True)
    logits = run_ours(trainer, steps=0)["eval_logits"]
    tol = FP32 if prec == "fp32" else max(FP16_TRUNCATED_LOGITS, tolerance(golden, "logits"))
    check_close(logits, golden["eval_logits"], tol, "evaluation logits, truncated text")


def test_a_nudged_lora_tensor_is_seen(parity):
    """The negative control: one LoRA tensor of the last image block nudged by N(0, 1e-3)
    moves the logits far beyond the tolerance, so the parity check would see a bug there."""
    trainer, golden = parity("default", "fp32")
    name = "layers.image.3.v.w_lora_B"
    shape = dict(trainer.model.prompt_learner.named_parameters())[name].shape
    nudge = {name: torch.randn(shape, generator=torch.Generator().manual_seed(9)) * 1e-3}
    logits = run_ours(trainer, steps=0, nudge=nudge)["eval_logits"]
    expected = torch.tensor(golden["eval_logits"], dtype=torch.float64)
    err = (logits.double() - expected).abs().max() / expected.abs().max()
    assert err > 10 * FP32


# ------------------------------------------------------------- the frozen side
@pytest.fixture
def tiny_trainer(toy_root, weights, tmp_path):
    """A default-case trainer (fp32) with LDIFS and Proxy-FDA on, its LoRA set to nonzero
    values after the build, and a second, untouched backbone from the same weights."""
    from clip_backbone import build_backbone

    def build(extra=()):
        import train
        from dassl_compat import build_trainer as build_
        from tests.helpers.tiny import train_args

        path, _ = weights[4]
        args = train.build_parser().parse_args(train_args(
            toy_root, tmp_path / "out", trainer="CLIPLoRA", config=CONFIG,
            extra=[*case_options("default", path, "fp32", True), *extra]))
        trainer = build_(train.setup_cfg(args))
        with torch.no_grad():
            for name, value in lora_values(trainer.model.prompt_learner).items():
                dict(trainer.model.prompt_learner.named_parameters())[name].copy_(value)
        return trainer, build_backbone(trainer.cfg, "cpu", "fp32")
    return build


def test_the_regularizers_frozen_features_are_pre_trained_clip(tiny_trainer):
    """LoRA changes the very weights the frozen side runs on: the frozen features must come
    from the towers without it. Every frozen feature equals that of an untouched copy of the
    backbone, and differs from the adapted one."""
    from regularizers import StepContext, produce_features

    trainer, pristine = tiny_trainer(["LDIFS.ENABLE", "True", "PROXYFDA.ENABLE", "True"])
    images, labels = step_inputs(0)
    prompts = [f"a photo of a {c}." for c in CLASSNAMES]  # TEMPLATE, as the text tower reads
    assert trainer.frozen_clip.class_prompts() == prompts
    trainer.model.train()
    hooks = trainer.forward_hooks()
    with torch.no_grad():
        step = trainer.step_loss(images, labels, hooks)
        feats = produce_features(StepContext(trainer, images, labels, step.features, hooks),
                                 {"text", "text_frozen", "image", "image_frozen", "hidden"})
        text = pristine.encode_prompts(prompts)
        image = pristine.image(images)
    assert torch.equal(feats.text_frozen, text)
    assert torch.equal(feats.image_frozen, image)
    assert not torch.allclose(feats.text, text, atol=1e-3)
    assert not torch.allclose(feats.image, image, atol=1e-3)
    # LDIFS: frozen image hidden states (per step) and frozen text ones (at build)
    from clip_backbone import TowerHooks

    layers = trainer.hidden_layers["image"]
    frozen_hooks = TowerHooks(hidden_layers=tuple(layers))
    with torch.no_grad():
        pristine.image(images, hooks=frozen_hooks)
    prompted, frozen = feats.hidden["image"]
    assert all(torch.equal(a, b) for a, b in zip(frozen, frozen_hooks.hidden))
    assert not torch.allclose(prompted[-1], frozen[-1], atol=1e-3)
    ldifs = next(r for r in trainer.regularizers if r.node == "LDIFS")
    tokens = pristine.tokenize(prompts)
    text_hooks = TowerHooks(hidden_layers=tuple(ldifs.hidden_layers(pristine.text.num_layers)))
    with torch.no_grad():
        pristine.text(pristine.embed(tokens), tokens, hooks=text_hooks)
    assert all(torch.equal(a, b) for a, b in zip(ldifs.text_frozen, text_hooks.hidden))


# ------------------------------------------------------------------ reductions
def test_a_zero_update_is_zero_shot_clip_in_training_and_evaluation(tiny_trainer):
    """B is zero at init (loralib's): the adapted towers are then pre-trained CLIP on the
    TEMPLATE prompts, with logit scale 100, whatever the dropout draws."""
    trainer, pristine = tiny_trainer()
    with torch.no_grad():
        for name, p in trainer.model.prompt_learner.named_parameters():
            if name.endswith("w_lora_B"):
                p.zero_()
    images, labels = step_inputs(1)
    with torch.no_grad():
        text = torch.nn.functional.normalize(
            pristine.encode_prompts([f"a photo of a {c}." for c in CLASSNAMES]), dim=-1)
        zero_shot = 100 * torch.nn.functional.normalize(pristine.image(images), dim=-1) @ text.t()
        trainer.model.eval()
        evaluated = trainer.model(images)
        trainer.model.train()
        trained = trainer.model(images)
    # the adapted blocks compute q, k and v as three products (the packed one of
    # nn.MultiheadAttention is the same sums; equal bit for bit on the CPUs we ran)
    torch.testing.assert_close(evaluated, zero_shot, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(trained, zero_shot, rtol=1e-6, atol=1e-6)


def test_training_drops_out_and_evaluation_merges_the_update(tiny_trainer):
    trainer, pristine = tiny_trainer(["TRAINER.CLIPLORA.DROPOUT_RATE", "0.0"])
    images, _ = step_inputs(1)
    with torch.no_grad():
        trainer.model.train()
        unmerged = trainer.model(images)
        trainer.model.eval()
        merged = trainer.model(images)
        assert not torch.allclose(trainer.model.encode_image_features(images),
                                  pristine.image(images), atol=1e-3)  # the update acts
    # without dropout, W x + s B A x and (W + s B A) x are the same sums
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    dropped, _ = tiny_trainer()
    with torch.no_grad():
        dropped.model.train()
        torch.manual_seed(0)
        first = dropped.model(images)
        torch.manual_seed(1)
        second = dropped.model(images)
        dropped.model.eval()
        assert torch.equal(dropped.model(images), dropped.model(images))
    assert not torch.allclose(first, second, atol=1e-4)  # a fresh mask per pass


# --------------------------------------------------------------------- settings
def test_positions_are_loralibs_index_tables():
    """loralib's INDEX_POSITIONS_TEXT (12 blocks) and ViT-L/14's vision table (24 blocks)."""
    from trainers.clip_lora import POSITIONS

    twelve = {"all": range(12), "bottom": range(0, 4), "mid": range(4, 8), "up": range(8, 12),
              "half-up": range(6, 12), "half-bottom": range(0, 6), "top3": range(9, 12)}
    assert set(POSITIONS) == set(twelve)
    for position, blocks in twelve.items():
        assert list(POSITIONS[position](12)) == list(blocks), position
    for position, blocks in {"all": range(24), "half-up": range(12, 24),
                             "half-bottom": range(0, 12)}.items():
        assert list(POSITIONS[position](24)) == list(blocks), position


def test_an_epoch_is_a_number_of_iterations_over_fresh_passes():
    from torch.utils.data import DataLoader

    from trainers.base import IterationEpochs

    data = list(range(10))
    loader = IterationEpochs(DataLoader(data, batch_size=4, shuffle=True, drop_last=True), 5)
    assert len(loader) == 5
    torch.manual_seed(0)
    for _ in range(2):  # each epoch: a whole pass (last batch of 2: no drop_last), then a new one
        sizes, seen = [], []
        for batch in loader:
            sizes.append(len(batch))
            seen.extend(batch.tolist())
        assert sizes == [4, 4, 2, 4, 4]
        assert sorted(seen[:10]) == data


def test_the_few_shot_configs_train_500_iterations_per_shot():
    from tools import protocol
    from tools.config_value import config_value

    for shots in (1, 2, 4, 8, 16):
        cfg = protocol.default_config("cliplora", "few_shot", "dtd", shots)
        path = str(REPO / "configs" / "trainers" / "CLIPLoRA" / f"{cfg}.yaml")
        assert config_value(path, "OPTIM.MAX_EPOCH") * config_value(
            path, "TRAINER.CLIPLORA.N_ITERS") == 500 * shots
    assert protocol.default_config("cliplora", "base2new_train", "imagenet") == "vit_b16"
    assert protocol.default_config("cliplora", "xd_train", "imagenet") == "vit_b16"


def test_a_bad_lora_setting_is_one_error_line(toy_root, tmp_path):
    from tests.helpers.tiny import run_train, train_args

    proc = run_train(train_args(toy_root, tmp_path / "bad", trainer="CLIPLoRA", config=CONFIG,
                                extra=["TRAINER.CLIPLORA.POSITION", "sideways"]), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "POSITION one of all, bottom" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------- train.py
def test_train_resume_and_checkpoints_hold_the_lora_only(toy_root, tmp_path):
    """Epochs of N_ITERS iterations, the LR per iteration down to 1e-6, a resumed run equal to
    an uninterrupted one, and checkpoints of the LoRA factors alone."""
    from tests.helpers.tiny import read_log, train_args, train_in_process

    extra = ["DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train_in_process(train_args(toy_root, whole, trainer="CLIPLoRA", config=CONFIG,
                                       extra=extra)) == 0
    assert train_in_process(train_args(toy_root, parts, trainer="CLIPLoRA", config=CONFIG,
                                       extra=extra), stop_after_epoch=1) == 3
    assert train_in_process(train_args(toy_root, parts, trainer="CLIPLoRA", config=CONFIG,
                                       extra=extra)) == 0
    log = read_log(whole)
    assert "epoch [2/2] batch [4/4]" in log and "lr 1.0000e-06" in log  # N_ITERS 4, eta_min
    final = [torch.load(d / "lora_weights" / "model.pth.tar-2", weights_only=True)
             for d in (whole, parts)]
    state = final[0]["state_dict"]
    assert all(k.startswith("layers.") and "w_lora_" in k for k in state)
    assert len(state) == 2 * 4 * 3 * 2  # towers x blocks x q, k, v x (A, B)
    assert all(torch.equal(state[k], final[1]["state_dict"][k]) for k in state)
