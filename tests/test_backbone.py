"""The open_clip backbone: loading by name or file, and prompt-free towers
that equal open_clip's own encode_text / encode_image."""
import os
import subprocess
import sys

import pytest
import torch

from clip_backbone import CLIPBackbone, load_clip, resolve_precision
from clip_backbone.loading import get_tokenizer
from errors import ConfigError, WeightsError
from tests.helpers.tiny import HANG_GUARD, REPO, tiny_clip, write_openai_state_dict


@pytest.fixture(scope="module")
def tiny():
    model = tiny_clip(seed=0)
    return model, CLIPBackbone(model, get_tokenizer(model, "tiny-vit-quickgelu"))


@pytest.mark.parametrize("name", ["tiny-vit-quickgelu", "tiny-vit-wide-quickgelu"])
def test_towers_without_prompts_equal_open_clip_encoders(name):
    model = tiny_clip(seed=1, name=name)
    backbone = CLIPBackbone(model, get_tokenizer(model, name))
    tokens = backbone.tokenize(["a photo of a dog.", "a red circle", "x"])
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        text = backbone.text(backbone.embed(tokens), tokens)
        image = backbone.image(images)
        assert (text - model.encode_text(tokens)).abs().max() < 1e-5
        assert (image - model.encode_image(images)).abs().max() < 1e-5


def test_deep_prompts_replace_text_tokens_after_the_first_token(tiny):
    _, backbone = tiny
    tokens = backbone.tokenize(["a photo of a dog."])
    seen = []
    # the blocks run sequence-first (L, N, D); look at their input batch-first
    hooks = [b.register_forward_pre_hook(lambda m, a, kw: seen.append(a[0].permute(1, 0, 2).clone()),
                                         with_kwargs=True)
             for b in backbone.text.transformer.resblocks]
    prompt = torch.full((2, backbone.text_width), 7.0)
    try:
        with torch.no_grad():
            backbone.text(backbone.embed(tokens), tokens, deep_prompts=[prompt, None])
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(seen[1][0, 1:3], prompt)  # layer 1: tokens 1..2 replaced
    assert not torch.equal(seen[2][0, 1:3], prompt)  # layer 2: None leaves it alone
    assert not torch.equal(seen[0][0, 1:3], prompt)  # layer 0 is the shallow input


def test_vision_prompts_enter_before_ln_pre_and_deep_ones_replace_the_last_tokens(tiny):
    _, backbone = tiny
    images = torch.randn(2, 3, 32, 32)
    shallow = torch.randn(3, backbone.vision_width)
    deep = torch.full((3, backbone.vision_width), 5.0)
    seen = {}
    ln = backbone.clip.visual.ln_pre.register_forward_hook(lambda m, a, out: seen.update(ln_in=a[0]))
    blk = backbone.clip.visual.transformer.resblocks[1].register_forward_pre_hook(
        lambda m, a, kw: seen.update(block1=a[0].permute(1, 0, 2).clone()), with_kwargs=True)
    try:
        with torch.no_grad():
            backbone.image(images, shallow_prompt=shallow, deep_prompts=[deep])
    finally:
        ln.remove()
        blk.remove()
    n_patches = (32 // 8) ** 2
    assert seen["ln_in"].shape[1] == 1 + n_patches + 3
    assert torch.equal(seen["ln_in"][0, -3:], shallow)  # appended, no positional embedding
    assert torch.equal(seen["block1"][:, -3:], deep.expand(2, -1, -1))


def test_local_openai_state_dict_builds_the_right_architecture(tmp_path):
    path = tmp_path / "tiny.pt"
    reference = write_openai_state_dict(path, seed=3, name="tiny-vit-wide-quickgelu")
    model, tokenizer_name = load_clip(str(path))
    assert tokenizer_name is None
    assert model.visual.transformer.width == 128 and model.transformer.width == 64
    assert len(model.visual.transformer.resblocks) == 4
    assert model.visual.conv1.weight.shape[-1] == 8 and model.visual.image_size == (32, 32)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_local_torchscript_archive_loads(tmp_path):
    reference = tiny_clip(seed=4)
    archive = tmp_path / "tiny-jit.pt"
    torch.jit.save(torch.jit.trace(reference, (torch.randn(1, 3, 32, 32),
                                               torch.zeros(1, 77, dtype=torch.long)), strict=False),
                   str(archive))
    model, _ = load_clip(str(archive))
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_wrapped_state_dict_with_module_prefix_loads(tmp_path):
    reference = tiny_clip(seed=5)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model, _ = load_clip(str(path))
    assert torch.equal(model.text_projection, reference.text_projection)


def test_missing_weights_offline_say_how_to_pass_a_local_file(tmp_path):
    # A fresh process: huggingface_hub reads HF_HUB_OFFLINE when it is imported. Any network
    # use there fails at once and is counted: offline means no connection is even tried.
    code = ("import socket\n"
            "lookups = []\n"
            "def refuse(host, *args, **kwargs):\n"
            "    lookups.append(host)\n"
            "    raise socket.gaierror(-2, 'Name or service not known')\n"
            "socket.getaddrinfo = refuse\n"
            "from clip_backbone import load_clip\n"
            "try:\n    load_clip('ViT-B/16')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
            "print('network lookups:', lookups)\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", CLIP_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=HANG_GUARD).stdout
    assert out.startswith("WeightsError Could not get CLIP weights for ViT-B/16")
    assert "MODEL.BACKBONE.NAME /path/to/ViT-B-16.pt" in out
    assert out.rstrip().endswith("network lookups: []")


def test_openai_cache_file_is_used_before_any_download(tmp_path, monkeypatch):
    # An offline cluster with the peers' ~/.cache/clip/ViT-B-16.pt: no network needed.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path))
    reference = write_openai_state_dict(tmp_path / "ViT-B-16.pt", seed=6)
    model, name = load_clip("ViT-B/16")
    assert name == "ViT-B-16-quickgelu"
    assert torch.equal(model.token_embedding.weight, reference.token_embedding.weight)


@pytest.mark.parametrize("name, pretrained, error, message", [
    ("ViT-Z/99", "", ConfigError, "Unknown backbone"),
    ("/no/such/ViT-B-16.pt", "", WeightsError, "does not exist"),
    ("tiny-vit-quickgelu", "", ConfigError, "set MODEL.BACKBONE.PRETRAINED"),
    ("", "", ConfigError, "MODEL.BACKBONE.NAME is empty"),
])
def test_bad_backbone_names_end_in_one_clear_error(name, pretrained, error, message):
    with pytest.raises(error, match=message):
        load_clip(name, pretrained)


def test_a_file_that_is_not_clip_weights_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="not an OpenAI-format CLIP state dict"):
        load_clip(str(path))


