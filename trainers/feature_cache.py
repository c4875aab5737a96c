"""The image features of an evaluation split, computed once per frozen image tower and reused.

For a learner whose image features depend on nothing it learns (``image_features_frozen()``:
zero-shot CLIP, CoOp, CoCoOp, KgCoOp, IVLP and PromptSRC without vision prompts), the image
tower computes the same features for a split at every evaluation: every seed, the base and
the novel test, the final test after training, every such learner and regularizer. The first
evaluation stores them in a file; later ones read it, decode no image, and run only the
cheap half of the forward (``PromptCLIP.logits_from_image_features``). Learners whose image
features are learned (vision prompts: IVLP, MaPLe, PromptSRC; or a trainable image tower)
never reach a cache file: ``feature_key`` refuses them.

A file is named by a hash of everything that determines the features, and holds that key:
a content hash of the image tower's weights (hashed once per process), its structure and
dtype, the evaluation's autocast, the device, the test transform and ``INPUT`` settings it
is built from, the library versions, and the ordered list of image files with their sizes
and modification times. Any difference gives another file, and the features are computed
afresh. Labels are not part of the features; on a hit they come from the dataset, in its
order. A truncated, corrupt or foreign file is set aside (renamed, never deleted) with one
warning and recomputed. Files are written to a temporary name and renamed into place under
a lock, so concurrent runs leave one complete, correct file; a cache that cannot be read or
written (read-only, full disk) costs one warning, never the run.

Exactness: the cached features are the ones the first evaluation computed, so the logits are
bit for bit those of an uncached evaluation with the same batch size; with another batch
size they agree within float rounding (a matmul's rounding can depend on the batch; the tests
pin 1e-6 relative).

Where: ``TEST.FEATURE_CACHE_DIR``, else ``$PROXYFDA_FEATURE_CACHE_DIR``, else
``$XDG_CACHE_HOME/proxyfda_prompt_tuning/image_features`` (``~/.cache/...``): a user cache,
like open_clip's weights, rather than the dataset folder (often shared and read-only, and
the features depend on the model too) or a run's output folder (the point is to share
across runs). ``TEST.FEATURE_CACHE False`` turns it off.
"""
import contextlib
import hashlib
import json
import math
import os
import os.path as osp
import tempfile
import time
import weakref

import torch
from filelock import FileLock, Timeout

#: Bump when the way features are computed changes in a way the key does not see.
FORMAT = 1
ENV_DIR = "PROXYFDA_FEATURE_CACHE_DIR"
LOCK_TIMEOUT_S = 120

_WEIGHT_DIGESTS = weakref.WeakKeyDictionary()  # image tower -> digest, once per process


def add_feature_cache_config(cfg):
    cfg.TEST.FEATURE_CACHE = True  # reuse the image features of frozen image towers
    # "" = $PROXYFDA_FEATURE_CACHE_DIR, else ~/.cache/proxyfda_prompt_tuning/image_features
    cfg.TEST.FEATURE_CACHE_DIR = ""


def cache_dir(cfg):
    folder = cfg.TEST.get("FEATURE_CACHE_DIR", "") or os.environ.get(ENV_DIR, "")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or osp.join(osp.expanduser("~"), ".cache")
        folder = osp.join(base, "proxyfda_prompt_tuning", "image_features")
    return osp.expanduser(folder)


class LearnedImageFeatures(RuntimeError):
    """A cache lookup for a learner whose image features depend on what it learns."""


def frozen_image_tower(trainer):
    """The learner states its image features are frozen, and nothing in its image tower
    trains."""
    image = trainer.model.backbone.image
    return trainer.image_features_frozen() and not any(
        p.requires_grad for p in image.parameters())


# ------------------------------------------------------------------ the key
def _tensor_bytes(t):
    return t.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy()


def weights_digest(visual):
    """blake2b of the image tower's state (names, dtypes, shapes, bytes), once per module."""
    digest = _WEIGHT_DIGESTS.get(visual)
    if digest is None:
        h = hashlib.blake2b(digest_size=20)
        for name, t in visual.state_dict().items():
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            h.update(_tensor_bytes(t))
        digest = _WEIGHT_DIGESTS[visual] = h.hexdigest()
    return digest


def forget_weight_digests():
    """Hash the weights again at the next lookup (``tools/bench_speed.py`` times a lookup
    as a fresh process pays it)."""
    _WEIGHT_DIGESTS.clear()


def _structure(visual):
    """What the state dict does not say: layer hyperparameters (the module tree's repr),
    attention heads, and the tower's plain settings (pooling, ...)."""
    heads = [m.num_heads for m in visual.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    plain = {k: repr(v) for k, v in sorted(vars(visual).items())
             if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, type(None)))}
    return hashlib.blake2b(repr((repr(visual), heads, plain)).encode(), digest_size=20).hexdigest()


