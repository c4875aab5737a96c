"""DePT as a plug-in (``DEPT.ENABLE True``, regularizers/dept.py) over CoOp, CoCoOp, KgCoOp and
MaPLe: numerical parity with the reference code (golden values), the reduction to the shipped
trainers, which classes get the head at evaluation, and a run through train.py.

The golden files (tests/golden/dept/*.json) were made by running Koorye/DePT's own trainers
(``trainers/elp_{coop,cocoop,kgcoop,maple}.py``, ``ExtrasLinearProbe*``, with its vendored
``clip``/``clip_maple`` and its staged-LR ``trainers/optim.py``; Dassl from
KaiyangZhou/Dassl.pytorch) on CPU, on the case ``build_case`` builds: the tiny random
OpenAI-format CLIP of the MaPLe parity tests, the DePT configs of this repository with the
tiny backbone's size and depth, learnable values drawn from a seed (prompts, cwT and head,
copied into the reference by name), a fixed batch with a repeated label. Each file holds the
reference's evaluation logits (fused on the trained classes, the head's alone, the CLIP logits
the novel classes get), the loss and each weighted term, the gradient of every learnable
tensor, its value after one step of the reference's optimizer (prompts at OPTIM.LR, cwT and
head at OPTIM.LR x LR_EXP), the LR of both groups over the schedule, and a negative control
(the same values with one prompt, and once the head, nudged by N(0, 1e-3)). The reference code
is not part of this repository.

fp32: the reference patched to skip ``convert_weights`` and to cast its prompts with
``.type(x.dtype)`` instead of ``.half()`` (as tests/test_trainers_vl.py's goldens).
fp16: the reference unpatched in its PREC fp16 path (``convert_weights`` and every
``.half()`` kept; the head in the model's fp16, as ``.type(self.dtype)`` makes it), checked as
tests/test_parity_fp16.py does: bit for bit with the text at full length where the file was
recorded (same machine and torch), within that file's tolerances otherwise.
"""
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tests.helpers.torch_support import NO_CPU_FP16, cpu_fp16_training, recorded_here
from tests.test_parity_fp16 import ELSEWHERE_ULPS, TOLERANCE as FP16_TOLERANCE

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "dept"
PARITY_BACKBONE = "tiny-vit-wide-quickgelu"  # text width 64, vision 128, embedding 96
WEIGHTS_SEED, VALUE_SEED, INPUT_SEED = 0, 3, 4
CLASSNAMES = ["red circle", "green_square", "blue triangle", "yellow cross", "purple circle"]
LABELS = [0, 3, 3, 1]  # a repeated label: the head's class-text rows are gathered twice
DATASET = "Caltech101"  # KgCoOp's hand template
# case -> (trainer, its DePT config, tiny-backbone overrides of the method node)
CASES = {
    "coop": ("CoOp", "CoOp/vit_b16_ep10_bs4_lr35_dept", {}),
    "cocoop": ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_dept", {}),
    "kgcoop": ("KgCoOp", "KgCoOp/vit_b16_ep10_ctxv1_bs4_lr35_dept", {}),
    "maple": ("MaPLe", "MaPLe/vit_b16_c2_ep10_batch4_2ctx_dept", {"PROMPT_DEPTH": 3}),
}


# ------------------------------------------------------------------ the case
def case_cfg(case, weights, prec="fp32", truncate=True, dept=True, options=()):
    from dassl_compat import get_cfg_default
    from dassl_compat import TRAINER_REGISTRY
    from train import extend_cfg

    trainer, config, node_values = CASES[case]
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / f"{config}.yaml"))
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED = str(weights), ""
    cfg.MODEL.BACKBONE.TRUNCATE_TEXT = truncate
    cfg.INPUT.SIZE = (32, 32)
    cfg.DATASET.NAME = DATASET
    node = cfg.TRAINER[TRAINER_REGISTRY.get(trainer).METHOD_NODE]
    node.update(node_values)
    node.PREC = prec
    cfg.DEPT.ENABLE = dept
    cfg.TRAINER.NAME = trainer
    cfg.merge_from_list(list(options))
    return cfg


