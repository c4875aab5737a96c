"""The text tower runs only up to the longest end-of-text token, and that changes nothing but
the cost: logits, losses and gradients equal the full-length path's for every trainer and
with each regularizer on; activation checkpointing of the text blocks gives the same
gradients.

"Equal" is exact in real arithmetic (the tower is causal), and the tests say so in two ways:

* in float64 the two paths agree to ``EXACT`` (1e-12 of a tensor's largest entry; measured:
  at most 2.4e-14, float64 rounding);
* in float32 each path is a rounding of the same numbers, and the two roundings differ. Each
  path's own float32 error, against its float64 value, was measured at up to 1.4e-5 of a
  tensor's largest entry (CoCoOp's context gradient, where the per-class terms cancel: torch
  2.3; 9.2e-6 on torch 2.14), and two such errors can add. ``TOL`` = 5e-5 is twice that worst
  single error, with a margin for other CPUs; the largest difference seen was 1.66e-5
  (torch 2.3; 1.02e-5 on torch 2.14, both on an Intel Xeon). A truncation bug is far
  larger: the positional embedding shifted by one token changes logits and gradients by
  1e0 of their largest entry.
"""
import pytest
import torch

import train
from dassl_compat import build_trainer
from tests.helpers.tiny import make_toy_dataset, train_args

TRAINERS = {
    "CoOp-end": ("CoOp", "configs/trainers/CoOp/tiny_ctxv1.yaml", []),
    "CoOp-middle": ("CoOp", "configs/trainers/CoOp/tiny_ctxv1.yaml",
                    ["TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", "4",
                     "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"]),
    "CoOp-front": ("CoOp", "configs/trainers/CoOp/tiny_ctxv1.yaml",
                   ["TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", "4",
                    "TRAINER.COOP.CLASS_TOKEN_POSITION", "front"]),
    "CoCoOp": ("CoCoOp", "configs/trainers/CoCoOp/tiny_ctxv1.yaml", []),
    "KgCoOp": ("KgCoOp", "configs/trainers/KgCoOp/tiny_ctxv1.yaml", []),
    "ProGrad": ("ProGrad", "configs/trainers/ProGrad/tiny_template.yaml", []),
    "TCP": ("TCP", "configs/trainers/TCP/tiny_ctxv1.yaml", []),
    "IVLP": ("IVLP", "configs/trainers/IVLP/tiny_2+2ctx.yaml", []),
    "MaPLe": ("MaPLe", "configs/trainers/MaPLe/tiny_2ctx.yaml", []),
    "PromptSRC": ("PromptSRC", "configs/trainers/PromptSRC/tiny_4+4ctx.yaml", []),
}
REGULARIZERS = {
    "none": [],
    "ProxyFDA": ["PROXYFDA.ENABLE", "True"],
    "LDIFS": ["LDIFS.ENABLE", "True"],
    "PACE": ["PACE.ENABLE", "True"],
}
CASES = [(t, r) for t in TRAINERS for r in REGULARIZERS
         if not (t == "CoCoOp" and r in ("LDIFS", "PACE"))]  # refused for CoCoOp
TOL = 5e-5  # float32, relative to the largest entry (module docstring)
EXACT = 1e-12  # float64


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")), classes=4, train_per_class=3,
                            test_per_class=1)


def trainer_for(root, out, case, reg, *extra):
    name, config, opts = TRAINERS[case]
    args = train.build_parser().parse_args(train_args(root, out, trainer=name, config=config, extra=[
        "DATASET.NUM_SHOTS", "3", "DATASET.SUBSAMPLE_CLASSES", "base",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", *opts, *REGULARIZERS[reg], *extra]))
    torch.manual_seed(0)
    return build_trainer(train.setup_cfg(args))


def one_step(t):
    """Eval logits, and the training loss (method + regularizers) with its gradients, on a
    fixed batch; the same random stream on both paths (PACE's noise)."""
    gen = torch.Generator().manual_seed(1)
    size = t.model.backbone.image_size
    images = torch.randn(4, 3, size, size, generator=gen)
    labels = torch.tensor([0, 1, 0, 1])
    t.model.eval()
    with torch.no_grad(), t.model.cached_text_features():
        logits = t.model(images)
    t.model.train()
    t.regularizers.train()
    torch.manual_seed(2)
    hooks = t.forward_hooks()
    step = t.step_loss(images, labels, hooks)
    loss = step.total()
    if t.regularizers:
        loss = loss + t.regularizer_loss(images, labels, step, hooks)[0]
    params = [p for p in t.model.prompt_learner.parameters() if p.requires_grad]
    return logits, loss, torch.autograd.grad(loss, params)


def close(a, b, what, tol=TOL):
    err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
    assert err <= tol, f"{what}: relative difference {err:.2e}"


@pytest.mark.parametrize("case,reg", CASES)
def test_truncated_text_equals_the_full_length_path(root, tmp_path, case, reg):
    short = trainer_for(root, tmp_path / "short", case, reg)
    full = trainer_for(root, tmp_path / "full", case, reg, "MODEL.BACKBONE.TRUNCATE_TEXT", "False")
    assert short.model.backbone.text.truncates and not full.model.backbone.text.truncates
    (la, lossa, ga), (lb, lossb, gb) = one_step(short), one_step(full)
    close(la, lb, "logits")
    close(lossa.detach(), lossb.detach(), "loss")
    for i, (a, b) in enumerate(zip(ga, gb)):
        close(a, b, f"gradient {i}")


@pytest.mark.parametrize("case", TRAINERS)
def test_truncation_is_exact_in_float64(root, tmp_path, case):
    t = trainer_for(root, tmp_path / "f64", case, "none")
    t.model.double()
    assert t.model.backbone.text.truncates
    (la, lossa, ga) = one_step(t)
    t.model.backbone.text.truncates = False  # the same model, its text at full length
    (lb, lossb, gb) = one_step(t)
    assert la.dtype == lossa.dtype == torch.float64
    close(la, lb, "logits", EXACT)
    close(lossa.detach(), lossb.detach(), "loss", EXACT)
    for i, (a, b) in enumerate(zip(ga, gb)):
        close(a, b, f"gradient {i}", EXACT)


def test_the_text_runs_only_to_the_longest_end_of_text_token(root, tmp_path):
    t = trainer_for(root, tmp_path / "len", "CoOp-end", "none")
    seen = []
    block = t.model.backbone.text.transformer.resblocks[0]
    handle = block.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    try:
        t.model.text_features()
    finally:
        handle.remove()
    tokens = t.model.prompt_learner.classes.tokenized_prompts
    assert seen == [int(tokens.argmax(-1).max()) + 1] and seen[0] < tokens.shape[1]


@pytest.mark.parametrize("case", ["CoOp-end", "MaPLe"])
def test_checkpointed_text_blocks_give_the_same_gradients(root, tmp_path, case):
    plain = trainer_for(root, tmp_path / "plain", case, "none")
    ckpt = trainer_for(root, tmp_path / "ckpt", case, "none",
                       "MODEL.BACKBONE.TEXT_CHECKPOINTING", "True")
    assert ckpt.model.backbone.text.checkpoint_blocks
    (_, lossa, ga), (_, lossb, gb) = one_step(ckpt), one_step(plain)
    assert torch.equal(lossa, lossb)
    for a, b in zip(ga, gb):
        assert torch.equal(a, b)  # the same operations, recomputed: bit for bit
