"""Turn ``MODEL.BACKBONE.NAME`` (+ ``PRETRAINED``) into a frozen open_clip CLIP.

Three kinds of name are accepted:

* a Dassl/OpenAI name (``ViT-B/16``, ``RN50``, ...): open_clip's ``-quickgelu``
  config with the ``openai`` weights. A copy of the OpenAI archive in
  ``~/.cache/clip`` (where the peer repositories keep it) is used first;
* any open_clip model name, with the pretrained tag in
  ``MODEL.BACKBONE.PRETRAINED`` (``random`` builds a randomly initialised model);
* a path to a local OpenAI-format weights file (a TorchScript archive or a plain
  state dict); the architecture is inferred from the tensor shapes.
"""
import contextlib
import logging
import os
import os.path as osp
import socket
import threading
import urllib.parse
import urllib.request
import warnings

import open_clip
from open_clip.model import build_model_from_openai_state_dict
import torch

from errors import ConfigError, WeightsError

_HERE = osp.dirname(osp.abspath(__file__))
MODEL_CONFIG_DIR = osp.join(_HERE, "model_configs")
open_clip.add_model_config(MODEL_CONFIG_DIR)

# Dassl/OpenAI names -> (open_clip config, OpenAI archive file name)
OPENAI_NAMES = {
    "RN50": ("RN50-quickgelu", "RN50.pt"),
    "RN101": ("RN101-quickgelu", "RN101.pt"),
    "RN50x4": ("RN50x4-quickgelu", "RN50x4.pt"),
    "RN50x16": ("RN50x16-quickgelu", "RN50x16.pt"),
    "RN50x64": ("RN50x64-quickgelu", "RN50x64.pt"),
    "ViT-B/32": ("ViT-B-32-quickgelu", "ViT-B-32.pt"),
    "ViT-B/16": ("ViT-B-16-quickgelu", "ViT-B-16.pt"),
    "ViT-L/14": ("ViT-L-14-quickgelu", "ViT-L-14.pt"),
    "ViT-L/14@336px": ("ViT-L-14-336-quickgelu", "ViT-L-14-336px.pt"),
}
RANDOM_INIT = "random"


def openai_cache_dir():
    return osp.expanduser(os.environ.get("CLIP_CACHE_DIR", "~/.cache/clip"))


def _offline_hint(name, archive):
    return (
        f"Offline, put the OpenAI weights file {archive} in {openai_cache_dir()} "
        f"or pass its path: MODEL.BACKBONE.NAME /path/to/{archive}"
    )


def _reason(exc):
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {first.split(': ')[0]}"