def build_case(case, weights, prec="fp32", truncate=True, dept=True, options=(),
               classnames=CLASSNAMES):
    """Our trainer (no data loaders) with its model and DePT built as ``build_model`` builds
    them, the case's learnable values, images and labels."""
    import trainers  # noqa: F401  (registers the trainers)
    from clip_backbone import build_backbone
    from clip_backbone.templates import clean_classname
    from dassl_compat import TRAINER_REGISTRY
    from datasets import dataset_template
    from regularizers import FrozenCLIP, build_regularizers, needed_features

    cfg = case_cfg(case, weights, prec, truncate, dept, options)
    cls = TRAINER_REGISTRY.get(CASES[case][0])
    t = cls.__new__(cls)  # skip TrainerX.__init__: no dataset needed here
    t.cfg, t.precision, t.step_count = cfg, prec, 0
    backbone = build_backbone(cfg, "cpu", prec)
    torch.manual_seed(0)
    t.model = t.build_custom_clip(cfg, classnames, backbone)
    frozen = FrozenCLIP(backbone, [clean_classname(c) for c in classnames],
                        dataset_template(DATASET))
    regs = build_regularizers(cfg, embed_dim=backbone.embed_dim, towers=t.prompted_towers(),
                              prompt_depth=t.prompt_depth(), frozen=frozen, batch_size=len(LABELS))
    t.regularizers = nn.ModuleList(regs)
    t.regularizer_needs = needed_features(regs)
    set_case_values(t)
    gen = torch.Generator().manual_seed(INPUT_SEED)
    return t, torch.randn(len(LABELS), 3, 32, 32, generator=gen), torch.tensor(LABELS)


def learnable(t):
    """``{name: parameter}``: the prompt learner's, then DePT's (prefixed ``dept.``)."""
    params = {n: p for n, p in t.model.prompt_learner.named_parameters() if p.requires_grad}
    for reg in t.regularizers:
        params.update({f"dept.{n}": p for n, p in reg.named_parameters()})
    return params


def set_case_values(t):
    """Every learnable tensor, in ``learnable`` order, from seeded N(0, 0.1) noise (cwT
    scales around 1)."""
    gen = torch.Generator().manual_seed(VALUE_SEED)
    with torch.no_grad():
        for name, p in learnable(t).items():
            noise = torch.randn(p.shape, generator=gen) * 0.1
            p.copy_(noise + 1 if name.endswith(".scale") else noise)


def training_step(t, images, labels):
    """The base trainer's step up to the backward pass (``forward_backward``): the method's
    weighted terms, DePT's loss from the features it needs, their sum."""
    from trainers.models import ForwardHooks

    t.model.train()
    t.regularizers.train()
    hooks = ForwardHooks()
    reg_loss, summary = None, {}
    with t.autocast():
        step = t.weighted_step_loss(images, labels, hooks)
        if t.regularizers:
            reg_loss, summary = t.regularizer_loss(images, labels, step, hooks)
    return step, reg_loss, summary, step.total() if reg_loss is None else step.total() + reg_loss


def optimizers(t):
    """The prompt learner's optimizer as ``build_model`` makes it, then the plug-in's own
    (``optimizer()``), and functions making their schedulers (a scheduler sets the warmup LR
    when it is made, so the one-step check makes them after its step)."""
    from dassl_compat import build_lr_scheduler, build_optimizer

    optims = [build_optimizer(t.model.prompt_learner, t.cfg.OPTIM)]
    schedulers = [lambda: build_lr_scheduler(optims[0], t.cfg.OPTIM)]
    for reg in t.regularizers:
        optims.append(reg.optimizer())
        schedulers.append(lambda reg=reg, optim=optims[-1]: reg.scheduler(optim))
    return optims, schedulers


# ------------------------------------------------------------------ parity
# fp16 (logits, loss, gradients), relative to the largest entry: test_parity_fp16.py's bounds
# on the recording machine; elsewhere its fp16 ulps, as a relative bound (an ulp at the largest
# entry is at most 2**-10 of it)
TOLERANCE = {kind: tuple(FP16_TOLERANCE[kind][k] for k in ("logits", "loss", "grad"))
             for kind in FP16_TOLERANCE}
OTHER_TORCH = tuple(ELSEWHERE_ULPS[k] * 2.0 ** -10 for k in ("logits", "loss", "grad"))


GOLDEN_FILES = sorted(p.stem for p in GOLDEN.glob("*.json"))
FP32_TOLERANCE = 1e-5  # relative to the largest entry of each compared tensor


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from tests.helpers.tiny import write_openai_state_dict

    path = tmp_path_factory.mktemp("weights") / "tiny_openai.pt"
    write_openai_state_dict(path, seed=WEIGHTS_SEED, name=PARITY_BACKBONE)
    return path


def load(name):
    return json.loads((GOLDEN / f"{name}.json").read_text())


