"""Proxies for FDA: synthetic set members that densify each anchor's neighbourhood boundary.

All of this is our reconstruction (the paper's code is not public; docs/DESIGN.md, section 7):

* The generator G sees each anchor's other set members in pre-trained rank order (the first K
  are its neighbours R_i, the rest its negatives). Per member it builds features from a low-rank
  bilinear attention score against the anchor (one channel per rank), the pre-trained similarity
  and a positive/negative flag; two 1-D convolutions over the rank axis turn them into
  NUM_POS + NUM_NEG logits per member, and a softmax restricted to the positive (negative) set
  gives each proxy's pooling vector. G is about 20K parameters at d = 512 and sees only frozen
  features, so nothing but its own loss trains it.
* Proxies are convex combinations: P = A Z (fine-tuned side; A is a constant there, gradients go
  to Z) and P^ = A Z^ (pre-trained side; gradients go to G). A proxy's target weight is
  cos(z^_i, P^), with the sign of its set.
* L_proxy = FDA loss of the proxies against their anchor in the pre-trained space (positive
  proxies above the anchor's boundary, negative ones below) + ALPHA * a VICReg-style hinge on the
  per-dimension spread of each anchor's proxies.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fda import (
    effective_k, knn_graph, negative_weight, normalize, pair_weights, positive_weight,
    sigmoid_alignment, thresholds,
)


def masked_softmax(logits, mask):
    """Softmax over the last axis restricted to ``mask``; all-zero where the mask is empty."""
    logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return torch.softmax(logits, dim=-1) * mask.to(logits.dtype)


class ProxyGenerator(nn.Module):
    """Pooling weights of NUM_POS positive and NUM_NEG negative proxies for every anchor."""

    def __init__(self, dim, num_pos=4, num_neg=4, rank=16, channels=32):
        super().__init__()
        self.num_pos, self.num_neg, self.rank = num_pos, num_neg, rank
        self.query = nn.Linear(dim, rank)
        self.key = nn.Linear(dim, rank)
        self.conv1 = nn.Conv1d(rank + 2, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(channels, num_pos + num_neg, kernel_size=3, padding=1)

    @property
    def num_proxies(self):
        return self.num_pos + self.num_neg

    def forward(self, anchors, pool, member_index, member_sim, pos_mask, neg_mask):
        """Pooling weights [N, NUM_POS + NUM_NEG, M] over each anchor's M members.

        ``anchors`` [N, d] and ``pool`` [S, d] are pre-trained features; anchor i's members are
        ``pool[member_index[i]]`` ([N, M] indices, in rank order; projecting the pool before
        gathering keeps memory at O(N M r), not O(N M d)). ``member_sim`` [N, M] are their
        similarities to the anchor, ``pos_mask`` /
        ``neg_mask`` [N, M] bool the positive / negative set of each anchor (sizes may differ
        per anchor; members in neither set, e.g. padding, get weight 0). Rows of the first
        NUM_POS proxies are supported on the positive set, the others on the negative set,
        and each row sums to 1 (0 if its set is empty).
        """
        q = self.query(anchors).unsqueeze(1)  # [N, 1, r]
        k = self.key(pool)[member_index]  # [N, M, r]
        x = torch.cat(
            [q * k / math.sqrt(self.rank), member_sim.unsqueeze(-1),
             (pos_mask.to(q.dtype) - neg_mask.to(q.dtype)).unsqueeze(-1)],
            dim=-1,
        ).transpose(1, 2)  # [N, r + 2, M]
        logits = self.conv2(F.gelu(self.conv1(x)))  # [N, P, M]
        return torch.cat(
            [masked_softmax(logits[:, : self.num_pos], pos_mask.unsqueeze(1)),
             masked_softmax(logits[:, self.num_pos:], neg_mask.unsqueeze(1))],
            dim=1,
        )


def proxy_pooling(generator, z_hat, graph):
    """Pooling matrix A [N, P, N] over set indices (self and other-set columns are 0).

    ``z_hat`` [N, d] are the normalized pre-trained features and ``graph`` their kNN graph.
    """
    n, m = z_hat.shape[0], graph.order.shape[1]
    ranks = torch.arange(m, device=z_hat.device).expand(n, m)
    pos_mask = ranks < graph.k
    a_sorted = generator(z_hat, z_hat, graph.order, graph.sim_sorted, pos_mask, ~pos_mask)
    index = graph.order.unsqueeze(1).expand(-1, a_sorted.shape[1], -1)
    return a_sorted.new_zeros(n, a_sorted.shape[1], n).scatter(2, index, a_sorted)


def cosine_to_proxies(z, proxies):
    """cos(z_i, P_ip) [..., N, P] for unit ``z`` [..., N, d] and proxies [..., N, P, d]."""
    return (proxies * z.unsqueeze(-2)).sum(-1) / proxies.norm(dim=-1).clamp_min(1e-8)


def variance_hinge(proxies, gamma, eps=1e-4):
    """mean over anchors and dims of relu(gamma - std over an anchor's proxies).

    Proxies are normalized and scaled by sqrt(d), so that the per-dimension std of random unit
    vectors is about 1 whatever d is. 0 when an anchor has fewer than 2 proxies.
    """
    if proxies.shape[-2] < 2:
        return proxies.sum() * 0.0
    scaled = F.normalize(proxies, dim=-1) * math.sqrt(proxies.shape[-1])
    std = torch.sqrt(scaled.var(dim=-2) + eps)
    return F.relu(gamma - std).mean()


def proxy_fda_terms(z, z_hat, generator, k, tau, threshold="adaptive", threshold_value=0.5,
                    neg_weight="sim", eps=0.01, alpha=1.0, gamma=0.5):
    """(Proxy-FDA loss, L_proxy) for one set.

    The first term is the FDA loss over each anchor's set extended by its proxies; it trains
    ``z`` only (A is detached). The second trains ``generator`` only (it sees frozen features).
    ``z`` is [N, d] or [B, N, d]; ``z_hat`` [N, d]. Sets with fewer than 3 members give zeros.
    """
    n = z_hat.shape[0]
    k = effective_k(k, n)
    z = normalize(z)
    if k < 1:
        return z.sum() * 0.0, sum(p.sum() for p in generator.parameters()) * 0.0
    z_hat = normalize(z_hat.detach())
    graph = knn_graph(z_hat, k)
    b = thresholds(graph, tau, threshold, threshold_value)
    pooling = proxy_pooling(generator, z_hat, graph)  # [N, P, N]
    is_pos = torch.arange(generator.num_proxies, device=z.device) < generator.num_pos

    # Pre-trained side: proxies P^ = A Z^ and their target weights.
    proxies_hat = pooling @ z_hat  # [N, P, d], gradient to G
    cos_hat = cosine_to_proxies(z_hat, proxies_hat)  # [N, P]
    target = cos_hat.detach()
    proxy_w = torch.where(
        is_pos, positive_weight(target, eps), negative_weight(target, neg_weight, eps)
    )

    # Fine-tuned side: proxies P = A Z with A constant, appended to the anchor's sets.
    proxies = pooling.detach() @ z.unsqueeze(-3)  # [..., N, P, d]
    cos = torch.cat([z @ z.transpose(-1, -2), cosine_to_proxies(z, proxies)], dim=-1)
    weights = torch.cat([pair_weights(graph, neg_weight, eps), proxy_w], dim=-1)
    mask = torch.cat(
        [~torch.eye(n, dtype=torch.bool, device=z.device),
         torch.ones(n, generator.num_proxies, dtype=torch.bool, device=z.device)],
        dim=-1,
    )
    fda = sigmoid_alignment(cos, weights, b, tau, mask).mean()

    all_proxies = torch.ones_like(target, dtype=torch.bool)
    proxy_loss = sigmoid_alignment(cos_hat, proxy_w, b, tau, all_proxies).mean()
    spread = 0.5 * (variance_hinge(proxies_hat[:, : generator.num_pos], gamma)
                    + variance_hinge(proxies_hat[:, generator.num_pos:], gamma))
    return fda, proxy_loss + alpha * spread