def _images_digest(data_source):
    """The ordered image files with their sizes and modification times."""
    h = hashlib.blake2b(digest_size=20)
    for item in data_source:
        st = os.stat(item.impath)
        h.update(os.fsencode(item.impath) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _device(device):
    if device.type != "cuda":
        return device.type
    return (f"cuda {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}, tf32 {torch.backends.cuda.matmul.allow_tf32}/"
            f"{torch.backends.cudnn.allow_tf32}")


def _autocast(trainer):
    """The autocast an evaluation forward runs under (``PromptTrainer.autocast``), if any."""
    make = getattr(trainer, "autocast", None)
    ctx = make() if make is not None else None
    if isinstance(ctx, torch.autocast):
        return f"{ctx.device} {ctx.fast_dtype}"
    return "off"


def _versions():
    import open_clip
    import PIL
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "open_clip": open_clip.__version__, "PIL": PIL.__version__}


def feature_key(trainer, loader):
    """Everything that determines ``loader``'s image features under ``trainer``'s frozen
    tower, as a dict. Refuses a learner whose image features are learned: their features
    must never be read from, nor written to, the cache."""
    if not frozen_image_tower(trainer):
        raise LearnedImageFeatures(
            f"{type(trainer).__name__}'s image features depend on what it learns; they "
            f"cannot be cached.")
    backbone = trainer.model.backbone
    visual = backbone.clip.visual
    inp = trainer.cfg.INPUT
    data_source = loader.dataset.data_source
    return {
        "format": FORMAT,
        "weights": weights_digest(visual),
        "structure": _structure(visual),
        "dtype": str(backbone.image.dtype),
        "autocast": _autocast(trainer),
        "device": _device(next(visual.parameters()).device),
        "transform": repr(loader.dataset.transform),
        "input": {"SIZE": list(inp.SIZE), "INTERPOLATION": inp.INTERPOLATION,
                  "PIXEL_MEAN": list(inp.PIXEL_MEAN), "PIXEL_STD": list(inp.PIXEL_STD),
                  "normalize": "normalize" in inp.TRANSFORMS,
                  "NO_TRANSFORM": inp.NO_TRANSFORM},
        "versions": _versions(),
        "images": _images_digest(data_source),
        "n_images": len(data_source),
    }


# ------------------------------------------------------------------ the file
def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _features_digest(features):
    return hashlib.blake2b(_tensor_bytes(features), digest_size=20).hexdigest()


class FeatureFile:
    """One cache file: the features of one key."""

    def __init__(self, folder, key):
        self.key = json.dumps(key, sort_keys=True)
        self.n_images = key["n_images"]
        name = hashlib.blake2b(self.key.encode(), digest_size=16).hexdigest()
        self.path = osp.join(folder, f"{name}.pt")

    def _lock(self):
        return FileLock(self.path + ".lock", timeout=LOCK_TIMEOUT_S)

    def read(self):
        """The features, or None (missing; a bad file is set aside with one warning)."""
        try:
            before = os.stat(self.path)
        except OSError:
            return None
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises
            return self._set_aside(before, f"unreadable ({type(exc).__name__})")
        problem = self._check(data)
        if problem:
            return self._set_aside(before, problem)
        return data["features"]

    def _check(self, data):
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return "not a feature file of this version"
        if data.get("key") != self.key:
            return "of another key (foreign)"
        features = data.get("features")
        if not isinstance(features, torch.Tensor) or features.dim() != 2 \
                or features.shape[0] != self.n_images:
            return "incomplete"
        if data.get("digest") != _features_digest(features):
            return "corrupt (checksum mismatch)"
        return None

    def _set_aside(self, seen, why):
        aside = f"{self.path}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        try:
            with self._lock():
                now = os.stat(self.path)
                # another process may have replaced it with a good file meanwhile
                if (now.st_ino, now.st_mtime_ns, now.st_size) == \
                        (seen.st_ino, seen.st_mtime_ns, seen.st_size):
                    os.replace(self.path, aside)
                    print(f"WARNING: image-feature cache file {self.path} is {why}; set "
                          f"aside as {aside}; computing the features afresh.")
        except (OSError, Timeout) as exc:
            print(f"WARNING: image-feature cache file {self.path} is {why} and could not be "
                  f"set aside ({exc}); computing the features afresh.")
        return None

    def write(self, features, batch_size):
        """Atomically (a temporary file renamed into place, under the file's lock); True if
        written. A cache that cannot be written costs one warning."""
        features = features.contiguous()
        data = {"format": FORMAT, "key": self.key, "features": features,
                "digest": _features_digest(features), "batch_size": batch_size}
        tmp = None
        try:
            os.makedirs(osp.dirname(self.path), exist_ok=True)
            with self._lock():
                fd, tmp = tempfile.mkstemp(dir=osp.dirname(self.path),
                                           prefix=osp.basename(self.path) + ".", suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    torch.save(data, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would keep a group out
                os.replace(tmp, self.path)
                tmp = None
            return True
        except (OSError, Timeout, RuntimeError) as exc:  # torch.save: a full disk is a RuntimeError
            print(f"WARNING: could not write the image-feature cache file {self.path} "
                  f"({exc}); this evaluation was not cached.")
            return False
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.remove(tmp)


# ------------------------------------------------------------------ one evaluation
class _Direct:
    """No cache: images in, the model's image features."""

    def image_features(self, model, images):
        return model.encode_image_features(images)


_DIRECT = _Direct()


class _Filling:
    """Images in; keeps their image features for the cache."""

    def __init__(self):
        self.parts = []

    def image_features(self, model, images):
        features = model.encode_image_features(images)
        self.parts.append(features.detach().cpu())
        return features


class _Serving:
    """Cached image features in (from ``CachedFeatureLoader``)."""

    def image_features(self, model, image_features):
        return image_features


class CachedFeatureLoader:
    """Stands in for an evaluation loader: the cached image features in its batches (and
    its order), with the dataset's labels; no image is read."""

    def __init__(self, features, loader):
        self.features = features
        self.batch_size = loader.batch_size
        self.dataset = loader.dataset
        items = loader.dataset.data_source
        self.labels = torch.tensor([item.label for item in items])
        self.domains = torch.tensor([item.domain for item in items])
        self.impaths = [item.impath for item in items]

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.labels), self.batch_size):
            part = slice(start, start + self.batch_size)
            yield {"img": self.features[part], "label": self.labels[part],
                   "domain": self.domains[part], "impath": self.impaths[part],
                   "index": torch.arange(start, start + len(self.labels[part]))}


