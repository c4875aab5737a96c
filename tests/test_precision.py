"""The CUDA precision paths, reached on CPU with ``PREC_ON_CPU=1``.

* fp16 is the reference repositories' fp16: OpenAI's fp16 CLIP (``convert_weights`` plus
  LayerNorms computing in fp32), and in each prompt learner exactly the tensors the reference
  keeps in fp16, the others fp32 (cast where they enter a tower). The table below is what a
  construction-only run of the unpatched reference code gave in PREC fp16, with where each
  dtype comes from.
* amp: fp32 weights everywhere, the step under ``torch.autocast`` with a GradScaler.
* Every trainer trains, checkpoints, resumes and evaluates through train.py in both, each
  with a regularizer on.
"""
import os
import os.path as osp

import pytest
import torch

from tests.helpers.tiny import make_toy_dataset, read_log, train_args, train_in_process
from tests.helpers.torch_support import NO_CPU_FP16, cpu_fp16_training

# Learnable tensors (our names) that the reference keeps in fp16 in PREC fp16; every other
# learnable tensor of the trainer is fp32 there.
REFERENCE_FP16 = {
    # KaiyangZhou/CoOp trainers/coop.py:78 and :86/:89 create ctx in clip_model.dtype (fp16
    # after convert_weights); nothing else is learned.
    "CoOp": {"ctx"},
    # htyao89/KgCoOp trainers/kgcoop.py:101 and :110/:113: ctx in clip_model.dtype. Its
    # bias_vectors and meta_net (:122, :148) are not trained.
    "KgCoOp": {"ctx"},
    # BeierZhu/Prompt-align trainers/prograd.py:90/:103: ctx in clip_model.dtype (its zero-shot
    # CLIP is a second model turned .float(), nothing learned there).
    "ProGrad": {"ctx"},
    # htyao89/Textual-based_Class-aware_prompt_tuning trainers/tcp.py:146 (ctx in
    # clip_model.dtype) and :175 (`if COCOOP.PREC == "fp16": self.meta_net.half()`).
    "TCP": {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
            "meta_net.linear2.weight", "meta_net.linear2.bias"},
    # KaiyangZhou/CoOp trainers/cocoop.py:81/:86 (ctx in clip_model.dtype) and :102
    # (`if PREC == "fp16": self.meta_net.half()`).
    "CoCoOp": {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
               "meta_net.linear2.weight", "meta_net.linear2.bias"},
    # multimodal-prompt-learning trainers/independentVL.py:88/:93: ctx in clip_model.dtype.
    # The vision prompt VPT (clip/model.py:376) and the deep prompts VPT_shallow (:215/:218)
    # are created fp32 and convert_weights (:691) does not touch them.
    "IVLP": {"ctx"},
    # multimodal-prompt-learning trainers/maple.py:90/:95 (ctx) and :104 (`self.proj.half()`);
    # compound_prompts_text (:111) and compound_prompt_projections (:116) stay fp32.
    "MaPLe": {"ctx", "proj.weight", "proj.bias"},
    # PromptSRC trainers/promptsrc.py:94/:99 (ctx); VPT and VPT_shallow as IVLP
    # (clip/model.py:215/:218/:377, convert_weights at :693 skips them).
    "PromptSRC": {"ctx"},
}

