"""Proxy-FDA (and plain FDA) as a regularizer on the text set and/or the image set."""
from errors import ConfigError

from .base import Regularizer
from .fda import NEG_WEIGHTS, THRESHOLDS, fda_loss, full_precision
from .proxy import ProxyGenerator, proxy_fda_terms

TEMPLATE_CHOICES = ("dataset", "ensemble")


class ProxyFDA(Regularizer):
    """loss = TEXT_WEIGHT * L_text + IMAGE_WEIGHT * L_image + L_proxy.

    L_text / L_image are (Proxy-)FDA losses of prompted against frozen features; they train the
    prompts only. L_proxy (with PROXY.ENABLE) trains the generator only, so one backward pass
    serves both; the generator's parameters need their own optimizer (PROXY.LR).

    Needs ``text`` and ``text_frozen`` when the trainer prompts the text tower and TEXT_WEIGHT > 0,
    ``image`` and ``image_frozen`` when it prompts the image tower and IMAGE_WEIGHT > 0.
    """

    name = "proxyfda"

    def __init__(self, node, embed_dim=None, towers=("text",)):
        super().__init__()
        weights = {"text": float(node.TEXT_WEIGHT), "image": float(node.IMAGE_WEIGHT)}
        self.weights = {s: w for s, w in weights.items() if s in towers and w > 0}
        if not self.weights:
            raise ConfigError(
                f"PROXYFDA is on but acts on no feature set: this trainer prompts {tuple(towers)}"
                f" and the weights are TEXT_WEIGHT={node.TEXT_WEIGHT}, "
                f"IMAGE_WEIGHT={node.IMAGE_WEIGHT}."
            )
        _check_choice("PROXYFDA.NEG_WEIGHT", node.NEG_WEIGHT, NEG_WEIGHTS)
        _check_choice("PROXYFDA.THRESHOLD", node.THRESHOLD, THRESHOLDS)
        _check_choice("PROXYFDA.TEMPLATES", node.TEMPLATES, TEMPLATE_CHOICES)
        if int(node.K) < 1 or float(node.TAU) <= 0:
            raise ConfigError(f"PROXYFDA.K must be >= 1 and TAU > 0, got {node.K}, {node.TAU}.")
        self.needs = frozenset(f for s in self.weights for f in (s, s + "_frozen"))
        self.options = dict(
            k=int(node.K), tau=float(node.TAU), threshold=node.THRESHOLD,
            threshold_value=float(node.THRESHOLD_VALUE), neg_weight=node.NEG_WEIGHT,
            eps=float(node.EPS),
        )
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

    def forward(self, feats):
        total, summary, proxy_total = 0.0, {}, 0.0
        for set_name, weight in self.weights.items():
            z = self._get(feats, set_name)
            z_hat = self._get(feats, set_name + "_frozen")
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


def _check_choice(key, value, choices):
    if value not in choices:
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}.")