def read_openai_state_dict(path):
    """The state dict of an OpenAI-format file: a TorchScript archive or a
    plain (optionally ``{"state_dict": ...}``-wrapped) state dict."""
    if not osp.isfile(path):
        raise WeightsError(f"CLIP weights file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load deprecation
            state_dict = torch.jit.load(path, map_location="cpu").state_dict()
    except (RuntimeError, ValueError):
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - re-raised as one clear error
            raise WeightsError(
                f"Cannot read CLIP weights from {path}: it is neither a "
                f"TorchScript archive nor a state dict ({exc.__class__.__name__}: {exc})"
            ) from None
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    if isinstance(state_dict, dict):
        state_dict = {k[len("module."):] if k.startswith("module.") else k: v
                      for k, v in state_dict.items()}
    if not isinstance(state_dict, dict) or "text_projection" not in state_dict:
        raise WeightsError(
            f"{path} is not an OpenAI-format CLIP state dict (no 'text_projection' key)."
        )
    # TorchScript archives also carry the causal masks, which are not weights.
    return {k: v for k, v in state_dict.items() if not k.endswith("attn_mask")}


# The keys from which open_clip's build_model_from_openai_state_dict reads the architecture.
# It takes any state dict without "visual.proj" for a ResNet, so a ViT file that lost that
# key used to fail with a KeyError about a ResNet layer the file never had.
_TEXT_KEYS = ("text_projection", "positional_embedding", "token_embedding.weight",
              "ln_final.weight")
_VIT_KEYS = ("visual.proj", "visual.conv1.weight", "visual.positional_embedding",
             "visual.class_embedding")
_RESNET_KEYS = ("visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding")


def _check_architecture_keys(state_dict, path):
    """Which image tower the file holds (ViT or ResNet), or one WeightsError naming the keys
    it lacks."""
    vit = any(k.startswith(("visual.transformer.", "visual.class_embedding")) for k in state_dict)
    resnet = any(k.startswith("visual.layer1.") for k in state_dict)
    if vit == resnet:
        raise WeightsError(
            f"{path} has {'both' if vit else 'neither'} a ViT image tower (visual.transformer.*) "
            f"{'and' if vit else 'nor'} a ResNet one (visual.layer1.*): it is not an OpenAI-format "
            f"CLIP state dict. Pass the original weights file."
        )
    required = _TEXT_KEYS + (_VIT_KEYS if vit else _RESNET_KEYS)
    missing = [k for k in required if k not in state_dict]
    if missing:
        tower = "ViT" if vit else "ResNet"
        raise WeightsError(
            f"{path} is a {tower} CLIP state dict without {', '.join(repr(k) for k in missing)}: "
            f"the file is incomplete or was saved from a modified model. Pass the original "
            f"OpenAI-format weights file."
        )


def build_from_openai_file(path):
    state_dict = read_openai_state_dict(path)
    _check_architecture_keys(state_dict, path)
    try:
        model = build_model_from_openai_state_dict(dict(state_dict), quick_gelu=True).float()
        # open_clip loads into fp16 weights; load again in fp32 so an fp32 file
        # (fine-tuned or random test weights) keeps its full precision.
        expected = model.state_dict().keys()
        missing = [k for k in expected if k not in state_dict]
        if missing:
            raise KeyError(f"missing keys {missing[:5]}")
        model.load_state_dict({k: state_dict[k] for k in expected})
    except (KeyError, RuntimeError) as exc:
        raise WeightsError(f"Cannot build a CLIP model from {path}: {exc}") from None
    return model.eval()


#: Seconds to wait for a TCP connection to the weights' host before treating it as offline.
PROBE_TIMEOUT = 4.0


def _unreachable(url, timeout=PROBE_TIMEOUT):
    """``None`` if a TCP connection to ``url``'s host (or to the proxy that would carry the
    request) opens within ``timeout`` seconds, else why not, in words.

    Offline, huggingface_hub retries each file with back-off (5 retries, two files per
    tag) and a DNS lookup can hang for seconds per try: 45-80 s before the error. One
    connection attempt tells the same in a few seconds. getaddrinfo takes no timeout, so
    the attempt runs in a daemon thread that is abandoned when the time is up.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host = proxy_parts.hostname
        port = proxy_parts.port or {"https": 443, "http": 80}.get(proxy_parts.scheme, 1080)
    outcome = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"cannot connect to {host}:{port}: {exc.strerror or exc}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no connection to {host}:{port} within {timeout:g} s"


@contextlib.contextmanager
def _offline_unless_reachable(name, pretrained):
    """Yield ``None``, or the reason the weights' host is unreachable; in that case a
    Hugging Face download is switched to offline mode (a file already in its cache still
    loads, a missing one fails at once)."""
    cfg = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
    hub, url = cfg.get("hf_hub"), cfg.get("url")
    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:  # open_clip then downloads from the URL
        hf_constants, hub = None, None
    if not cfg or "file" in cfg or (hf_constants is not None and hf_constants.HF_HUB_OFFLINE):
        yield None  # a local file, or offline already: open_clip fails (or loads) at once
        return
    if hub:
        url = hf_constants.ENDPOINT
    elif not url or osp.isfile(osp.join(osp.expanduser("~/.cache/clip"), osp.basename(url))):
        yield None  # nothing to download, or already in open_clip's cache of URL downloads
        return
    reason = _unreachable(url)
    if reason is None:
        yield None
        return
    if not hub:
        raise WeightsError(reason)
    offline = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        hf_constants.HF_HUB_OFFLINE = offline


def _create(name, pretrained, failure="Could not build the open_clip model ({reason})."):
    """open_clip.create_model; a failure to get the weights becomes one WeightsError
    that starts with ``failure`` (what could not be had and how to supply it)."""
    # open_clip logs download failures and random init on the root logger; we
    # raise one error (or the user asked for random init), so keep it quiet.
    logging.disable(logging.ERROR)
    try:
        with _offline_unless_reachable(name, pretrained) as offline:
            try:
                model = open_clip.create_model(name, pretrained=pretrained)
            except Exception as exc:  # noqa: BLE001 - said below, with the reason
                if offline:
                    raise WeightsError(offline) from exc
                raise
    except WeightsError as exc:
        raise WeightsError(failure.format(reason=str(exc))) from None
    except RuntimeError as exc:
        message = str(exc).lower()
        if "not found" in message and "model config" in message:
            raise ConfigError(_unknown_name_message(name)) from None
        raise WeightsError(failure.format(reason=_reason(exc))) from None
    except Exception as exc:  # noqa: BLE001 - any other download failure
        raise WeightsError(failure.format(reason=_reason(exc))) from None
    finally:
        logging.disable(logging.NOTSET)
    return model.float().eval()


def _unknown_name_message(name):
    return (
        f"Unknown backbone {name!r}. Use a Dassl/OpenAI name "
        f"({', '.join(OPENAI_NAMES)}), an open_clip model name "
        f"(open_clip.list_models()) with MODEL.BACKBONE.PRETRAINED set to a tag, "
        f"or the path to a local OpenAI-format weights file."
    )


def _is_path(name):
    return osp.isfile(name) or name.startswith(("/", ".", "~")) or name.endswith((".pt", ".pth", ".bin"))


def describe_weights(name, pretrained=""):
    """What ``load_clip(name, pretrained)`` loads, in words (the run's log line)."""
    if name in OPENAI_NAMES:
        config, archive = OPENAI_NAMES[name]
        cached = osp.join(openai_cache_dir(), archive)
        if osp.isfile(cached):
            return f"{name}, OpenAI weights file {cached}"
        return f"{name}, open_clip {config} pretrained {pretrained or 'openai'}"
    if _is_path(name):
        # PRETRAINED is not read for a weights file, whatever the config says.
        return f"weights file {osp.expanduser(name)}"
    if pretrained == RANDOM_INIT:
        return f"{name}, random initialisation"
    if pretrained and osp.isfile(osp.expanduser(pretrained)):
        return f"{name}, weights file {osp.expanduser(pretrained)}"
    return f"{name}, pretrained {pretrained}" if pretrained else name


def load_clip(name, pretrained=""):
    """Return ``(model, model_name)``: a frozen fp32 open_clip CLIP in eval mode
    and the open_clip config name its tokenizer should come from."""
    if not name:
        raise ConfigError("MODEL.BACKBONE.NAME is empty; set it, e.g. ViT-B/16.")

    if name in OPENAI_NAMES:
        config, archive = OPENAI_NAMES[name]
        cached = osp.join(openai_cache_dir(), archive)
        if osp.isfile(cached):
            return build_from_openai_file(cached), config
        tag = pretrained or "openai"
        failure = (f"Could not get CLIP weights for {name} (open_clip {config!r}, tag {tag!r}; "
                   "{reason}). " + _offline_hint(name, archive))
        return _create(config, tag, failure), config

    if _is_path(name):
        name = osp.expanduser(name)
        if not osp.isfile(name):
            raise WeightsError(
                f"MODEL.BACKBONE.NAME looks like a file path, but {name} does not exist."
            )
        return build_from_openai_file(name), None

    if name not in open_clip.list_models():
        raise ConfigError(_unknown_name_message(name))
    if not pretrained:
        raise ConfigError(
            f"MODEL.BACKBONE.NAME {name!r} is an open_clip model name; set "
            f"MODEL.BACKBONE.PRETRAINED to one of its tags "
            f"{open_clip.list_pretrained_tags_by_model(name)} or to '{RANDOM_INIT}' "
            f"for random initialisation."
        )
    if pretrained == RANDOM_INIT:
        return _create(name, None), name
    failure = (f"Could not get weights {pretrained!r} for open_clip model {name!r} ({{reason}}). "
               "Offline, pass a local file as MODEL.BACKBONE.PRETRAINED (a path) or as "
               "MODEL.BACKBONE.NAME (an OpenAI-format file).")
    return _create(name, pretrained, failure), name


def get_tokenizer(model, model_name):
    context_length = getattr(model, "context_length", 77)
    if model_name is None:
        return open_clip.SimpleTokenizer(context_length=context_length)
    try:
        return open_clip.get_tokenizer(model_name, context_length=context_length)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(
            f"Cannot build the tokenizer of {model_name!r} ({exc}). Prompt learners need "
            f"open_clip's built-in BPE tokenizer (OpenAI-style CLIP models)."
        ) from None
