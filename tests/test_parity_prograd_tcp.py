"""ProGrad and TCP: numerical parity with the reference code in fp32 and fp16 (golden values),
ProGrad's projected gradient, their reductions to CoOp and KgCoOp, and their prompt structure.

The golden files (tests/golden/prograd_tcp/<case>_<prec>.json) were made by running the
reference code on CPU: BeierZhu/Prompt-align (ProGrad.public/trainers/prograd.py with its
Dassl fork's ``prograd_backward_and_update``) and
htyao89/Textual-based_Class-aware_prompt_tuning (trainers/tcp.py, trainers/clip_text/, on
KaiyangZhou/Dassl.pytorch), each patched only to read a local weights file and to stay on the
CPU (and, for TCP, the hard-coded text width 512); the fp32 files also skip OpenAI's
``convert_weights``. Each file says how it was made (``reference``, ``how``). Our learnable
values (``params``) were copied into the reference; the reference then gave its initial
context, eval logits, loss terms, zero-shot logits (ProGrad), the gradient of every learnable
tensor as its own update computed it (ProGrad: its projected gradient; and the two terms'
gradients), and the values after one SGD step. The reference code is not part of this
repository.

The cases use the reference settings (ProGrad: 16 context tokens initialized from the dataset's
prompt, LAMBDA 1; TCP: 4 tokens, class-aware tokens before text block 8, W 8) on tiny random
CLIPs: the coop-family one (4 layers) for ProGrad, and for TCP one whose text tower has 12
blocks (``write_deep_text_weights``), so that block 8 exists.
"""
import json
import logging
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "prograd_tcp"
CASES = sorted({p.stem.rsplit("_", 1)[0] for p in GOLDEN.glob("*.json")})
# fp32: relative to the largest entry of each quantity
FP32_TOLERANCE = 1e-5
# fp16 (logits, loss, gradients and parameters after the step), relative to the largest entry:
# bitwise with the full-length text where machine and torch are the recorded ones; the
# truncated text rounds differently (tests/test_parity_fp16.py says why: measured here up to
# 4.4e-3 for the logits, about 5 fp16 ulps, through TCP's 12 text blocks, and 7.9e-3 for the
# gradients and stepped values); elsewhere within about 10 fp16 ulps in the forward pass
FP16_TOLERANCE = {"full": (0, 0, 0), "truncated": (6e-3, 2e-3, 2e-2)}
FP16_ELSEWHERE = (1e-2, 1e-2, 5e-2)
DEEP_TEXT = dict(embed_dim=32, vision=dict(image_size=32, layers=2, width=64, patch_size=8),
                 text=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=12))


