"""Every registered regularizer switched on from the config trains, checkpoints, resumes and
evaluates with every registered prompt trainer that provides what it needs, and is refused by
name by one that does not (tiny backbone, built-in engine); with all of them off the result
is bitwise what it was before they existed."""
import glob
import math
import os.path as osp

import pytest
import torch

import train
import trainers  # noqa: F401  (registers the trainers)
from dassl_compat import TRAINER_REGISTRY, build_trainer
from regularizers import REGULARIZERS as REGISTERED
from tests.helpers.tiny import make_toy_dataset, run_train, train_args
from tests.helpers.torch_support import recorded_here
from trainers.base import PromptTrainer

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# every registered prompt trainer, with its tiny-backbone config
TRAINERS = {
    name: osp.relpath(sorted(glob.glob(osp.join(REPO, "configs", "trainers", name, "tiny_*.yaml")))[0],
                      REPO)
    for name in sorted(TRAINER_REGISTRY.registered_names())
    if isinstance(TRAINER_REGISTRY.get(name), type)
    and issubclass(TRAINER_REGISTRY.get(name), PromptTrainer)
    and glob.glob(osp.join(REPO, "configs", "trainers", name, "tiny_*.yaml"))
}
# every registered regularizer switched on, and variants worth their own run (plain FDA)
REGULARIZERS = {node: [f"{node}.ENABLE", "True"] for node in REGISTERED}
REGULARIZERS["FDA"] = ["PROXYFDA.ENABLE", "True", "PROXYFDA.PROXY.ENABLE", "False"]
# a summary item each logs (a registered regularizer not listed: its class name in the log)
SUMMARY_ITEM = {"PROXYFDA": "proxy", "FDA": "fda_text", "LDIFS": "ldifs_text", "PACE": "pace",
                "DEPT": "ce_head"}
# the combinations the contract refuses, as the README's table says; every other one trains
# (MultiModalAdapter trains with every one: PACE's noise multiplies its adapter residuals)
# (CLIPLoRA: all of them; PACE's noise multiplies the output of every LoRA branch)
REFUSED = {("CoCoOp", "LDIFS"): "'hidden'", ("CoCoOp", "PACE"): "prompt-noise hook"}
assert {"CoOp", "CoCoOp", "KgCoOp", "IVLP", "MaPLe", "PromptSRC"} <= set(TRAINERS)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")), train_per_class=4)


def build(root, out, trainer, extra):
    args = train.build_parser().parse_args(train_args(
        root, out, trainer=trainer, config=TRAINERS[trainer],
        extra=["DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1",
               "DATALOADER.TRAIN_X.BATCH_SIZE", "6", *extra]))
    return build_trainer(train.setup_cfg(args))


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("reg", REGULARIZERS)
@pytest.mark.parametrize("trainer", TRAINERS)
def test_regularizer_trains_checkpoints_resumes_and_evaluates(root, tmp_path, trainer, reg,
                                                              capsys):
    from errors import ConfigError

    out = tmp_path / "run"
    extra = ["DATASET.SUBSAMPLE_CLASSES", "base", *REGULARIZERS[reg]]
    if (trainer, reg) in REFUSED:
        with pytest.raises(ConfigError, match=f"does not apply to {trainer}") as refusal:
            build(root, out, trainer, extra)
        assert REFUSED[trainer, reg] in str(refusal.value)
        return
    first = build(root, out, trainer, extra)
    assert first.regularizers, "the config switch did not build the regularizer"

    def stop_after_first_epoch():
        type(first).after_epoch(first)
        raise Interrupted

    first.after_epoch = stop_after_first_epoch
    with pytest.raises(Interrupted):
        first.train()
    log = capsys.readouterr().out
    assert SUMMARY_ITEM.get(reg, type(first.regularizers[0]).__name__) in log  # it is logged

    second = build(root, out, trainer, extra)
    second.train()
    log = capsys.readouterr().out
    assert "Previous epoch: 1" in log and "epoch [2/2]" in log and "* accuracy:" in log
    name = second.CHECKPOINT_NAME
    state = torch.load(osp.join(out, name, "model.pth.tar-2"), weights_only=True)["state_dict"]
    assert all(not k.startswith(("backbone.", "clip.", "visual.", "transformer.")) for k in state)

    evaluator = build(root, tmp_path / "new", trainer, ["DATASET.SUBSAMPLE_CLASSES", "new",
                                                        *REGULARIZERS[reg]])
    evaluator.load_model(str(out), epoch=2)
    accuracy = evaluator.test()
    assert 0 <= accuracy <= 100


