"""DePT (Zhang et al., CVPR 2024, "DePT: Decoupled Prompt Tuning"; code: Koorye/DePT) as a
plug-in: ``DEPT.ENABLE True`` adds it to CoOp, CoCoOp, KgCoOp or MaPLe (the reference's four;
any learner whose loss has a cross-entropy term ``ce`` takes it), with no trainer code.

What the reference's four trainers (``trainers/elp_{coop,cocoop,kgcoop,maple}.py``) share:

* two channel-wise transformations (cwT, the reference's ``FiLM``): a learned scale and bias
  per channel, one for the image features, one for the class text features, both the raw
  (unnormalized) outputs of the method's towers;
* a linear head (embedding width -> training classes, in the backbone's dtype) on them,
  trained by cross-entropy on 2B samples: the batch's image features and the class text
  features of each image's label (CoCoOp: of each image's own class text);
* the loss ``(1 - WEIGHT) * CE(CLIP logits) + WEIGHT * CE(head)``, the method's other terms
  unchanged (KgCoOp's ``W * (1 - cos)``);
* the cwT and the head train with the prompts' SGD and LR schedule, at ``OPTIM.LR * LR_EXP``
  (the reference's staged LR, 0.0035 x 6.5), the prompts at ``OPTIM.LR``;
* at evaluation, on the classes the head learned: ``(1 - WEIGHT) * CLIP logits + WEIGHT *
  head(cwT(image features))``; on any other classes (the novel ones, other datasets): the
  CLIP logits alone.

The reference decides "the classes the head learned" from the config (``SUBSAMPLE_CLASSES
base``, or ``all`` on a dataset whose name contains ImageNet, keeping the rows of
ImageNet-A/R's 200 classes by folder). Here the head keeps a key per class name in its
checkpoint, and an evaluation whose classes are all among them uses their rows: the same
choice in every protocol the reference runs (base / novel, the ImageNet source / the
cross-dataset targets, the four ImageNet variants), without dataset names, and it also
applies to a few-shot run (all classes, trained and tested), which the reference cannot train.
The reference's ``LINEAR_PROBE.TYPE similarity`` (a cosine head, an ablation) is not built.
"""
import hashlib
from collections import defaultdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl_compat import build_lr_scheduler, build_optimizer
from errors import ConfigError

from .base import Regularizer, register_regularizer
from .config import ensure


def add_dept_config(cfg):
    """Add the DEPT node (defaults: the reference's train.py ``extend_cfg``)."""
    node = ensure(cfg, "DEPT", type(cfg)())
    ensure(node, "ENABLE", False)
    # Weight of the head, in the loss and in the fused logits (TRAINER.LINEAR_PROBE.WEIGHT)
    ensure(node, "WEIGHT", 0.7)
    # LR of the head and cwT = OPTIM.LR * LR_EXP (OPTIM.LR_EXP with OPTIM.STAGED_LR True)
    ensure(node, "LR_EXP", 6.5)
    # The channel-wise transformations before the head (TRAINER.FILM.LINEAR_PROBE)
    ensure(node, "CWT", True)
    # Trained classes: fused logits; False: the head's alone (LINEAR_PROBE.TEST_TIME_FUSION)
    ensure(node, "TEST_TIME_FUSION", True)


class ChannelTransform(nn.Module):
    """cwT: ``scale * x + bias`` per channel (fp32 parameters, applied in the dtype of x)."""

    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return self.scale.unsqueeze(0).type(x.dtype) * x + self.bias.unsqueeze(0).type(x.dtype)