# ------------------------------------------------------------------ weights and cases
def write_deep_text_weights(path, seed=0):
    """A tiny random CLIP with a 12-block text tower (TCP's class-aware tokens enter before
    block 8) as an OpenAI-format state dict, values rounded to fp16 (as OpenAI's
    ``build_model`` rounds them on load); returns the sum of |w|, which the golden files
    record."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    logging.disable(logging.WARNING)
    try:
        model = open_clip.CLIP(DEEP_TEXT["embed_dim"], CLIPVisionCfg(**DEEP_TEXT["vision"]),
                               CLIPTextCfg(**DEEP_TEXT["text"]), quick_gelu=True)
    finally:
        logging.disable(logging.NOTSET)
    state = {k: v.half().float() if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save(state, path)
    return sum(float(v.double().abs().sum()) for v in state.values() if v.is_floating_point())


def write_weights(kind, path):
    if kind == "deep_text":
        return write_deep_text_weights(path)
    from tests.test_trainers_coop_family import write_tiny_openai_weights

    return write_tiny_openai_weights(path)


def load(case, prec):
    return json.loads((GOLDEN / f"{case}_{prec}.json").read_text())


def as_tensor(record):
    """A golden tensor in its recorded dtype (the values are written in their shortest form
    for that dtype, so this is exact)."""
    values = torch.tensor(record["values"], dtype=torch.float64).view(record["shape"])
    return values.to(getattr(torch, record["dtype"]))


def case_inputs(golden):
    gen = torch.Generator().manual_seed(golden["image_seed"])
    images = torch.randn(len(golden["labels"]), 3, 32, 32, generator=gen)
    return images, torch.tensor(golden["labels"])


def build_case(golden, weights, prec="fp32", truncate=True):
    """Our trainer (no data loaders) for a golden case, at ``prec`` (fp16 on CPU as the
    references' fp16 path), its learnable tensors not yet set; returns it and its initial
    learnable values."""
    import train
    import trainers  # noqa: F401  (registers the trainers)
    from clip_backbone import build_backbone
    from dassl_compat import TRAINER_REGISTRY, get_cfg_default

    cls = TRAINER_REGISTRY.get(golden["trainer"])
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.merge_from_list([str(x) for kv in golden["cfg"].items() for x in kv])
    cfg.MODEL.BACKBONE.NAME = str(weights)
    cfg.INPUT.SIZE = (32, 32)
    cfg.DATASET.NAME = golden["dataset"]
    cfg.TRAINER.COOP.PREC = prec
    cfg.MODEL.BACKBONE.TRUNCATE_TEXT = truncate
    t = cls.__new__(cls)  # skip TrainerX.__init__: no dataset needed here
    t.cfg = cfg
    torch.manual_seed(0)
    t.model = t.build_custom_clip(cfg, golden["classnames"], build_backbone(cfg, "cpu", prec))
    init = {k: v.detach().clone() for k, v in t.model.prompt_learner.named_parameters()}
    return t, init


def set_params(t, golden):
    """The case's values into our learnable tensors (those it names)."""
    learner = t.model.prompt_learner
    with torch.no_grad():
        for name, p in learner.named_parameters():
            if name in golden["params"]:
                p.copy_(as_tensor(golden["params"][name]))


def one_update(t, images, labels, lr):
    """The base's update on one batch, as train.py runs it, with SGD (lr, momentum 0.9, weight
    decay 5e-4); returns the step's terms, the gradients the optimizer got, and its
    parameters after the step."""
    learner = t.model.prompt_learner
    params = OrderedDict((k, p) for k, p in learner.named_parameters() if p.requires_grad)
    optim = torch.optim.SGD(params.values(), lr=lr, momentum=0.9, weight_decay=5e-4)
    seen = {}
    optim.register_step_pre_hook(lambda *_: seen.update(
        {k: p.grad.detach().clone() for k, p in params.items()}))
    t._models, t._optims, t._scheds = OrderedDict(), OrderedDict(), OrderedDict()
    t.register_model("prompt_learner", learner, optim, None)
    t.scaler, t.regularizers = None, []
    t.model.train()
    from trainers.models import ForwardHooks

    step = t.step_loss(images, labels, ForwardHooks())
    t.backward_and_update(step.total(), step, None)
    return step, seen, {k: p.detach().clone() for k, p in params.items()}


def rel_err(ours, record):
    """max |ours - golden| over the golden's largest entry, in float64."""
    ref = as_tensor(record).double()
    assert list(ours.shape) == record["shape"]
    return ((ours.detach().double() - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return {kind: (folder / f"{kind}.pt", write_weights(kind, folder / f"{kind}.pt"))
            for kind in ("coop", "deep_text")}


def run_case(golden, weights, prec, truncate=True):
    """Our numbers for a golden case: initial context, eval logits, the update's terms, the
    terms' gradients (ProGrad), the gradients the optimizer got and the stepped values."""
    path, fingerprint = weights[golden["weights"]]
    assert fingerprint == pytest.approx(golden["weights_abs_sum"], rel=1e-9), (
        "the tiny random CLIP differs from the one the golden values were made with")
    t, init = build_case(golden, path, prec, truncate)
    assert list(init) == list(golden["params"])  # the same learnable tensors, in its order
    set_params(t, golden)
    images, labels = case_inputs(golden)
    t.model.eval()
    with torch.no_grad(), t.model.cached_text_features():
        logits = t.model(images)
    out = {"init_ctx": init["ctx"], "logits": logits}
    if golden["trainer"] == "ProGrad":
        out["zero_shot_logits"] = t.model.zero_shot_logits(images)
        seen = {}

        def record_terms(grads):  # what the base hands ProGrad's hook
            seen.update(grads)
            return type(t).adjust_gradients(t, grads)

        t.adjust_gradients = record_terms
    step, grads, after = one_update(t, images, labels, golden["lr"])
    out.update(terms=step.terms, grads=grads, after=after)
    if golden["trainer"] == "ProGrad":
        out["grads_ce"], out["grads_kl"] = (dict(zip(grads, seen[k])) for k in ("ce", "kl"))
    return out


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize("case", CASES)
def test_fp32_logits_losses_and_update_equal_the_reference(case, weights):
    golden = load(case, "fp32")
    ours = run_case(golden, weights, "fp32")
    if golden["cfg"]["TRAINER.COOP.CTX_INIT"]:  # the words' embeddings (ProGrad: zeros first)
        assert torch.equal(ours["init_ctx"], as_tensor(golden["init_ctx"]))
    errors = {"logits": rel_err(ours["logits"], golden["logits"])}
    terms, ref = ours["terms"], golden["loss_terms"]
    if golden["trainer"] == "ProGrad":
        errors["zero-shot logits"] = rel_err(ours["zero_shot_logits"], golden["zero_shot_logits"])
        errors["xe_loss"] = abs(terms["ce"].item() / ref["xe_loss"] - 1)
        errors["kl_loss"] = abs(terms["kl"].item() / ref["kl_loss"] - 1)
        for which in ("grads_ce", "grads_kl"):
            for name, g in ours[which].items():
                errors[f"{which} {name}"] = rel_err(g, golden[which][name])
    else:
        errors["loss"] = abs(sum(terms.values()).item() / ref["loss"] - 1)
        errors["ce"] = abs(terms["ce"].item() / ref["ce"] - 1)
    for name, g in ours["grads"].items():
        errors[f"grad {name}"] = rel_err(g, golden["grads"][name])
        errors[f"{name} after the step"] = rel_err(ours["after"][name],
                                                   golden["params_after_step"][name])
    print(f"{case} fp32, worst relative errors: "
          + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) <= FP32_TOLERANCE, errors


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("prograd")])
def test_prograd_projects_exactly_where_the_reference_does(case, weights):
    """The update is g_ce itself where the reference's cos(g_ce, g_kl) >= 0 and the
    projected gradient (pinned above) where it is negative; the cases have both."""
    golden = load(case, "fp32")
    ours = run_case(golden, weights, "fp32")
    conflict = golden["cos_ce_kl"] < 0
    g, g_ce = ours["grads"]["ctx"], ours["grads_ce"]["ctx"]
    assert torch.equal(g, g_ce) is not conflict
    if conflict:  # what is left has no component against g_kl (LAMBDA 1) or (1 - LAMBDA) of it
        direction = ours["grads_kl"]["ctx"].flatten()
        direction = direction / direction.norm()
        lam = golden["cfg"]["LOSS.LAMBDA"]
        before, after = g_ce.flatten() @ direction, g.flatten() @ direction
        assert after.item() == pytest.approx((1 - lam) * before.item(), abs=1e-6 * g.norm().item())
    assert {c.startswith("prograd") and load(c, "fp32")["cos_ce_kl"] < 0
            for c in CASES if c.startswith("prograd")} == {True, False}


@pytest.mark.parametrize("text", ["full", "truncated"])
@pytest.mark.parametrize("case", CASES)
def test_fp16_logits_losses_and_update_equal_the_reference(case, text, weights):
    from tests.helpers.torch_support import NO_CPU_FP16, cpu_fp16_training, recorded_here

    golden = load(case, "fp16")
    tol_logits, tol_loss, tol_step = FP16_TOLERANCE[text]
    if not recorded_here(golden):
        tol_logits, tol_loss, tol_step = (max(a, b) for a, b in
                                          zip(FP16_TOLERANCE[text], FP16_ELSEWHERE))
    if not cpu_fp16_training():
        pytest.skip(NO_CPU_FP16)
    ours = run_case(golden, weights, "fp16", truncate=text == "truncated")
    assert {k: str(v.dtype).replace("torch.", "") for k, v in ours["after"].items()} == \
        golden["dtypes"]
    assert ours["logits"].dtype == torch.float16
    assert rel_err(ours["logits"], golden["logits"]) <= tol_logits
    terms, ref = ours["terms"], golden["loss_terms"]
    if golden["trainer"] == "ProGrad":
        assert ours["zero_shot_logits"].dtype == torch.float32  # fp32 teacher, as the reference
        assert rel_err(ours["zero_shot_logits"], golden["zero_shot_logits"]) <= tol_logits
        assert (str(terms["ce"].dtype), str(terms["kl"].dtype)) == (ref["xe_dtype"],
                                                                    ref["kl_dtype"])
        assert terms["ce"].item() == pytest.approx(ref["xe_loss"], rel=tol_loss, abs=0)
        assert terms["kl"].item() == pytest.approx(ref["kl_loss"], rel=tol_loss, abs=0)
    else:
        assert str(sum(terms.values()).dtype) == ref["loss_dtype"]
        assert sum(terms.values()).item() == pytest.approx(ref["loss"], rel=tol_loss, abs=0)
    for name, g in ours["grads"].items():
        assert rel_err(g, golden["grads"][name]) <= tol_step, f"grad of {name}"
        assert rel_err(ours["after"][name], golden["params_after_step"][name]) <= tol_step, name


@pytest.mark.parametrize("case", CASES)
def test_negative_control_a_nudged_prompt_is_seen(case, weights):
    """One context nudged by N(0, 1e-3), as in the reference run that recorded how far that
    moves its logits: the check above must fail by far."""
    golden = load(case, "fp32")
    assert golden["negative_control_logits_rel_diff"] > 100 * FP32_TOLERANCE
    t, _ = build_case(golden, weights[golden["weights"]][0])
    set_params(t, golden)
    with torch.no_grad():
        ctx = t.model.prompt_learner.ctx
        ctx.add_(torch.randn(ctx.shape, generator=torch.Generator().manual_seed(0)) * 1e-3)
    images, _ = case_inputs(golden)
    t.model.eval()
    with torch.no_grad():
        assert rel_err(t.model(images), golden["logits"]) > 100 * FP32_TOLERANCE


# ------------------------------------------------------------------ reductions
def golden_as(case, trainer=None, **cfg):
    """A golden case's spec with another trainer or config values."""
    golden = load(case, "fp32")
    golden["cfg"] = {**golden["cfg"], **cfg}
    golden["trainer"] = trainer or golden["trainer"]
    return golden


@pytest.mark.parametrize("prec", ["fp32", "fp16"])
def test_prograd_with_lambda_0_updates_as_coop_bit_for_bit(prec, weights):
    """On a batch where ProGrad's projection fires (the dtd case), LAMBDA 0 leaves CoOp's
    update, bit for bit: the same gradient reaches the optimizer, the same values come out."""
    from tests.helpers.torch_support import NO_CPU_FP16, cpu_fp16_training, recorded_here

    if prec == "fp16" and not cpu_fp16_training():
        pytest.skip(NO_CPU_FP16)
    case = "prograd_random_dtd"
    assert load(case, "fp32")["cos_ce_kl"] < 0
    images, labels = case_inputs(load(case, "fp32"))
    updates = {}
    for name, golden in [("CoOp", golden_as(case, "CoOp")),
                         ("ProGrad, LAMBDA 0", golden_as(case, **{"LOSS.LAMBDA": 0.0})),
                         ("ProGrad", golden_as(case))]:
        t, _ = build_case(golden, weights["coop"][0], prec)
        set_params(t, load(case, prec))
        _, grads, after = one_update(t, images, labels, 0.5)
        updates[name] = grads["ctx"], after["ctx"]
    for ours, coop in zip(updates["ProGrad, LAMBDA 0"], updates["CoOp"]):
        assert torch.equal(ours, coop)
    assert not torch.equal(updates["ProGrad"][0], updates["CoOp"][0])  # it fires here


def test_tcp_without_class_aware_tokens_is_kgcoop_bit_for_bit(weights):
    """LAYER -1: TCP is KgCoOp (W 8) with TCP's prompt text, which for Caltech101 is
    KgCoOp's: the same logits, loss terms and context gradient, bit for bit."""
    from trainers.models import ForwardHooks

    spec = dict(load("prograd_random_dtd", "fp32"), dataset="Caltech101", cfg={
        "TRAINER.COOP.N_CTX": 4, "TRAINER.COOP.CTX_INIT": "", "TRAINER.COOP.W": 8.0})
    images, labels = case_inputs(spec)
    results = {}
    for name, trainer, layer in [("KgCoOp", "KgCoOp", None), ("TCP -1", "TCP", -1),
                                 ("TCP 2", "TCP", 2)]:
        golden = dict(spec, trainer=trainer)
        if layer is not None:
            golden["cfg"] = {**spec["cfg"], "TRAINER.TCP.LAYER": layer}
        t, _ = build_case(golden, weights["coop"][0])
        set_params(t, spec)
        t.model.train()
        step = t.step_loss(images, labels, ForwardHooks())
        ctx = t.model.prompt_learner.ctx
        results[name] = (step.features.logits, step.terms["ce"], step.terms["kg"],
                         torch.autograd.grad(step.total(), ctx)[0])
    for ours, kgcoop in zip(results["TCP -1"], results["KgCoOp"]):
        assert torch.equal(ours, kgcoop)
    assert not torch.equal(results["TCP 2"][0], results["KgCoOp"][0])


# ------------------------------------------------------------------ structure
def test_tcp_class_aware_tokens_replace_the_context_before_block_layer(weights):
    golden = load("tcp_ucf101", "fp32")
    t, _ = build_case(golden, weights["deep_text"][0])
    set_params(t, golden)
    model, seen = t.model, {}
    blocks = model.backbone.text.transformer.resblocks
    handles = [b.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0]))
               for i, b in enumerate(blocks)]
    with torch.no_grad():
        model.text_features()
        tokens = model.prompt_learner.class_prompts(model.hand_text_features)
    for h in handles:
        h.remove()
    assert tokens.shape == (len(golden["classnames"]), 4, model.backbone.text_width)
    assert torch.equal(seen[8][1:5].permute(1, 0, 2), tokens)  # blocks run sequence-first
    assert not torch.allclose(seen[7][1:5].permute(1, 0, 2), tokens)
    assert not torch.equal(tokens[0], tokens[1])  # one set per class