CONFIGS = {
    "CoOp": ("configs/trainers/CoOp/tiny_ctxv1.yaml", "COOP", "prompt_learner"),
    "KgCoOp": ("configs/trainers/KgCoOp/tiny_ctxv1.yaml", "COOP", "prompt_learner"),
    "ProGrad": ("configs/trainers/ProGrad/tiny_template.yaml", "COOP", "prompt_learner"),
    "TCP": ("configs/trainers/TCP/tiny_ctxv1.yaml", "COOP", "prompt_learner"),
    "CoCoOp": ("configs/trainers/CoCoOp/tiny_ctxv1.yaml", "COCOOP", "prompt_learner"),
    "IVLP": ("configs/trainers/IVLP/tiny_2+2ctx.yaml", "IVLP", "VLPromptLearner"),
    "MaPLe": ("configs/trainers/MaPLe/tiny_2ctx.yaml", "MAPLE", "MultiModalPromptLearner"),
    "PromptSRC": ("configs/trainers/PromptSRC/tiny_4+4ctx.yaml", "PROMPTSRC", "VLPromptLearner"),
}
REGULARIZERS = {
    "ProxyFDA": (["PROXYFDA.ENABLE", "True"], "proxy"),
    "FDA": (["PROXYFDA.ENABLE", "True", "PROXYFDA.PROXY.ENABLE", "False"], "fda_text"),
    "LDIFS": (["LDIFS.ENABLE", "True"], "ldifs_text"),
    "PACE": (["PACE.ENABLE", "True"], "pace"),
}
# Each regularizer runs in both precisions; CoCoOp takes only Proxy-FDA / FDA.
CASES = {
    "fp16": {"CoOp": "PACE", "KgCoOp": "ProxyFDA", "CoCoOp": "ProxyFDA", "IVLP": "LDIFS",
             "MaPLe": "ProxyFDA", "PromptSRC": "FDA", "ProGrad": "LDIFS", "TCP": "PACE"},
    "amp": {"CoOp": "LDIFS", "KgCoOp": "PACE", "CoCoOp": "FDA", "IVLP": "ProxyFDA",
            "MaPLe": "LDIFS", "PromptSRC": "PACE", "ProGrad": "ProxyFDA", "TCP": "FDA"},
}
PREC_ENV = {"PREC_ON_CPU": "1"}


# ------------------------------------------------------------------ backbone
def test_prec_on_cpu_honours_fp16_and_amp(monkeypatch, capsys):
    from clip_backbone import resolve_precision

    monkeypatch.setenv("PREC_ON_CPU", "1")
    assert resolve_precision("fp16", "cpu") == "fp16"
    assert resolve_precision("amp", "cpu") == "amp"
    assert "WARNING" not in capsys.readouterr().out
    monkeypatch.setenv("PREC_ON_CPU", "0")
    assert resolve_precision("fp16", "cpu") == "fp32"


@pytest.fixture(scope="module")
def fp16_backbone():
    from clip_backbone import build_backbone
    from tests.test_trainers_vl import parity_cfg

    import tempfile
    from tests.helpers.tiny import write_openai_state_dict

    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, "w.pt")
        write_openai_state_dict(path, seed=0, name="tiny-vit-wide-quickgelu")
        cfg = parity_cfg("PromptSRC", path)
        return cfg, build_backbone(cfg, "cpu", "fp16"), build_backbone(cfg, "cpu", "fp32")


def test_fp16_backbone_is_openai_fp16_clip(fp16_backbone):
    """convert_weights: conv / linear / attention weights and the projections in fp16;
    embeddings and LayerNorm parameters fp32, LayerNorms computing in fp32."""
    from open_clip.transformer import LayerNormFp32

    _, backbone, _ = fp16_backbone
    clip = backbone.clip
    assert backbone.text.dtype == backbone.image.dtype == torch.float16
    assert clip.visual.conv1.weight.dtype == torch.float16
    assert clip.text_projection.dtype == clip.visual.proj.dtype == torch.float16
    block = clip.transformer.resblocks[0]
    assert block.attn.in_proj_weight.dtype == block.mlp.c_fc.weight.dtype == torch.float16
    assert clip.token_embedding.weight.dtype == clip.positional_embedding.dtype == torch.float32
    assert clip.visual.class_embedding.dtype == torch.float32
    norms = [m for m in clip.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(type(m) is LayerNormFp32 and m.weight.dtype == torch.float32
                         for m in norms)
    tokens = backbone.tokenize(["a photo of a dog."])
    assert backbone.embed(tokens).dtype == torch.float16
    assert backbone.encode_prompts(["a photo of a dog."]).dtype == torch.float16
    assert backbone.image(torch.randn(2, 3, 32, 32)).dtype == torch.float16


def test_promptsrc_teacher_text_features_are_fp32_in_fp16(fp16_backbone):
    """As the reference: an fp32 copy of the fp16-rounded text tower, not the fp16 tower."""
    from dassl_compat import TRAINER_REGISTRY

    cfg, backbone, _ = fp16_backbone
    names = ["red circle", "blue square"]
    model = TRAINER_REGISTRY.get("PromptSRC").build_custom_clip(None, cfg, names, backbone)
    teacher = model.frozen_text_features()
    assert teacher.dtype == torch.float32
    assert backbone.text.dtype == torch.float16  # the copy did not replace the tower
    with backbone.fp32_text():
        one = backbone.encode_prompts(["a bad photo of a red circle.", "a bad photo of a blue square."])
    assert one.dtype == torch.float32
    low = backbone.encode_prompts(["a bad photo of a red circle.", "a bad photo of a blue square."])
    assert not torch.equal(one, low.float())  # fp32 compute differs from fp16 compute


# ------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_toy_dataset(str(tmp_path_factory.mktemp("data")), classes=4, train_per_class=3,
                            test_per_class=2)