def test_regularizers_are_off_by_default_and_off_means_untouched(root, tmp_path):
    # The same run as the golden file, first recorded before regularizers were wired in, and
    # again when the towers' float order changed (the file says so). Bitwise on the machine
    # and torch it was recorded with (its "machine" field). Another CPU or torch rounds
    # differently: by 7.5e-9 to 1.7e-8 on one Xeon (torch 2.14 and 2.3; oneDNN, MKL and ATen
    # at their own or capped instruction sets), up to 4.5 float32 ulps at the largest entry
    # (0.054, where the spacing is 3.7e-9). Allowed elsewhere: 16 such ulps. Each regularizer
    # left on moves it by more: LDIFS, the weakest here, by 2.2e-7 (59 ulps).
    golden = torch.load(osp.join(osp.dirname(__file__), "golden",
                                 "coop_tiny_ctx_before_regularizers.pt"), weights_only=True)
    data = make_toy_dataset(str(tmp_path / "data"), train_per_class=8)
    out = tmp_path / "off"
    run_train(train_args(data, out, extra=["DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES",
                                           "base", "OPTIM.MAX_EPOCH", "2"]))
    ctx = torch.load(osp.join(out, "prompt_learner", "model.pth.tar-2"),
                     weights_only=True)["state_dict"]["ctx"]
    if recorded_here(golden):
        assert torch.equal(ctx, golden["ctx"])
    else:
        largest = golden["ctx"].abs().max().item()
        ulp = 2.0 ** (math.floor(math.log2(largest)) - 23)  # float32's spacing there
        torch.testing.assert_close(ctx, golden["ctx"], rtol=0, atol=16 * ulp)
    assert not osp.exists(osp.join(out, "regularizers"))


def test_proxy_generator_is_not_needed_for_evaluation(root, tmp_path):
    out = tmp_path / "pfda"
    trainer = build(root, out, "CoOp", ["DATASET.SUBSAMPLE_CLASSES", "base",
                                        *REGULARIZERS["PROXYFDA"]])
    trainer.train()
    generator = [p for r in trainer.regularizers for p in r.generator_parameters()]
    assert 0 < sum(p.numel() for p in generator)
    # Evaluate with the regularizer off: only the prompt learner is loaded.
    evaluator = build(root, tmp_path / "eval", "CoOp", ["DATASET.SUBSAMPLE_CLASSES", "new"])
    evaluator.load_model(str(out), epoch=2)
    assert evaluator.get_model_names() == ["prompt_learner"]
    assert 0 <= evaluator.test() <= 100


def test_similar_class_sampler_replaces_the_training_batches(root, tmp_path):
    trainer = build(root, tmp_path / "sampler", "CoOp", [
        *REGULARIZERS["PROXYFDA"], "PROXYFDA.SAMPLER.ENABLE", "True",
        "PROXYFDA.SAMPLER.NUM_CLASSES", "3", "PROXYFDA.SAMPLER.NUM_IMAGES", "2"])
    for batch in trainer.train_loader_x:
        labels = batch["label"].tolist()
        assert len(labels) == 6 and len(set(labels)) == 3
        assert all(labels.count(y) == 2 for y in set(labels))


def test_a_regularizer_a_trainer_cannot_feed_is_refused_by_name(root, tmp_path):
    from errors import ConfigError

    args = train.build_parser().parse_args(train_args(
        root, tmp_path / "cc", trainer="CoCoOp", config="configs/trainers/CoCoOp/tiny_ctxv1.yaml",
        extra=["LDIFS.ENABLE", "True"]))
    with pytest.raises(ConfigError, match="LDIFS does not apply to CoCoOp"):
        build_trainer(train.setup_cfg(args))


def test_ensemble_templates_average_promptsrc_s_template_set(root, tmp_path):
    import torch.nn.functional as F

    from clip_backbone.templates import IMAGENET_TEMPLATES as PROMPTSRC_TEMPLATES

    trainer = build(root, tmp_path / "ens", "CoOp", [*REGULARIZERS["FDA"],
                                                     "PROXYFDA.TEMPLATES", "ensemble"])
    names = [c.replace("_", " ") for c in trainer.dm.dataset.classnames]
    backbone = trainer.model.backbone
    expected = F.normalize(torch.stack([
        F.normalize(backbone.encode_prompts([t.replace("{}", n) for n in names]), dim=-1)
        for t in PROMPTSRC_TEMPLATES]).mean(0), dim=-1)
    assert len(PROMPTSRC_TEMPLATES) == 60
    assert torch.allclose(trainer.regularizers[0].text_frozen, expected)