def as_tensor(record):
    return torch.tensor(record["values"], dtype=torch.float64).view(record["shape"])


def difference(ours, record):
    """Max abs difference of our tensor and a golden record (full values, or its fingerprint
    and first 64 values), and the record's scale (its largest entry)."""
    assert str(ours.dtype).replace("torch.", "") == record["dtype"]
    ours = ours.detach().double()
    assert torch.isfinite(ours).all()
    if "values" in record:
        ref = as_tensor(record)
        return (ours - ref).abs().max().item(), ref.abs().max().item()
    flat, first = ours.flatten(), torch.tensor(record["first64"], dtype=torch.float64)
    err = max((flat[:64] - first).abs().max().item(),
              abs(flat.sum().item() - record["sum"]) / flat.numel(),
              abs(flat.abs().sum().item() - record["abs_sum"]) / flat.numel())
    return err, first.abs().max().item()


def run_case(golden, weights, truncate=True):
    """Everything a golden file pins, computed by our code: evaluation logits through the
    trainer's ``model_inference`` (the trained classes), the CLIP logits (what other classes
    get), the head alone; the training step's terms, gradients, one optimizer step; the LR
    schedule of both optimizers."""
    case, prec = golden["case"], golden["prec"]
    t, images, labels = build_case(case, weights, prec, truncate)
    dept = t.regularizers[0]
    params = learnable(t)
    out = {"dtypes": {n: str(p.dtype).replace("torch.", "") for n, p in params.items()}}
    t.model.eval()
    t.regularizers.eval()
    with torch.no_grad(), t.model.cached_text_features():
        out["logits"] = t.model_inference(images)
        out["logits_clip"] = t.model(images)
        dept.fusion = False
        out["logits_head"] = t.model_inference(images)
        dept.fusion = True
    step, reg_loss, summary, loss = training_step(t, images, labels)
    out["loss"], out["reg_loss"], out["summary"], out["terms"] = loss, reg_loss, summary, step.terms
    if not loss.requires_grad:
        return out
    optims, schedulers = optimizers(t)
    for optim in optims:
        optim.zero_grad()
    loss.backward()
    out["grads"] = {n: p.grad.detach().clone() for n, p in params.items()}
    out["groups"] = [[g["lr"] for g in optim.param_groups] for optim in optims]
    for optim in optims:
        optim.step()
    out["after"] = {n: p.detach().clone() for n, p in params.items()}
    scheds = [make() for make in schedulers]
    lrs = [[optim.param_groups[0]["lr"] for optim in optims]]
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()"
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(t.cfg.OPTIM.MAX_EPOCH):
            for sched in scheds:
                sched.step()
            lrs.append([optim.param_groups[0]["lr"] for optim in optims])
    out["lrs"] = lrs
    return out


def relative(ours, record):
    err, scale = difference(ours, record)
    return err / scale if scale else err


def check_case(golden, ours, tol_logits, tol_loss, tol_step):
    """Every pinned quantity within its relative tolerance (0: bit for bit)."""
    assert ours["dtypes"] == golden["dtypes"]
    for key in ("logits", "logits_clip", "logits_head"):
        assert relative(ours[key], golden[key]) <= tol_logits, key
    terms = golden["loss_terms"]
    pairs = [("loss", ours["loss"], golden["loss"]),
             ("ce", ours["terms"]["ce"], terms["ce_weighted"]["value"]),
             ("ce_head", ours["reg_loss"], terms["ce_head_weighted"]["value"]),
             ("ce_head (unweighted)", ours["summary"]["ce_head"], terms["ce_head"]["value"])]
    if "kg" in terms:
        pairs.append(("kg", ours["terms"]["kg"], terms["kg_weighted"]["value"]))
    for what, value, ref in pairs:
        value = value.item() if torch.is_tensor(value) else value
        assert value == pytest.approx(ref, rel=tol_loss, abs=0), what
    assert str(ours["loss"].dtype).replace("torch.", "") == golden["loss_dtype"]
    for name, grad in ours["grads"].items():
        assert relative(grad, golden["grads"][name]) <= tol_step(name), f"grad of {name}"
        assert relative(ours["after"][name], golden["params_after_step"][name]) <= \
            tol_step(name), f"{name} after one step"
    # the reference's two parameter groups are our two optimizers: prompts at OPTIM.LR, cwT
    # and head at OPTIM.LR x LR_EXP (its staged LR computes LR x 6.5 / 6.5 for the prompts,
    # 0.0020000000000000005 for 0.002: the same float32 and fp16 update)
    groups = golden["param_groups"]
    assert [g["params"] for g in groups] == [
        [n for n in ours["grads"] if not n.startswith("dept.")],
        [n for n in ours["grads"] if n.startswith("dept.")]]
    assert [lr for lrs in ours["groups"] for lr in lrs] == \
        pytest.approx([g["lr"] for g in groups], rel=1e-12)
    # and follow the same schedule (ours in closed form, Dassl's recursively: 1e-16 apart)
    assert ours["lrs"] == [pytest.approx(lrs, rel=1e-12) for lrs in golden["lr_schedule"]]


