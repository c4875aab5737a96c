"""Extending the project takes one file: a regularizer registers itself from its own module
(here, this test file) and any trainer that provides what it needs trains with it; a trainer
that changes the update, not the loss (a ProGrad-style gradient projection), overrides one
method. Nothing else in the repository changes."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from dassl_compat import TRAINER_REGISTRY
from regularizers import REGULARIZERS, Regularizer, register_regularizer
from tests.helpers.tiny import make_toy_dataset, read_log, train_args, train_in_process
from trainers.coop import CoOp
from trainers.models import StepLoss


# ----------------------------------------------------------- a toy regularizer
def add_toy_config(cfg):
    if "TOYREG" not in cfg:
        cfg.TOYREG = type(cfg)()
        cfg.TOYREG.ENABLE = False
        cfg.TOYREG.WEIGHT = 1.0
    return cfg


class ToyRegularizer(Regularizer):
    """Pulls the prompted class text features towards the frozen ones (cosine)."""

    name = "toyreg"
    needs = frozenset({"text"})

    def __init__(self, node, context):
        super().__init__()
        self.weight = float(node.WEIGHT)
        self.register_buffer("frozen", context.frozen.text_features(), persistent=False)

    def forward(self, feats):
        distance = 1 - F.cosine_similarity(feats.text.float(), self.frozen.float()).mean()
        return self.weight * distance, {"toy_distance": distance.item()}


@pytest.fixture
def toy_registered():
    register_regularizer("TOYREG", add_config=add_toy_config)(ToyRegularizer)
    yield
    REGULARIZERS.pop("TOYREG")


# ---------------------------------------------------- a ProGrad-style trainer
class ProjectedCoOp(CoOp):
    """CoOp whose cross-entropy gradient is projected away from the direction that conflicts
    with the gradient of a KL term towards zero-shot CLIP (ProGrad, Zhu et al. 2023)."""

    projections = 0

    def step_loss(self, images, labels, hooks):
        step = super().step_loss(images, labels, hooks)
        with torch.no_grad():
            zero_shot = self.model.logits(self.model.backbone.image(images),
                                          self.model.backbone.encode_prompts(self.hand_prompts))
        kl = F.kl_div(F.log_softmax(step.features.logits, 1), F.log_softmax(zero_shot, 1),
                      reduction="batchmean", log_target=True)
        return StepLoss({**step.terms, "kl": kl}, step.features)

    def build_model(self):
        self.hand_prompts = [f"a photo of a {c}." for c in self.dm.dataset.classnames]
        super().build_model()

    def backward_and_update(self, loss, terms):
        params = [p for p in self.model.prompt_learner.parameters() if p.requires_grad]
        g_ce = torch.autograd.grad(terms["ce"], params, retain_graph=True)
        g_kl = torch.autograd.grad(terms["kl"], params)
        dot = sum((a * b).sum() for a, b in zip(g_ce, g_kl))
        norm = sum((b * b).sum() for b in g_kl)
        self.model_zero_grad()
        for p, a, b in zip(params, g_ce, g_kl):
            p.grad = a - dot / norm * b if dot < 0 else a.clone()
        type(self).projections += int(dot < 0)
        self.model_update()


@pytest.fixture
def projected_registered():
    TRAINER_REGISTRY.register(ProjectedCoOp)
    yield
    TRAINER_REGISTRY._obj_map.pop("ProjectedCoOp")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")), classes=4, train_per_class=4,
                            test_per_class=2)


def run(root, out, trainer="CoOp", config="configs/trainers/CoOp/tiny_ctxv1.yaml", extra=()):
    return train_in_process(train_args(root, out, trainer=trainer, config=config, extra=[
        "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", *extra]))


def ctx(out):
    return torch.load(osp.join(out, "prompt_learner", "model.pth.tar-2"),
                      weights_only=True)["state_dict"]["ctx"]


def test_a_regularizer_from_its_own_module_trains_with_any_trainer_that_feeds_it(
        root, tmp_path, toy_registered):
    assert run(root, tmp_path / "off") == 0
    assert run(root, tmp_path / "toy", extra=["TOYREG.ENABLE", "True", "TOYREG.WEIGHT", "50.0"]) == 0
    log = read_log(tmp_path / "toy")
    assert "Regularizers: ToyRegularizer" in log and " toy_distance " in log
    assert not torch.equal(ctx(tmp_path / "toy"), ctx(tmp_path / "off"))  # it acted


def test_a_trainer_that_changes_only_the_update_trains(root, tmp_path, projected_registered):
    ProjectedCoOp.projections = 0
    assert run(root, tmp_path / "plain") == 0
    assert run(root, tmp_path / "proj", trainer="ProjectedCoOp") == 0
    log = read_log(tmp_path / "proj")
    assert "Finish training" in log and "* accuracy:" in log
    assert ProjectedCoOp.projections > 0  # the conflicting gradients were projected
    assert not torch.equal(ctx(tmp_path / "proj"), ctx(tmp_path / "plain"))
