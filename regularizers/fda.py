"""FDA: transfer the pre-trained kNN graph of a feature set onto its fine-tuned features.

For a set of N features, fine-tuned Z and pre-trained (frozen) Z^, both L2-normalized:

* w^ = Z^ Z^T; R_i = the K nearest neighbours of anchor i under w^, i excluded,
  K clipped to N - 2 so that a (K+1)-th neighbour exists;
* w_ij = max(w^_ij, eps) for j in R_i, a negative weight otherwise (``NEG_WEIGHT``);
* L_i = mean_{j != i} softplus(w_ij * (-cos(z_i, z_j) / tau + b_i)), and the loss is mean_i L_i.

A positive weight pulls z_j above the boundary tau * b_i, a negative one pushes it below, so the
loss keeps neighbourhoods (relations), not positions. The threshold b_i and the negative weights
are our reconstruction (docs/DESIGN.md, "Proxy-FDA as we implement it").

Everything is computed in float32, whatever the trainer's precision.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from errors import ConfigError

NEG_WEIGHTS = ("sim", "one", "dissim")
THRESHOLDS = ("adaptive", "fixed")


def effective_k(k, n):
    """K clipped to ``n - 2``; 0 when the set is too small (n < 3) for a graph."""
    return max(0, min(int(k), n - 2))


@dataclass
class KnnGraph:
    """The pre-trained kNN graph of a set of N features.

    ``order[i]`` lists the N - 1 other members by decreasing pre-trained similarity, so its first
    ``k`` entries are R_i; ``sim_sorted[i]`` holds those similarities; ``sim`` is w^ itself and
    ``pos_mask[i, j]`` is True iff j is in R_i.
    """

    k: int
    sim: torch.Tensor  # [N, N]
    order: torch.Tensor  # [N, N-1], long
    sim_sorted: torch.Tensor  # [N, N-1]
    pos_mask: torch.Tensor  # [N, N], bool


def knn_graph(z_hat, k):
    """kNN graph of the (already L2-normalized) pre-trained features ``z_hat`` [N, d].

    ``k`` is used as given; clip it with ``effective_k`` first. Ties are broken by index.
    """
    n = z_hat.shape[0]
    sim = z_hat @ z_hat.t()
    eye = torch.eye(n, dtype=torch.bool, device=z_hat.device)
    ranked = sim.masked_fill(eye, float("-inf"))
    sim_sorted, order = torch.sort(ranked, dim=1, descending=True, stable=True)
    order, sim_sorted = order[:, : n - 1], sim_sorted[:, : n - 1]  # drop self (sorted last)
    pos_mask = torch.zeros(n, n, dtype=torch.bool, device=z_hat.device)
    pos_mask.scatter_(1, order[:, :k], True)
    return KnnGraph(k=k, sim=sim, order=order, sim_sorted=sim_sorted, pos_mask=pos_mask)


def positive_weight(sim, eps):
    return sim.clamp_min(eps)


def negative_weight(sim, neg_weight, eps):
    if neg_weight == "sim":
        return -sim.clamp_min(eps)
    if neg_weight == "one":
        return -torch.ones_like(sim)
    if neg_weight == "dissim":
        return -(1.0 - sim)
    raise ConfigError(f"PROXYFDA.NEG_WEIGHT must be one of {NEG_WEIGHTS}, got {neg_weight!r}.")


def pair_weights(graph, neg_weight="sim", eps=0.01):
    """w_ij [N, N]: positive for neighbours, negative otherwise (the diagonal is unused)."""
    return torch.where(
        graph.pos_mask,
        positive_weight(graph.sim, eps),
        negative_weight(graph.sim, neg_weight, eps),
    )


def thresholds(graph, tau, threshold="adaptive", value=0.5):
    """b_i [N]: the boundary, in units of 1/tau, between neighbours and non-neighbours."""
    if threshold == "adaptive":
        k = graph.k
        return (graph.sim_sorted[:, k - 1] + graph.sim_sorted[:, k]) / (2.0 * tau)
    if threshold == "fixed":
        return graph.sim.new_full((graph.sim.shape[0],), float(value) / tau)
    raise ConfigError(f"PROXYFDA.THRESHOLD must be one of {THRESHOLDS}, got {threshold!r}.")


def sigmoid_alignment(cos, weights, b, tau, mask):
    """Per-anchor loss [..., N] = mean over ``mask`` of softplus(w * (-cos / tau + b)).

    ``cos`` [..., N, M] are fine-tuned similarities of each anchor to M set members,
    ``weights`` [N, M] their signed pre-trained weights, ``b`` [N], ``mask`` [N, M] bool.
    """
    terms = F.softplus(weights * (-cos / tau + b.unsqueeze(-1)))
    mask = mask.to(terms.dtype)
    return (terms * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def normalize(z):
    return F.normalize(z.float(), dim=-1)


def full_precision(device):
    """A context that turns autocast off, so that the losses run in float32 under AMP too."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def fda_loss(z, z_hat, k, tau, threshold="adaptive", threshold_value=0.5, neg_weight="sim",
             eps=0.01):
    """Plain FDA loss (a scalar) of fine-tuned ``z`` against pre-trained ``z_hat``.

    ``z`` is [N, d], or [B, N, d] for per-sample sets sharing one pre-trained set (CoCoOp's
    instance-conditioned class features); ``z_hat`` [N, d] gets no gradient. A set with fewer
    than 3 members has no graph: the loss is then 0 (still connected to ``z``).
    """
    n = z_hat.shape[0]
    k = effective_k(k, n)
    z = normalize(z)
    if k < 1:
        return z.sum() * 0.0
    z_hat = normalize(z_hat.detach())
    graph = knn_graph(z_hat, k)
    w = pair_weights(graph, neg_weight, eps)
    b = thresholds(graph, tau, threshold, threshold_value)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=z.device)
    cos = z @ z.transpose(-1, -2)
    return sigmoid_alignment(cos, w, b, tau, off_diagonal).mean()
