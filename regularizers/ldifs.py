"""LDIFS: distance between prompted and frozen intermediate features (Mukhoti et al.).

Official loss (github.com/omegafragger/ldifs_code, ``loss/ldifs.py``), per tower:

    d = mean over layers l of mean_{b,t,c} (phi~_l(x; frozen) - phi~_l(x; tuned))^2,
    phi~ = phi / (||phi||_2 along NORM_DIM + 1e-10).

With open_clip the official code normalizes [B, T, C] features along dim 1, i.e. over tokens for
each channel; that is our default (NORM_DIM 1). NORM_DIM -1 normalizes each token over channels,
the LPIPS-faithful reading. Applying it to prompt tuning, and to the text tower, is ours: the loss
is WEIGHT times the sum over the towers the trainer prompts. Vision prompt tokens, which the
frozen tower does not have, are appended after the image tokens; they are dropped before the
comparison.
"""
import torch

from .base import Regularizer, register_regularizer
from .config import add_ldifs_config
from .fda import full_precision

_NORM_EPS = 1e-10


def ldifs_distance(prompted, frozen, norm_dim=1):
    """Mean squared difference of one layer's normalized features, [N, T, D] each.

    Extra trailing tokens of ``prompted`` (appended prompts) are dropped first.
    """
    frozen = frozen.detach().float()
    prompted = prompted.float()[:, : frozen.shape[1]]
    if prompted.shape != frozen.shape:
        raise ValueError(
            f"LDIFS: prompted hidden states {tuple(prompted.shape)} do not match frozen ones "
            f"{tuple(frozen.shape)}."
        )
    frozen = frozen / (frozen.norm(dim=norm_dim, keepdim=True) + _NORM_EPS)
    prompted = prompted / (prompted.norm(dim=norm_dim, keepdim=True) + _NORM_EPS)
    return (frozen - prompted).pow(2).mean()


@register_regularizer("LDIFS", add_config=add_ldifs_config)
class LDIFS(Regularizer):
    """Needs ``hidden``: for each prompted tower, prompted and frozen hidden states at
    ``hidden_layers(depth)``. It owns the frozen text tower's hidden states over the class
    prompts (the dataset's hand template), computed once."""

    name = "ldifs"
    needs = frozenset({"hidden"})

    def __init__(self, node, context):
        super().__init__()
        self.towers = context.towers
        self.weight = float(node.WEIGHT)
        self.layers = [int(layer) for layer in node.LAYERS]
        self.norm_dim = int(node.NORM_DIM)
        self.text_frozen = None
        if context.frozen is not None and "text" in self.towers:
            depth = context.frozen.backbone.text.num_layers
            self.text_frozen = context.frozen.text_hidden(self.hidden_layers(depth))

    def hidden_layers(self, depth):
        """Configured indices, those beyond ``depth`` counted as the last block."""
        return sorted({min(layer, depth) for layer in self.layers})

    def forward(self, feats):
        hidden = self._get(feats, "hidden")
        total, summary = 0.0, {}
        for tower in self.towers:
            if tower not in hidden:
                raise ValueError(f"LDIFS needs hidden states of the {tower} tower.")
            prompted, frozen = hidden[tower]
            if frozen is None and tower == "text":
                frozen = self.text_frozen
            if frozen is None or len(prompted) != len(frozen) or not prompted:
                raise ValueError(
                    f"LDIFS: {len(prompted)} prompted vs "
                    f"{'no' if frozen is None else len(frozen)} frozen hidden states for the "
                    f"{tower} tower."
                )
            with full_precision(prompted[0].device):
                distance = torch.stack(
                    [ldifs_distance(p, f, self.norm_dim) for p, f in zip(prompted, frozen)]
                ).mean()
            total = total + distance
            summary[f"ldifs_{tower}"] = distance.item()
        return self.weight * total, summary