def fp16_counterpart_difference(golden, name):
    """How far the reference's own fp16 gradient of ``name`` is from its fp32 one (relative
    to the largest entry): the scale of fp16 rounding on this case."""
    fp32 = load(golden["case"] + "_fp32")["grads"][name]
    key = "values" if "values" in fp32 else "first64"
    a, b = (torch.tensor(r[key], dtype=torch.float64) for r in (fp32, golden["grads"][name]))
    return ((a - b).abs().max() / a.abs().max()).item()


def test_golden_files_were_made_from_this_case(weights):
    state = torch.load(weights, weights_only=True)
    abs_sum = sum(float(v.double().abs().sum()) for v in state.values() if v.is_floating_point())
    for name in GOLDEN_FILES:
        golden = load(name)
        assert abs_sum == pytest.approx(golden["weights_fingerprint"], rel=1e-9), name
        t, _, _ = build_case(golden["case"], weights)
        values = {n: [float(p.detach().double().sum()), float(p.detach().double().abs().sum())]
                  for n, p in learnable(t).items()}
        assert list(golden["values_fingerprint"]) == list(values), name
        for n, fingerprint in values.items():
            assert fingerprint == pytest.approx(golden["values_fingerprint"][n], rel=1e-9), n


FP32 = [n for n in GOLDEN_FILES if n.endswith("_fp32")]
FP16 = [n for n in GOLDEN_FILES if n.endswith("_fp16")]
# DePT's KgCoOp takes the cosine of the raw class text features (elp_kgcoop.py, _loss); ours,
# as KgCoOp's own reference, of the normalized ones (the normalization both terms share):
# the same in real arithmetic, in fp16 not the same last bits of the gradient.
NOT_BITWISE_FP16 = {"kgcoop"}


@pytest.mark.parametrize("text", ["full", "truncated"])
@pytest.mark.parametrize("name", FP32)
def test_fp32_logits_loss_terms_gradients_and_step_equal_the_reference(name, text, weights):
    golden = load(name)
    ours = run_case(golden, weights, truncate=text == "truncated")
    # full text: as the reference computes it (bit for bit on the recording machine); the
    # default truncated text is exact in real arithmetic, and rounds differently (measured:
    # logits and losses 1.4e-6, gradients 4.6e-5, MaPLe's proj.weight)
    tol = FP32_TOLERANCE if text == "full" else 1e-4
    check_case(golden, ours, FP32_TOLERANCE, FP32_TOLERANCE, lambda _: tol)


@pytest.mark.parametrize("text", ["full", "truncated"])
@pytest.mark.parametrize("name", FP16)
def test_fp16_logits_loss_terms_gradients_and_step_equal_the_reference(name, text, weights):
    golden = load(name)
    kind = "truncated" if text == "truncated" or golden["case"] in NOT_BITWISE_FP16 else "full"
    tol = TOLERANCE[kind]
    if not recorded_here(golden):
        tol = tuple(max(a, b) for a, b in zip(tol, OTHER_TORCH))
    if not cpu_fp16_training():
        pytest.skip(NO_CPU_FP16)
    ours = run_case(golden, weights, truncate=text == "truncated")
    step = tol[2]
    if kind == "truncated":  # within what fp16 rounding moves the reference's own gradient
        check_case(golden, ours, tol[0], tol[1],
                   lambda n: max(step, fp16_counterpart_difference(golden, n)))
    else:
        check_case(golden, ours, tol[0], tol[1], lambda _: step)


