"""The extension contract: a new trainer, a new feature with a regularizer that reads it, and
a method that changes the gradients are each one file (here, this test module), with nothing
else in the repository edited; and what would silently do nothing is refused when the run is
built.

* A trainer registers itself and its config node (``register_trainer``); train.py builds it
  and merges its keys.
* A feature is produced by name (``register_feature``); a regularizer that needs it gets it,
  whatever the trainer (here CoOp, whose image features are frozen CLIP's).
* A ProGrad-style projection overrides ``adjust_gradients`` only; the regularizers' gradients
  and their own optimizers' steps still reach the update (checked numerically).
"""
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regularizers import (REGULARIZERS, Regularizer, register_feature, register_regularizer,
                          unregister_feature)
from regularizers.config import ensure
from tests.helpers.tiny import make_toy_dataset, read_log, train_args, train_in_process
from tests.helpers.torch_support import NO_CPU_FP16, cpu_fp16_training
from trainers.base import PromptTrainer
from trainers.coop import CoOp
from trainers.models import PromptCLIP, StepLoss
from trainers.prompts import ClassPrompts
from trainers.registry import register_trainer, unregister_trainer


# ------------------------------------------------------ a new trainer, with its own node
def add_toy_prompt_config(cfg):
    node = ensure(cfg.TRAINER, "TOYPROMPT", type(cfg)())
    ensure(node, "N_CTX", 2)
    ensure(node, "PREC", "fp32")


class ToyPromptLearner(nn.Module):
    """A random context in front of the class name, and a CLIP-Adapter-like residual adapter
    on the class text features, kept in fp32 whatever the backbone's precision."""

    def __init__(self, n_ctx, classnames, backbone):
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(n_ctx, backbone.text_width) * 0.02)
        self.adapter = nn.Linear(backbone.embed_dim, backbone.embed_dim)
        nn.init.zeros_(self.adapter.weight)
        nn.init.zeros_(self.adapter.bias)
        self.classes = ClassPrompts(backbone, classnames, " ".join(["X"] * n_ctx), n_ctx)


class ToyPromptCLIP(PromptCLIP):
    def encode_text_features(self, hooks=None):
        learner = self.prompt_learner
        text = self.backbone.text(learner.classes.assemble(learner.ctx),
                                  learner.classes.tokenized_prompts, n_ctx=learner.classes.n_ctx,
                                  hooks=hooks)
        return text.float() + learner.adapter(text.float())  # fp32, on any backbone


class ToyPrompt(PromptTrainer):
    METHOD_NODE = "TOYPROMPT"
    CHECKPOINT_NAME = "prompt_learner"

    def build_custom_clip(self, cfg, classnames, backbone):
        learner = ToyPromptLearner(cfg.TRAINER.TOYPROMPT.N_CTX, classnames, backbone)
        return ToyPromptCLIP(backbone, learner)


@pytest.fixture
def toy_trainer():
    register_trainer(add_config=add_toy_prompt_config)(ToyPrompt)
    yield
    unregister_trainer("ToyPrompt")


# ------------------------------- a new feature, and a regularizer that is its only reader
FEATURE_CALLS = []


def zero_shot_logits(ctx):
    """Frozen CLIP's logits on the batch (frozen image features against the frozen class text
    features under the dataset template)."""
    FEATURE_CALLS.append(len(ctx.images))
    image = F.normalize(ctx.get("image_frozen").float(), dim=-1)
    text = F.normalize(ctx.get("text_frozen").float(), dim=-1)
    return ctx.backbone.logit_scale.exp().float() * image @ text.t()


def add_distill_config(cfg):
    node = ensure(cfg, "DISTILL", type(cfg)())
    ensure(node, "ENABLE", False)
    ensure(node, "WEIGHT", 1.0)


class Distill(Regularizer):
    """KL(zero-shot || prompted) on the batch's logits."""

    name = "distill"
    needs = frozenset({"logits", "logits_zero_shot", "text_frozen"})
    seen = {}

    def __init__(self, node, context):
        super().__init__()
        self.weight = float(node.WEIGHT)

    def forward(self, feats):
        type(self).seen["text_frozen"] = feats.text_frozen
        kl = F.kl_div(F.log_softmax(feats.logits.float(), 1),
                      F.log_softmax(feats.logits_zero_shot, 1), reduction="batchmean",
                      log_target=True)
        return self.weight * kl, {"distill": kl.item()}


@pytest.fixture
def distill_registered():
    register_feature("logits_zero_shot", "frozen CLIP's logits on the batch")(zero_shot_logits)
    register_regularizer("DISTILL", add_config=add_distill_config)(Distill)
    FEATURE_CALLS.clear()
    yield
    REGULARIZERS.pop("DISTILL")
    unregister_feature("logits_zero_shot")