def test_fp16_and_amp_fall_back_to_fp32_on_cpu_with_a_warning(capsys):
    assert resolve_precision("fp16", "cpu") == "fp32"
    assert "WARNING: PREC fp16 needs CUDA" in capsys.readouterr().out
    assert resolve_precision("amp", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(ConfigError, match="PREC must be one of"):
        resolve_precision("bf8", "cpu")


def test_offline_a_download_fails_without_waiting_for_the_network(tmp_path, monkeypatch):
    # Offline without HF_HUB_OFFLINE a DNS lookup can hang (12 s on one machine), and each of
    # two files used to be retried with back-off: 45-80 s in all before the same error. Here
    # the lookup hangs until the test ends: the error must come while it still hangs (one
    # probe, given up after its timeout), and no download may be tried after it.
    import socket
    import threading

    import huggingface_hub.constants

    lookups, answered = [], []
    looked_up, released = threading.Event(), threading.Event()

    def hanging_lookup(host, *args, **kwargs):
        lookups.append(host)
        if len(lookups) == 1:  # the first hangs; any later one fails at once, to be counted
            looked_up.set()
            released.wait(HANG_GUARD)
            answered.append(host)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path))
    try:
        with pytest.raises(WeightsError) as err:
            load_clip("ViT-B/16")
        assert not answered  # it did not wait for the lookup
        looked_up.wait(HANG_GUARD)  # the probe's thread may start late on a loaded machine
        assert len(lookups) == 1  # the probe's; no download was tried, nothing retried
    finally:
        released.set()
    assert str(err.value).startswith("Could not get CLIP weights for ViT-B/16")
    assert "MODEL.BACKBONE.NAME /path/to/ViT-B-16.pt" in str(err.value)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # switched back after the call


def test_log_line_names_the_weights_file_not_the_pretrained_tag(tmp_path, capsys):
    import train
    from clip_backbone import build_backbone
    from dassl_compat import get_cfg_default

    path = tmp_path / "tiny.pt"
    write_openai_state_dict(path, seed=7)
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    cfg.MODEL.BACKBONE.NAME = str(path)
    cfg.MODEL.BACKBONE.PRETRAINED = "random"  # left over from a config; a file ignores it
    cfg.INPUT.SIZE = (32, 32)
    build_backbone(cfg, "cpu", "fp32")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Loading CLIP"))
    assert line == f"Loading CLIP (backbone: weights file {path})"


def test_a_vit_state_dict_without_its_image_projection_names_the_key(tmp_path):
    path = tmp_path / "no-proj.pt"
    state = tiny_clip(seed=8).state_dict()
    del state["visual.proj"]
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"ViT CLIP state dict without 'visual.proj'"):
        load_clip(str(path))