@pytest.mark.parametrize("cfg,match", [
    ({"TRAINER.TCP.LAYER": 12}, "TRAINER.TCP.LAYER"),
    ({"TRAINER.TCP.LAYER": 0}, "TRAINER.TCP.LAYER"),
    ({"TRAINER.COOP.CLASS_TOKEN_POSITION": "middle"}, "CLASS_TOKEN_POSITION end"),
])
def test_tcp_refuses_what_its_tokens_cannot_enter(cfg, match, weights):
    from errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        build_case(golden_as("tcp_ucf101", **cfg), weights["deep_text"][0])


def test_prograd_context_from_words_and_its_refusals(weights):
    from errors import ConfigError

    t, init = build_case(golden_as("prograd_random_dtd", **{
        "TRAINER.COOP.CTX_INIT": "a_photo of", "TRAINER.COOP.N_CTX": 5}), weights["coop"][0])
    classes, backbone = t.model.prompt_learner.classes, t.model.backbone
    words = backbone.embed(backbone.tokenize(["a photo of"]))[0, 1:4]
    assert torch.equal(init["ctx"], torch.cat([torch.zeros(2, words.shape[1]), words]))
    assert torch.equal(classes.tokenized_prompts[0],
                       backbone.tokenize(["X X a photo of banded."])[0])
    with pytest.raises(ConfigError, match="at least the number of CTX_INIT words"):
        build_case(golden_as("prograd_template_pets", **{"TRAINER.COOP.N_CTX": 7}),
                   weights["coop"][0])
    with pytest.raises(ConfigError, match="LOSS.NAME prograd"):
        t.check_cfg(golden_cfg(t, **{"LOSS.NAME": ""}))