def _not_cacheable(trainer, loader):
    """Why this evaluation cannot use the cache (None if it can)."""
    if not trainer.cfg.TEST.get("FEATURE_CACHE", True) or not frozen_image_tower(trainer):
        return ""  # off, or learned features: nothing to say
    dataset = loader.dataset
    if getattr(dataset, "transform", None) is None or not hasattr(dataset, "data_source"):
        return "the loader does not give transformed images of a listed data source"
    if not isinstance(loader.sampler, torch.utils.data.SequentialSampler) or loader.drop_last:
        return "the evaluation loader is not sequential (DATALOADER.TEST.SAMPLER)"
    return None


def image_features(trainer, inputs):
    """The image features of one evaluation batch, as ``encode_image_features`` returns them:
    ``inputs`` are images, or inside a cached ``evaluation`` their image features (what the
    evaluation's loader yields)."""
    source = getattr(trainer, "_image_features", None) or _DIRECT
    return source.image_features(trainer.model, inputs)


def image_logits(trainer, inputs):
    """The logits of one evaluation batch (``image_features``, then the model's second half)."""
    return trainer.model.logits_from_image_features(image_features(trainer, inputs))


@contextlib.contextmanager
def evaluation(trainer, split):
    """Around a Dassl ``test(split)`` of ``trainer``: the split's image features come from
    the cache (its loader swapped for a ``CachedFeatureLoader``) or are computed and, once
    the evaluation has finished, stored. ``split`` is resolved as Dassl does."""
    split = split or trainer.cfg.TEST.SPLIT
    attr = "val_loader" if split == "val" and trainer.val_loader is not None else "test_loader"
    name = "val" if attr == "val_loader" else "test"
    loader = getattr(trainer, attr)
    why = _not_cacheable(trainer, loader)
    if why is not None:
        if why:
            print(f"Image features of the *{name}* set are not cached: {why}")
        yield
        return
    try:
        file = FeatureFile(cache_dir(trainer.cfg), feature_key(trainer, loader))
    except OSError:  # an image that cannot be stat'ed: the evaluation itself will name it
        yield
        return
    features = file.read()
    if features is not None:
        print(f"Image features of the *{name}* set: from the feature cache ({file.path})")
        trainer._image_features = _Serving()
        setattr(trainer, attr, CachedFeatureLoader(features, loader))
        try:
            yield
        finally:
            setattr(trainer, attr, loader)
            trainer._image_features = None
        return
    filling = trainer._image_features = _Filling()
    try:
        yield
    finally:
        trainer._image_features = None
    features = torch.cat(filling.parts) if filling.parts else None
    if features is not None and features.shape[0] == file.n_images \
            and file.write(features, loader.batch_size):
        print(f"Image features of the *{name}* set: saved to the feature cache ({file.path})")