# ------------------------------------------------------- a method that changes the update
class ProjectedCoOp(CoOp):
    """CoOp whose cross-entropy gradient is projected away from the direction that conflicts
    with the gradient of a KL term towards zero-shot CLIP (ProGrad, Zhu et al. 2023)."""

    projections = 0

    def build_model(self):
        self.hand_prompts = [f"a photo of a {c}." for c in self.dm.dataset.classnames]
        super().build_model()

    def step_loss(self, images, labels, hooks):
        step = super().step_loss(images, labels, hooks)
        with torch.no_grad():
            zero_shot = self.model.logits(self.model.backbone.image(images),
                                          self.model.backbone.encode_prompts(self.hand_prompts))
        kl = F.kl_div(F.log_softmax(step.features.logits, 1), F.log_softmax(zero_shot, 1),
                      reduction="batchmean", log_target=True)
        return StepLoss({**step.terms, "kl": kl}, step.features)

    def adjust_gradients(self, grads):
        adjusted = project(grads["ce"], grads["kl"])
        type(self).projections += int(adjusted is not grads["ce"])
        return adjusted


def project(g, g_ref):
    """``g`` less its component against ``g_ref`` where the two conflict (ProGrad's rule)."""
    dot = sum((a * b).sum() for a, b in zip(g, g_ref))
    if dot >= 0:
        return g
    norm = sum((b * b).sum() for b in g_ref)
    return tuple(a - dot / norm * b for a, b in zip(g, g_ref))


@pytest.fixture
def projected_registered():
    register_trainer()(ProjectedCoOp)
    yield
    unregister_trainer("ProjectedCoOp")


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")), classes=4, train_per_class=4,
                            test_per_class=2)


def run(root, out, trainer="CoOp", config="configs/trainers/CoOp/tiny_ctxv1.yaml", extra=(),
        env=None):
    return train_in_process(train_args(root, out, trainer=trainer, config=config, extra=[
        "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", *extra]), env=env)


def state(out, key="ctx"):
    return torch.load(osp.join(out, "prompt_learner", "model.pth.tar-2"),
                      weights_only=True)["state_dict"][key]


# ------------------------------------------------------------------------------ tests
def test_a_trainer_from_its_own_module_registers_its_config_node_and_trains(root, tmp_path,
                                                                            toy_trainer):
    out = tmp_path / "toy"
    assert run(root, out, trainer="ToyPrompt", extra=["TRAINER.TOYPROMPT.N_CTX", "3"]) == 0
    log = read_log(out)
    assert "Finish training" in log and "* accuracy:" in log
    assert state(out).shape[0] == 3  # its own config key reached it
    # and every shipped regularizer trains with it, through the same contract
    for opts in (["PROXYFDA.ENABLE", "True"], ["LDIFS.ENABLE", "True"], ["PACE.ENABLE", "True"]):
        assert run(root, tmp_path / opts[0], trainer="ToyPrompt", extra=opts) == 0


@pytest.mark.skipif(not cpu_fp16_training(), reason=NO_CPU_FP16)
def test_fp32_learner_parameters_on_an_fp16_backbone_train(root, tmp_path, toy_trainer):
    out = tmp_path / "fp16"
    assert run(root, out, trainer="ToyPrompt", extra=["TRAINER.TOYPROMPT.PREC", "fp16"],
               env={"PREC_ON_CPU": "1"}) == 0
    assert state(out).dtype == torch.float32
    assert "Note: PREC fp16 on cpu" in read_log(out)


def test_a_new_feature_reaches_the_regularizer_that_reads_it(root, tmp_path, distill_registered):
    from clip_backbone.templates import clean_classname
    from datasets import dataset_template

    assert run(root, tmp_path / "off") == 0
    out = tmp_path / "distill"
    assert run(root, out, extra=["DISTILL.ENABLE", "True", "DISTILL.WEIGHT", "20.0"]) == 0
    log = read_log(out)
    assert "Regularizers: Distill" in log and " distill " in log
    assert FEATURE_CALLS  # produced by name, for CoOp (whose image features are frozen CLIP's)
    assert not torch.equal(state(out), state(tmp_path / "off"))  # it acted
    # text_frozen is the frozen CLIP's class text under the dataset template
    import train
    from dassl_compat import build_trainer

    t = build_trainer(train.setup_cfg(train.build_parser().parse_args(train_args(
        root, tmp_path / "check", extra=["DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES",
                                         "base", "DISTILL.ENABLE", "True"]))))
    images, labels = t.parse_batch_train(next(iter(t.train_loader_x)))
    hooks = t.forward_hooks()
    t.regularizer_loss(images, labels, t.step_loss(images, labels, hooks), hooks)
    template = dataset_template(t.cfg.DATASET.NAME)
    expected = t.model.backbone.encode_prompts(
        [template.format(clean_classname(c)) for c in t.dm.dataset.classnames])
    assert torch.equal(Distill.seen["text_frozen"], expected)