def golden_cfg(t, **values):
    cfg = t.cfg.clone()
    cfg.merge_from_list([str(x) for kv in values.items() for x in kv])
    return cfg


# ------------------------------------------------------------------ configs and protocols
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("config,values", [
    # the reference's ProGrad/*.yaml and its scripts' N_CTX 16, LAMBDA 1.0 (0.8: its README)
    ("ProGrad/rn50", dict(epochs=200, backbone="RN50", lam=1.0)),
    ("ProGrad/rn50_ep100", dict(epochs=100, backbone="RN50", lam=1.0)),
    ("ProGrad/rn50_ep50", dict(epochs=50, backbone="RN50", lam=1.0)),
    ("ProGrad/rn50_lambda0.8", dict(epochs=200, backbone="RN50", lam=0.8)),
    ("ProGrad/vit_b16_ep100", dict(epochs=100, backbone="ViT-B/16", lam=1.0)),
    ("ProGrad/vit_b16_lambda0.8", dict(epochs=200, backbone="ViT-B/16", lam=0.8)),
    # the reference's TCP/vit_b16_ep100_ctxv1.yaml (50 epochs), its script's N_CTX 4, and 25
    # epochs on ImageNet and SUN397 (its train.py)
    ("TCP/vit_b16_ep100_ctxv1", dict(epochs=50, backbone="ViT-B/16")),
    ("TCP/vit_b16_ep25_ctxv1", dict(epochs=25, backbone="ViT-B/16")),
])
def test_reference_configs_merge_with_the_reference_values(config, values):
    import train
    from dassl_compat import get_cfg_default

    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / f"{config}.yaml"))
    c = cfg.TRAINER.COOP
    assert (cfg.OPTIM.MAX_EPOCH, cfg.MODEL.BACKBONE.NAME, cfg.OPTIM.LR) == \
        (values["epochs"], values["backbone"], 0.002)
    if config.startswith("ProGrad"):
        assert (cfg.LOSS.NAME, cfg.LOSS.T, cfg.LOSS.LAMBDA) == ("prograd", 1.0, values["lam"])
        assert (c.N_CTX, c.CTX_INIT, cfg.OPTIM.NAME, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == \
            (16, "template", "sgd", 32)
    else:
        assert (c.N_CTX, c.CTX_INIT, c.W, cfg.TRAINER.TCP.LAYER, cfg.TRAINER.TCP.ADAM_EPS) == \
            (4, "", 8.0, 8, 1e-3)
        assert (cfg.OPTIM.NAME, cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                cfg.DATALOADER.TEST.BATCH_SIZE) == ("adam", 32, 500)


def test_the_protocol_table_picks_their_reference_configs():
    from tools.protocol import default_config as cfg

    assert cfg("prograd", "base2new_train", "dtd") == "vit_b16_ep100"
    assert cfg("prograd", "base2new_test", "imagenet") == "vit_b16_ep50"
    assert [cfg("prograd", "few_shot", "dtd", k) for k in (1, 2, 4, 8, 16)] == \
        ["vit_b16_ep50", "vit_b16_ep100", "vit_b16_ep100", "vit_b16_lambda0.8",
         "vit_b16_lambda0.8"]
    assert cfg("prograd", "few_shot", "caltech101", 16) == "vit_b16"
    assert cfg("prograd", "xd_train", "imagenet") == "vit_b16_ep50"
    assert [cfg("tcp", "base2new_train", d) for d in ("dtd", "sun397", "imagenet")] == \
        ["vit_b16_ep100_ctxv1", "vit_b16_ep25_ctxv1", "vit_b16_ep25_ctxv1"]
    assert cfg("tcp", "xd_train", "imagenet") == "vit_b16_ep25_ctxv1"


def test_the_results_tool_prints_their_published_rows():
    from tools import results

    assert results.published_label("ProGrad", "vit_b16_ep100") == "ProGrad"
    assert results.PUBLISHED["ProGrad"] == (82.48, 70.75, 76.16)
    assert results.published_label("TCP", "vit_b16_ep25_ctxv1") == "TCP"
    assert results.PUBLISHED["TCP"] == (84.13, 75.36, 79.51)


# ------------------------------------------------------------------ end to end
@pytest.mark.parametrize("trainer,config,learned", [
    ("ProGrad", "configs/trainers/ProGrad/tiny_template.yaml", ["ctx"]),
    ("TCP", "configs/trainers/TCP/tiny_ctxv1.yaml",
     ["ctx"] + [f"meta_net.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]),
])
def test_trains_checkpoints_and_evaluates_new_classes(trainer, config, learned, tmp_path):
    """train.py on the base classes, then the new ones: the checkpoint holds the learnable
    tensors only (TCP's Adam with its eps), and the new classes get their own prompts."""
    from tests.helpers.tiny import make_toy_dataset, read_log, train_args, train_in_process

    root = make_toy_dataset(str(tmp_path / "data"), classes=4, train_per_class=3,
                            test_per_class=2)
    out = tmp_path / "base"
    opts = ["DATASET.NUM_SHOTS", 3, "OPTIM.MAX_EPOCH", 2, "DATALOADER.TRAIN_X.BATCH_SIZE", 3]
    assert train_in_process(train_args(root, out, trainer, config, extra=[
        *opts, "DATASET.SUBSAMPLE_CLASSES", "base"])) == 0
    ckpt = torch.load(out / "prompt_learner" / "model.pth.tar-2", weights_only=False)
    assert list(ckpt["state_dict"]) == learned
    if trainer == "TCP":
        assert [g["eps"] for g in ckpt["optimizer"]["param_groups"]] == [1e-3]
    log = read_log(out)
    assert "Finish training" in log
    assert (" kl_loss " if trainer == "ProGrad" else " kg ") in log  # its own term, logged
    assert train_in_process(train_args(root, tmp_path / "new", trainer, config, extra=[
        "--eval-only", "--model-dir", out, "--load-epoch", 2, *opts,
        "DATASET.SUBSAMPLE_CLASSES", "new"])) == 0
    assert "* accuracy:" in read_log(tmp_path / "new")