@pytest.mark.parametrize("name", FP32)
def test_negative_control_a_nudged_prompt_or_head_is_seen(name, weights):
    """The same check against the reference with one prompt, or the head, nudged by
    N(0, 1e-3): the logits are then far outside the tolerance."""
    golden = load(name)
    ours = run_case(golden, weights, truncate=False)
    for which in ("prompt", "head"):
        nudged = torch.tensor(golden["negative_control"][which]["logits"], dtype=torch.float64)
        off = ((ours["logits"].double() - nudged).abs().max() / nudged.abs().max()).item()
        assert off > 30 * FP32_TOLERANCE, which
    nudged = golden["negative_control"]["prompt"]
    ce = ours["terms"]["ce"].item() / (1 - 0.7)
    assert abs(ce - nudged["ce"]) > FP32_TOLERANCE * abs(nudged["ce"])


# ------------------------------------------------------------- reduction and class sets
@pytest.mark.parametrize("case", list(CASES))
def test_with_weight_0_dept_is_the_shipped_trainer_bit_for_bit(case, weights):
    """DEPT.WEIGHT 0: the CLIP logits, the method's loss and its prompts' gradients and step
    are those of the trainer without DePT, bit for bit (the head trains on, unused)."""
    off, images, labels = build_case(case, weights, dept=False)
    zero, _, _ = build_case(case, weights, options=["DEPT.WEIGHT", 0.0])
    assert len(off.regularizers) == 0 and len(zero.regularizers) == 1
    logits = {}
    for name, t in (("off", off), ("zero", zero)):
        t.model.eval()
        t.regularizers.eval()
        with torch.no_grad(), t.model.cached_text_features():
            logits[name] = t.model_inference(images)
    assert torch.equal(logits["zero"], logits["off"])
    results = {}
    for name, t in (("off", off), ("zero", zero)):
        step, _, _, loss = training_step(t, images, labels)
        optim = optimizers(t)[0][0]
        optim.zero_grad()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in t.model.prompt_learner.named_parameters()
                 if p.requires_grad}
        optim.step()
        results[name] = (step.total(), grads, dict(t.model.prompt_learner.named_parameters()))
    assert torch.equal(results["zero"][0], results["off"][0])
    for n, grad in results["off"][1].items():
        assert torch.equal(results["zero"][1][n], grad), n
        assert torch.equal(results["zero"][2][n], results["off"][2][n]), n


def test_the_head_serves_the_classes_it_learned_and_no_others(weights):
    trained, images, _ = build_case("coop", weights)
    state = trained.regularizers[0].state_dict()
    assert "class_keys" in state and "eval_keys" not in state  # the learned classes are saved
    image = trained.model.encode_image_features(images)

    def evaluate(classnames):
        t, _, _ = build_case("coop", weights, classnames=classnames)
        dept = t.regularizers[0]
        dept.load_state_dict(state)  # the head takes the checkpoint's 5 rows
        t.model.eval()
        with torch.no_grad(), t.model.cached_text_features():
            return t.model_inference(images), t.model(images), dept

    # two of the classes, in another order (as ImageNet-A/R against ImageNet): their rows
    fused, clip, dept = evaluate([CLASSNAMES[3], CLASSNAMES[1]])
    assert dept.head.weight.shape[0] == 5
    with torch.no_grad():
        head = trained.regularizers[0].head(trained.regularizers[0].cwt_image(image))[:, [3, 1]]
    torch.testing.assert_close(fused, 0.3 * clip + 0.7 * head)
    # one class the head never saw (novel classes, another dataset): the CLIP logits alone
    fused, clip, _ = evaluate([CLASSNAMES[0], "orange star"])
    assert torch.equal(fused, clip)


def test_head_rows_match_classes_by_name_in_order():
    from regularizers.dept import match_rows as head_rows

    assert head_rows([7, 8, 9], [7, 8, 9]) == slice(None)
    assert head_rows([7, 8, 9], [9, 7]) == [2, 0]
    assert head_rows([7, 8, 9, 8], [8, 8]) == [1, 3]  # a repeated name: its rows in order
    assert head_rows([7, 8, 9], [8, 8]) is None
    assert head_rows([7, 8, 9], [7, 10]) is None


def test_a_learner_without_a_cross_entropy_term_is_refused(weights):
    from errors import ConfigError
    from trainers.models import ForwardHooks, StepLoss

    t, images, labels = build_case("coop", weights)

    def nll_only(images, labels, hooks):
        features = t.model.forward_features(images, hooks)
        return StepLoss({"nll": features.logits.logsumexp(-1).mean()}, features)

    t.step_loss = nll_only
    with pytest.raises(ConfigError, match="DEPT does not apply to CoOp: it weights the "
                                          "method's loss term 'ce'.*has nll"):
        t.weighted_step_loss(images, labels, ForwardHooks())