def class_key(name):
    """A stable 63-bit key of a class name (not Python's per-process salted hash)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 1


def match_rows(trained, evaluated):
    """The head's row of each evaluated class (a repeated name takes its occurrences in
    order); ``slice(None)`` when the classes are the trained ones, None when one is not."""
    if trained == evaluated:
        return slice(None)
    where = defaultdict(list)
    for row, key in enumerate(trained):
        where[key].append(row)
    rows, seen = [], defaultdict(int)
    for key in evaluated:
        if seen[key] >= len(where[key]):
            return None
        rows.append(where[key][seen[key]])
        seen[key] += 1
    return rows


@register_regularizer("DEPT", add_config=add_dept_config)
class DePT(Regularizer):
    name = "dept"
    needs = frozenset({"text", "text_per_image", "image"})
    used_at_inference = True

    def __init__(self, node, context):
        super().__init__()
        if context.frozen is None or context.embed_dim is None or context.optim is None:
            raise ConfigError("DEPT needs the class names, embedding width and OPTIM of a run.")
        self.weight, self.lr_exp = float(node.WEIGHT), float(node.LR_EXP)
        if not 0.0 <= self.weight <= 1.0 or self.lr_exp <= 0:
            raise ConfigError(f"DEPT.WEIGHT must be in [0, 1] and DEPT.LR_EXP > 0, got "
                              f"{node.WEIGHT} and {node.LR_EXP}.")
        self.fusion, self.optim_cfg = bool(node.TEST_TIME_FUSION), context.optim
        dim, names = int(context.embed_dim), context.frozen.classnames
        self.cwt_image = ChannelTransform(dim) if node.CWT else nn.Identity()
        self.cwt_text = ChannelTransform(dim) if node.CWT else nn.Identity()
        self.head = nn.Linear(dim, len(names)).to(context.frozen.backbone.dtype)
        keys = torch.tensor([class_key(n) for n in names], dtype=torch.int64)
        self.register_buffer("class_keys", keys)  # the classes the head learned (saved)
        self.register_buffer("eval_keys", keys.clone(), persistent=False)  # this run's classes
        self._rows = None

    def method_term_weights(self):
        return {"ce": 1 - self.weight}

    def optimizer(self):
        optim_cfg = self.optim_cfg.clone()
        optim_cfg.defrost()
        optim_cfg.LR = optim_cfg.LR * self.lr_exp
        return build_optimizer(self, optim_cfg)

    def scheduler(self, optimizer):
        return build_lr_scheduler(optimizer, self.optim_cfg)

    def forward(self, feats):
        labels, per_image = feats.labels, feats.text_per_image
        if per_image is not None:  # CoCoOp: each image's own class text
            text = torch.stack([self.cwt_text(t)[y] for t, y in zip(per_image, labels)])
        else:
            text = self.cwt_text(self._get(feats, "text"))[labels]
        image = self.cwt_image(self._get(feats, "image"))
        logits = self.head(torch.cat([text, image]).to(self.head.weight.dtype))
        loss = F.cross_entropy(logits, torch.cat([labels, labels]))
        return self.weight * loss, {"ce_head": loss.item()}

    def rows(self):
        """The rows for this run's classes (``slice(None)``: all), or None; said once."""
        if self._rows is None:
            rows = match_rows(self.class_keys.tolist(), self.eval_keys.tolist())
            self._rows = (rows,)
            how = ("CLIP logits alone" if rows is None else
                   "CLIP logits fused with the head's" if self.fusion else "the head's logits")
            print(f"DePT: the evaluated classes are {'not all ' if rows is None else ''}among "
                  f"the {len(self.class_keys)} its head learned: {how}")
        return self._rows[0]

    def inference_logits(self, logits, image_features):
        rows = self.rows()
        if rows is None:
            return logits
        image = self.cwt_image(image_features).to(self.head.weight.dtype)
        if rows == slice(None):
            head = self.head(image)
        else:  # a subset of the classes: the reference keeps those rows of the weights
            head = F.linear(image, self.head.weight[rows], self.head.bias[rows])
        if not self.fusion:
            return head
        return (1 - self.weight) * logits + self.weight * head

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """A checkpoint of another class set (evaluating other classes) gives the head its
        shape and its classes."""
        keys = state_dict.get("class_keys")
        if keys is not None and len(keys) != len(self.class_keys):
            w = self.head.weight
            self.head.weight = nn.Parameter(w.new_empty(len(keys), w.shape[1]))
            self.head.bias = nn.Parameter(w.new_empty(len(keys)))
            self.head.out_features = len(keys)
            self.class_keys = keys.new_empty(keys.shape, device=self.class_keys.device)
        self._rows = None
        return super().load_state_dict(state_dict, strict, assign)