@pytest.fixture(scope="module")
def runs(root, tmp_path_factory):
    """Each (precision, trainer) with its regularizer: 2 epochs stopped after the first, the
    same command again (resumes), then evaluation on the new classes."""
    base = tmp_path_factory.mktemp("prec")

    def args(prec, trainer, out, extra=()):
        config, node, _ = CONFIGS[trainer]
        reg_opts, _ = REGULARIZERS[CASES[prec][trainer]]
        return train_args(root, base / prec / trainer / out, trainer, config, extra=[
            *extra, "DATASET.NUM_SHOTS", 3, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1,
            "DATALOADER.TRAIN_X.BATCH_SIZE", 3, f"TRAINER.{node}.PREC", prec, *reg_opts])

    codes = {}
    for prec in CASES:
        for trainer in CASES[prec]:
            train = args(prec, trainer, "base", ["DATASET.SUBSAMPLE_CLASSES", "base"])
            codes[prec, trainer] = [train_in_process(train, PREC_ENV, stop_after_epoch=1),
                                    train_in_process(train, PREC_ENV)]
            codes[prec, trainer].append(train_in_process(args(prec, trainer, "new", [
                "--model-dir", base / prec / trainer / "base", "--load-epoch", 2,
                "--eval-only", "DATASET.SUBSAMPLE_CLASSES", "new"]), PREC_ENV))
    return base, codes


def _checkpoint(out, name, epoch):
    return torch.load(osp.join(out, name, f"model.pth.tar-{epoch}"), map_location="cpu",
                      weights_only=False)


@pytest.mark.skipif(not cpu_fp16_training(), reason=NO_CPU_FP16)
@pytest.mark.parametrize("prec,trainer", [(p, t) for p in CASES for t in CASES[p]])
def test_trains_resumes_and_evaluates_with_a_regularizer(prec, trainer, runs):
    base, codes = runs
    assert codes[prec, trainer] == [3, 0, 0]
    out = base / prec / trainer / "base"
    first, log = read_log(out), read_log(out, latest=True)
    assert f"Note: PREC {prec} on cpu" in first
    assert "Previous epoch: 1" in log and "epoch [2/2]" in log and "Finish training" in log
    _, item = REGULARIZERS[CASES[prec][trainer]]
    assert f" {item} " in first + log  # the regularizer's loss is logged
    assert "nan" not in (first + log).lower()
    assert "* accuracy:" in read_log(base / prec / trainer / "new")

    name = CONFIGS[trainer][2]
    state = _checkpoint(out, name, 2)["state_dict"]
    fp16 = {k for k, v in state.items() if v.dtype == torch.float16}
    others = {v.dtype for k, v in state.items() if k not in fp16}
    if prec == "fp16":
        assert fp16 == REFERENCE_FP16[trainer], sorted(fp16)
    else:  # amp: fp32 master weights (the references' amp keeps CLIP and prompts fp32)
        assert not fp16
    assert others <= {torch.float32}