@pytest.mark.parametrize("case", list(CASES))
def test_dept_configs_are_their_baselines_with_the_references_dept_values(case):
    from dassl_compat import get_cfg_default
    from train import extend_cfg

    def merged(config):
        cfg = get_cfg_default()
        extend_cfg(cfg)
        cfg.merge_from_file(str(REPO / "configs" / "trainers" / f"{config}.yaml"))
        return cfg

    config = CASES[case][1]
    dept, base = merged(config), merged(config[:-len("_dept")])
    assert (dept.DEPT.ENABLE, dept.DEPT.WEIGHT, dept.DEPT.LR_EXP, dept.DEPT.CWT,
            dept.DEPT.TEST_TIME_FUSION) == (True, 0.7, 6.5, True, True)
    assert not base.DEPT.ENABLE
    base.DEPT = dept.DEPT
    assert base.dump() == dept.dump()


def test_results_tool_labels_dept_runs_with_the_published_rows():
    from tools import published, results

    assert results.published_label("CoOp", "vit_b16_ep10_bs4_lr35_dept") == "CoOp + DePT"
    assert results.published_label("MaPLe", "vit_b16_c2_ep10_batch4_2ctx_dept") == "MaPLe + DePT"
    assert results.published_label("CoOp", "vit_b16_ep10_bs4_lr35") == "CoOp"
    assert published.BASE2NEW["KgCoOp + DePT"] == (83.62, 75.04, 79.10)
    assert published.XD["CoCoOp + DePT"].average == 65.88
    assert published.DG["MaPLe + DePT"].source == 70.97


def test_published_dept_rows_show_beside_dept_runs_in_the_transfer_tables(tmp_path):
    from tests.test_results_protocols import add_xd
    from tools import results, results_protocols as rp
    from tools.protocol import DG_TARGETS, XD_TARGETS

    root = str(tmp_path)
    add_xd(root, "CoOp", 1, 72.0, {t: 60.0 for t in XD_TARGETS + DG_TARGETS},
           cfg="vit_b16_ep10_bs4_lr35_dept")
    (row,) = rp.summarize_transfer(root, "xd").published
    assert row.method == "CoOp + DePT" and "Koorye/DePT" in row.where
    assert (row.values[rp.SOURCE], row.values["caltech101"], row.values["ucf101"],
            row.values[results.AVERAGE]) == (72.63, 93.30, 68.80, 65.02)
    (row,) = rp.summarize_transfer(root, "dg").published
    assert (row.values["imagenet_a"], row.values["imagenet_r"]) == (51.57, 77.33)


# ------------------------------------------------------------------ end to end
def test_train_then_evaluate_base_and_novel_classes_through_train_py(tmp_path):
    """CoOp + DePT on the base classes, checkpointed with its head; the novel classes are
    evaluated with the CLIP logits alone (the accuracy of the same prompts without DePT), the
    base classes with the fused ones."""
    from tests.helpers.tiny import make_toy_dataset, read_log, train_args, train_in_process

    data = make_toy_dataset(str(tmp_path / "data"), train_per_class=4)
    config = "configs/trainers/CoOp/tiny_ctxv1.yaml"
    opts = ["DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "2"]
    out = tmp_path / "train"
    assert train_in_process(train_args(data, out, config=config, extra=[
        *opts, "DATASET.SUBSAMPLE_CLASSES", "base", "DEPT.ENABLE", "True"])) == 0
    log = read_log(out)
    assert "Regularizers: DePT" in log and "ce_head" in log
    assert "DePT: the evaluated classes are among the 3 its head learned: CLIP logits fused" in log
    state = torch.load(out / "dept" / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert sorted(state) == ["class_keys", "cwt_image.bias", "cwt_image.scale", "cwt_text.bias",
                             "cwt_text.scale", "head.bias", "head.weight"]
    accuracy = {}
    for dept in ("True", "False"):
        run = tmp_path / f"new_{dept}"
        assert train_in_process(train_args(data, run, config=config, extra=[
            "--eval-only", "--model-dir", str(out), "--load-epoch", "2", *opts,
            "DATASET.SUBSAMPLE_CLASSES", "new", "DEPT.ENABLE", dept])) == 0
        log = read_log(run)
        assert ("to dept (epoch=2" in log) == (dept == "True")
        accuracy[dept] = log.split("* accuracy: ")[1].split("%")[0]
    assert "CLIP logits alone" in read_log(tmp_path / "new_True")
    assert accuracy["True"] == accuracy["False"]
