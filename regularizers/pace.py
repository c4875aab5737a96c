"""PACE-style consistency for prompts (Ni et al., NeurIPS 2024; official code read).

Official PACE multiplies adapter outputs by noise z ~ N(1, sigma_l^2), one draw per sample and
channel shared over tokens, with sigma_l falling linearly with depth, and adds
lambda * mean_b ||logits1_b - logits2_b||^2 between two noisy passes of the same batch.

Our adaptation to prompt tuning: a learned prompt is the "adapter contribution", so the noise
multiplies the prompt tokens (or, given ``base``, only their learned change ``prompt - base``).
Layer l of D prompted layers gets sigma * (D - l) / D: the first layer gets sigma, the last
sigma / D (the official schedule with ``block_start`` 0). For the text tower a "sample" is one
prompted class sequence. Lazy variant: the second pass runs every LAZY_INTERVAL steps on the first
half of the batch; unlike the official code, the trainer's task loss still uses the full batch.
"""
import torch

from errors import ConfigError

from .base import Regularizer, register_regularizer
from .config import add_pace_config


def sigma_for_layer(layer, depth, sigma):
    """Noise std of prompted layer ``layer`` (0-based) out of ``depth``."""
    if not 0 <= layer < depth:
        raise ValueError(f"PACE: layer {layer} is outside 0..{depth - 1}.")
    return sigma * (depth - layer) / depth


def multiplicative_noise(batch_size, channels, sigma, device=None, dtype=torch.float32):
    """z ~ N(1, sigma^2) of shape [batch_size, 1, channels] (shared over tokens)."""
    with torch.no_grad():
        noise = torch.randn(batch_size, 1, channels, device=device, dtype=torch.float32)
        return (1.0 + sigma * noise).to(dtype)


def consistency(logits, logits_second_pass):
    """mean_b ||logits_b - logits2_b||^2 over the samples of the second pass."""
    n = logits_second_pass.shape[0]
    return (logits[:n].float() - logits_second_pass.float()).pow(2).sum(-1).mean()


@register_regularizer("PACE", add_config=add_pace_config)
class PACE(Regularizer):
    """Needs ``logits`` (first noisy pass) and ``logits_second_pass`` (second noisy pass over the
    first ``second_pass_size(step, B)`` samples; may be None on steps where that size is 0).
    Encoders route every learned prompt through ``perturb``."""

    name = "pace"
    needs = frozenset({"logits", "logits_second_pass"})
    perturbs_prompts = True

    def __init__(self, node, context):
        super().__init__()
        prompt_depth = context.prompt_depth
        self.sigma, self.weight = float(node.SIGMA), float(node.WEIGHT)
        self.lazy, self.lazy_interval = bool(node.LAZY), int(node.LAZY_INTERVAL)
        self.depth = int(prompt_depth)
        if self.sigma < 0 or self.depth < 1 or self.lazy_interval < 1:
            raise ConfigError(
                "PACE.SIGMA must be >= 0, LAZY_INTERVAL >= 1 and the prompt depth >= 1; got "
                f"{self.sigma}, {self.lazy_interval}, {self.depth}."
            )

    def second_pass_size(self, step, batch_size):
        if not self.lazy:
            return batch_size
        return max(1, batch_size // 2) if step % self.lazy_interval == 0 else 0

    def perturb(self, prompt, layer, batch_size, base=None, depth=None):
        """``prompt`` [n, D] or [batch_size, n, D] with fresh noise per call, as
        [batch_size, n, D]; unchanged in eval mode or where sigma is 0.

        ``layer``: 0-based index among the prompted layers (0 = shallow/first prompt).
        ``base``: the part of the prompt that is not learned (e.g. its initialization); only
        ``prompt - base`` is perturbed. ``depth`` overrides the prompt depth given at build time.
        """
        sigma = sigma_for_layer(layer, depth or self.depth, self.sigma)
        if not self.training or sigma == 0:
            return prompt
        if prompt.dim() == 3 and prompt.shape[0] != batch_size:
            raise ValueError(f"PACE: prompt batch {prompt.shape[0]} != batch_size {batch_size}.")
        noise = multiplicative_noise(batch_size, prompt.shape[-1], sigma, prompt.device,
                                     prompt.dtype)
        if base is None:
            return prompt * noise
        return base + (prompt - base) * noise

    def forward(self, feats):
        logits = self._get(feats, "logits")
        if feats.logits_second_pass is None:
            zero = logits.sum() * 0.0
            return zero, {"pace": 0.0}
        term = consistency(logits, feats.logits_second_pass)
        return self.weight * term, {"pace": term.item()}
