"""Proxy-FDA (and plain FDA) as a regularizer on the text set and/or the image set."""
import torch

from clip_backbone.templates import IMAGENET_TEMPLATES
from errors import ConfigError

from .base import Regularizer, register_regularizer
from .config import add_proxyfda_config
from .fda import NEG_WEIGHTS, THRESHOLDS, fda_loss, full_precision
from .proxy import ProxyGenerator, proxy_fda_terms
from .sampler import SimilarClassBatchSampler, class_similarity

TEMPLATE_CHOICES = ("dataset", "ensemble")


@register_regularizer("PROXYFDA", add_config=add_proxyfda_config)
class ProxyFDA(Regularizer):
    """loss = TEXT_WEIGHT * L_text + IMAGE_WEIGHT * L_image + JOINT_WEIGHT * L_joint + L_proxy.

    L_text / L_image are (Proxy-)FDA losses of prompted against frozen features; they train the
    prompts only. L_proxy (with PROXY.ENABLE) trains the generator only, so one backward pass
    serves both; the generator's parameters have their own optimizer (PROXY.LR).

    Needs ``text`` when the trainer prompts the text tower and TEXT_WEIGHT > 0 (the frozen class
    text features, under TEMPLATES, are its own; given no frozen CLIP, as in unit tests, it
    reads ``text_frozen``), ``image`` and ``image_frozen`` when it prompts the image tower and
    IMAGE_WEIGHT > 0. With SAMPLER.ENABLE it owns the batch sampler.
    """

    name = "proxyfda"

    def __init__(self, node, context):
        super().__init__()
        towers, embed_dim = context.towers, context.embed_dim
        weights = {"text": float(node.TEXT_WEIGHT), "image": float(node.IMAGE_WEIGHT),
                   "joint": float(node.JOINT_WEIGHT)}
        # the joint set (class text with the batch's images) needs prompted text; its image
        # half may be frozen (CoOp): it then ties the text features to fixed image features
        self.weights = {s: w for s, w in weights.items()
                        if (s in towers or (s == "joint" and "text" in towers)) and w > 0}
        if not self.weights:
            raise ConfigError(
                f"PROXYFDA is on but acts on no feature set: this trainer prompts {tuple(towers)}"
                f" and the weights are TEXT_WEIGHT={node.TEXT_WEIGHT}, "
                f"JOINT_WEIGHT={node.JOINT_WEIGHT}, "
                f"IMAGE_WEIGHT={node.IMAGE_WEIGHT}."
            )
        _check_choice("PROXYFDA.NEG_WEIGHT", node.NEG_WEIGHT, NEG_WEIGHTS)
        _check_choice("PROXYFDA.THRESHOLD", node.THRESHOLD, THRESHOLDS)
        _check_choice("PROXYFDA.TEMPLATES", node.TEMPLATES, TEMPLATE_CHOICES)
        if int(node.K) < 1 or float(node.TAU) <= 0:
            raise ConfigError(f"PROXYFDA.K must be >= 1 and TAU > 0, got {node.K}, {node.TAU}.")
        sets = {t for s in self.weights for t in (("text", "image") if s == "joint" else (s,))}
        self.needs = frozenset(f for s in sets for f in (s, s + "_frozen")
                               if not (f == "text_frozen" and context.frozen is not None))
        batch = int(node.SAMPLER.NUM_CLASSES) * int(node.SAMPLER.NUM_IMAGES) \
            if node.SAMPLER.ENABLE else context.batch_size
        if "image" in self.weights and batch is not None and batch < 3:
            # a set of N has a kNN graph only for N >= 3: the loss would be 0 at every step
            raise ConfigError(
                f"PROXYFDA.IMAGE_WEIGHT acts on the images of a batch, and a batch of {batch} "
                f"has no kNN graph (it needs 3 or more): set DATALOADER.TRAIN_X.BATCH_SIZE to "
                f"3 or more, turn on PROXYFDA.SAMPLER, or set PROXYFDA.IMAGE_WEIGHT 0.")
        self.options = dict(
            k=int(node.K), tau=float(node.TAU), threshold=node.THRESHOLD,
            threshold_value=float(node.THRESHOLD_VALUE), neg_weight=node.NEG_WEIGHT,
            eps=float(node.EPS),
        )
        self.proxy_lr = float(node.PROXY.LR)
        self.sampler_node = node.SAMPLER
        self.frozen = context.frozen
        text_frozen = None
        if context.frozen is not None and "text" in sets:
            templates = IMAGENET_TEMPLATES if node.TEMPLATES == "ensemble" else None
            text_frozen = context.frozen.text_features(templates)
        self.register_buffer("text_frozen", text_frozen, persistent=False)
        self.generator = None
        if node.PROXY.ENABLE:
            if embed_dim is None:
                raise ConfigError("PROXYFDA.PROXY needs the embedding width (embed_dim).")
            p = node.PROXY
            if int(p.NUM_POS) < 1 or int(p.NUM_NEG) < 1:
                raise ConfigError("PROXYFDA.PROXY.NUM_POS and NUM_NEG must be >= 1.")
            self.generator = ProxyGenerator(
                int(embed_dim), int(p.NUM_POS), int(p.NUM_NEG), int(p.RANK), int(p.CHANNELS)
            )
            self.alpha, self.gamma = float(p.ALPHA), float(p.GAMMA)

    @property
    def uses_proxies(self):
        return self.generator is not None

    def generator_parameters(self):
        return list(self.generator.parameters()) if self.generator is not None else []

    def optimizer(self):
        params = self.generator_parameters()
        return torch.optim.Adam(params, lr=self.proxy_lr) if params else None

    def batch_sampler(self, labels):
        """SAMPLER.ENABLE: batches of similar classes (hard class mining), similarity from
        frozen CLIP text features under the dataset template."""
        node = self.sampler_node
        if not node.ENABLE:
            return None
        if self.frozen is None:
            raise ConfigError("PROXYFDA.SAMPLER needs the frozen CLIP (a real run).")
        similarity = class_similarity(self.frozen.text_features().cpu())
        sampler = SimilarClassBatchSampler(labels, similarity, node.NUM_CLASSES, node.NUM_IMAGES)
        print(f"Similar-class batches: {sampler.num_classes} classes x {node.NUM_IMAGES} images, "
              f"{len(sampler)} batches per epoch")
        return sampler

    def forward(self, feats):
        total, summary, proxy_total = 0.0, {}, 0.0
        for set_name, weight in self.weights.items():
            z, z_hat = self._set(feats, set_name)
            with full_precision(z.device):
                if self.generator is None:
                    term = fda_loss(z, z_hat, **self.options)
                else:
                    term, proxy_loss = proxy_fda_terms(
                        z, z_hat, self.generator, alpha=self.alpha, gamma=self.gamma,
                        **self.options,
                    )
                    proxy_total = proxy_total + proxy_loss
            total = total + weight * term
            summary[f"fda_{set_name}"] = term.item()
        if self.generator is not None:
            total = total + proxy_total
            summary["proxy"] = proxy_total.item()
        return total, summary


    def _set(self, feats, set_name):
        """(tuned, frozen) features of one set; "joint" is the class text set followed by the
        batch's images, one graph over both (text-image edges included)."""
        if set_name == "joint":
            parts = [self._set(feats, "text"), self._set(feats, "image")]
            return (torch.cat([p[0].float() for p in parts]),
                    torch.cat([p[1].float() for p in parts]))
        z = self._get(feats, set_name)
        if set_name == "text" and self.text_frozen is not None:
            return z, self.text_frozen
        return z, self._get(feats, set_name + "_frozen")


def _check_choice(key, value, choices):
    if value not in choices:
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}.")