def test_a_method_that_changes_the_gradients_keeps_the_regularizers_in_the_update(
        root, tmp_path, projected_registered):
    import train
    from dassl_compat import build_trainer

    args = train.build_parser().parse_args(train_args(
        root, tmp_path / "proj", trainer="ProjectedCoOp", extra=[
            "DATASET.NUM_SHOTS", "4",  # all 4 classes: a class-text graph needs 3 or more
            "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "PROXYFDA.ENABLE", "True",
            "PROXYFDA.TEXT_WEIGHT", "50.0"]))
    t = build_trainer(train.setup_cfg(args))
    t.set_model_mode("train")
    batch = next(iter(t.train_loader_x))
    images, labels = t.parse_batch_train(batch)
    params = t.learnable_parameters()
    (reg,) = t.regularizers
    generator = list(reg.generator.parameters())

    # what the update must use: the projected method gradient plus the regularizer's own
    step = t.step_loss(images, labels, t.forward_hooks())
    reg_loss, _ = t.regularizer_loss(images, labels, step, t.forward_hooks())
    g_ce = torch.autograd.grad(step.terms["ce"], params, retain_graph=True)
    g_kl = torch.autograd.grad(step.terms["kl"], params, retain_graph=True)
    g_reg = torch.autograd.grad(reg_loss, params + generator)
    expected = [a + b for a, b in zip(project(g_ce, g_kl), g_reg)]
    assert sum(g.norm() for g in g_reg[:len(params)]) > 0

    seen = {}

    def record(name):
        def hook(opt, args, kwargs):
            seen[name] = [p.grad.clone() for group in opt.param_groups for p in group["params"]]
        return hook

    for name in t.get_model_names():
        t._optims[name].register_step_pre_hook(record(name))
    step = t.step_loss(images, labels, t.forward_hooks())
    reg_loss, _ = t.regularizer_loss(images, labels, step, t.forward_hooks())
    t.backward_and_update(step.total() + reg_loss, step, reg_loss)

    assert set(seen) == {"prompt_learner", reg.name}  # both optimizers stepped
    for got, want in zip(seen["prompt_learner"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for got, want in zip(seen[reg.name], g_reg[len(params):]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in seen[reg.name])  # the generator has its gradient


def test_a_method_that_changes_the_gradients_trains_end_to_end(root, tmp_path,
                                                              projected_registered):
    ProjectedCoOp.projections = 0
    assert run(root, tmp_path / "plain") == 0
    assert run(root, tmp_path / "proj", trainer="ProjectedCoOp",
               extra=["PROXYFDA.ENABLE", "True"]) == 0
    log = read_log(tmp_path / "proj")
    assert "Finish training" in log and "* accuracy:" in log and " proxy " in log
    assert ProjectedCoOp.projections > 0  # the conflicting gradients were projected
    assert not torch.equal(state(tmp_path / "proj"), state(tmp_path / "plain"))


# ------------------------------------------- what would silently do nothing
# (refused: tests/test_faults.py, the rows after "the extension contract")
@pytest.mark.parametrize("position", ["middle", "front"])
def test_pace_perturbs_a_context_split_around_the_class_name(root, tmp_path, position):
    out = tmp_path / position
    assert run(root, out, extra=["TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", "4",
                                 "TRAINER.COOP.CLASS_TOKEN_POSITION", position,
                                 "PACE.ENABLE", "True"]) == 0
    paces = [float(line.split(" pace ")[1].split()[0]) for line in read_log(out).splitlines()
             if " pace " in line]
    assert paces and all(p > 0 for p in paces)  # two noisy passes that differ


def test_the_probe_leaves_the_random_state_and_the_modes_alone(root, tmp_path):
    import train
    from dassl_compat import build_trainer

    args = train.build_parser().parse_args(train_args(root, tmp_path / "p", extra=[
        "DATASET.NUM_SHOTS", "4", "PACE.ENABLE", "True"]))
    t = build_trainer(train.setup_cfg(args))
    torch.manual_seed(123)
    t.check_regularizers()  # the probe draws PACE noise, inside a forked random state
    drawn = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(drawn, torch.rand(3))
    t.set_model_mode("eval")
    t.regularizers.eval()
    t.check_regularizers()  # in train mode inside, and back to what it was after
    assert not t.model.prompt_learner.training and not t.regularizers.training
