"""The regularizers on their own: FDA, proxies, Proxy-FDA, LDIFS, PACE, the sampler, the config."""
import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from errors import ConfigError
from regularizers import (
    LDIFS, PACE, FeatureSets, ProxyFDA, ProxyGenerator, SimilarClassBatchSampler,
    add_regularizer_config, build_regularizers, class_similarity, consistency, effective_k,
    fda_loss, knn_graph, ldifs_distance, needed_features, proxy_fda_terms, proxy_pooling,
    regularization_loss, sigma_for_layer,
)
from regularizers.fda import thresholds

DIM = 32
FDA_OPTIONS = dict(k=4, tau=0.1, threshold="adaptive", neg_weight="sim", eps=0.01)


def config(**enable):
    cfg = add_regularizer_config(CN())
    for name, on in enable.items():
        cfg[name.upper()].ENABLE = on
    return cfg


def features(n, d=DIM, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    z_hat = torch.randn(n, d, generator=g)
    z = z_hat + noise * torch.randn(n, d, generator=g)
    return z.requires_grad_(), z_hat


def generator(d=DIM, seed=0, **kwargs):
    torch.manual_seed(seed)
    return ProxyGenerator(d, **kwargs)


# ---- FDA ------------------------------------------------------------------------------------

def test_knn_graph_equals_brute_force():
    _, z_hat = features(12)
    z_hat = F.normalize(z_hat, dim=-1)
    k = 3
    graph = knn_graph(z_hat, k)
    for i in range(12):
        sims = {j: float(z_hat[i] @ z_hat[j]) for j in range(12) if j != i}
        ranked = sorted(sims, key=sims.get, reverse=True)
        assert set(graph.order[i, :k].tolist()) == set(ranked[:k])
        assert {j for j in range(12) if graph.pos_mask[i, j]} == set(ranked[:k])
        assert graph.order[i].tolist() == ranked
        assert torch.allclose(graph.sim_sorted[i], torch.tensor([sims[j] for j in ranked]))
    midpoint = (graph.sim_sorted[:, k - 1] + graph.sim_sorted[:, k]) / (2 * 0.1)
    assert torch.allclose(thresholds(graph, 0.1, "adaptive"), midpoint)


def test_k_is_clipped_to_n_minus_2_for_small_sets():
    assert effective_k(5, 100) == 5
    assert effective_k(5, 4) == 2
    assert effective_k(5, 2) == 0
    z, z_hat = features(4)
    clipped = fda_loss(z, z_hat, **{**FDA_OPTIONS, "k": 50})
    assert torch.isfinite(clipped)
    assert torch.allclose(clipped, fda_loss(z, z_hat, **{**FDA_OPTIONS, "k": 2}))
    # too small for a graph: zero, still connected to z so that backward works
    z, z_hat = features(2)
    tiny = fda_loss(z, z_hat, **FDA_OPTIONS)
    tiny.backward()
    assert tiny.item() == 0.0


def test_loss_is_lower_when_neighbourhoods_are_kept_than_shuffled():
    z, z_hat = features(32, noise=0.3)
    shuffled = z.detach()[torch.randperm(32, generator=torch.Generator().manual_seed(1))]
    assert fda_loss(z, z_hat, **FDA_OPTIONS) < fda_loss(shuffled, z_hat, **FDA_OPTIONS)
    g = generator()
    kept, _ = proxy_fda_terms(z, z_hat, g, **FDA_OPTIONS)
    mixed, _ = proxy_fda_terms(shuffled, z_hat, g, **FDA_OPTIONS)
    assert kept < mixed


@pytest.mark.parametrize("neg_weight", ["sim", "one", "dissim"])
@pytest.mark.parametrize("threshold", ["adaptive", "fixed"])
def test_loss_is_unchanged_by_a_rotation_of_the_fine_tuned_space(neg_weight, threshold):
    z, z_hat = features(16, noise=0.5)
    rotation, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(2)))
    options = {**FDA_OPTIONS, "neg_weight": neg_weight, "threshold": threshold}
    z = z.detach()
    assert torch.allclose(fda_loss(z @ rotation, z_hat, **options), fda_loss(z, z_hat, **options),
                          atol=1e-6)
    g = generator()
    rotated, _ = proxy_fda_terms(z @ rotation, z_hat, g, **options)
    plain, _ = proxy_fda_terms(z, z_hat, g, **options)
    assert torch.allclose(rotated, plain, atol=1e-6)


def test_per_sample_sets_share_one_pretrained_graph():
    z, z_hat = features(10)
    batched = torch.stack([z, z.detach() * 2.0])  # a rescaled copy has the same cosines
    assert torch.allclose(fda_loss(batched, z_hat, **FDA_OPTIONS),
                          fda_loss(z, z_hat, **FDA_OPTIONS))
    g = generator()
    fda_b, _ = proxy_fda_terms(batched, z_hat, g, **FDA_OPTIONS)
    fda_1, _ = proxy_fda_terms(z, z_hat, g, **FDA_OPTIONS)
    assert torch.allclose(fda_b, fda_1, atol=1e-6)


def test_the_joint_set_sees_a_rotation_of_the_text_features_that_the_text_set_cannot():
    # CoOp's case: the text features all turn together (a shared context can do that), the
    # image features are frozen CLIP's. The text set's relations do not change; the joint set's
    # text-image relations do.
    cfg = config(proxyfda=True)
    cfg.PROXYFDA.PROXY.ENABLE = False
    text_frozen, _ = features(8, seed=3)
    image, _ = features(6, seed=4)
    rotation, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(5)))

    def losses(text):
        out = {}
        for name in ("TEXT", "JOINT"):
            cfg.PROXYFDA.TEXT_WEIGHT = 1.0 if name == "TEXT" else 0.0
            cfg.PROXYFDA.JOINT_WEIGHT = 1.0 if name == "JOINT" else 0.0
            reg = build_regularizers(cfg, embed_dim=DIM, towers=("text",))[0]
            assert reg.needs == ({"text", "text_frozen"} if name == "TEXT" else
                                 {"text", "text_frozen", "image", "image_frozen"})
            out[name], _ = reg(FeatureSets(text=text, text_frozen=text_frozen, image=image,
                                           image_frozen=image))
        return out

    kept, turned = losses(text_frozen.clone()), losses(text_frozen @ rotation)
    assert torch.allclose(turned["TEXT"], kept["TEXT"], atol=1e-6)
    assert turned["JOINT"] > kept["JOINT"] + 1e-3


# ---- gradients and the generator ------------------------------------------------------------

@pytest.mark.parametrize("proxies", [False, True])
def test_gradients_reach_the_fine_tuned_features_and_never_the_frozen_ones(proxies):
    cfg = config(proxyfda=True)
    cfg.PROXYFDA.PROXY.ENABLE = proxies
    reg = build_regularizers(cfg, embed_dim=DIM, towers=("text", "image"))[0]
    text, text_frozen = features(10, seed=1)
    image, image_frozen = features(6, seed=2)
    text_frozen.requires_grad_()
    image_frozen.requires_grad_()
    loss, _ = reg(FeatureSets(text=text, text_frozen=text_frozen, image=image,
                              image_frozen=image_frozen))
    loss.backward()
    assert text.grad.abs().sum() > 0 and image.grad.abs().sum() > 0
    assert text_frozen.grad is None and image_frozen.grad is None


def test_only_the_proxy_loss_trains_the_generator():
    z, z_hat = features(12)
    g = generator()
    params = list(g.parameters())
    fda, proxy_loss = proxy_fda_terms(z, z_hat, g, **FDA_OPTIONS)
    # the FDA term treats the pooling weights as constants ...
    assert all(grad is None for grad in torch.autograd.grad(fda, params, retain_graph=True,
                                                            allow_unused=True))
    # ... and L_proxy reaches the generator, not the fine-tuned features
    grads = torch.autograd.grad(proxy_loss, params + [z], allow_unused=True)
    assert all(grad is not None for grad in grads[:-1])
    assert sum(grad.abs().sum() for grad in grads[:-1]) > 0
    assert grads[-1] is None


def test_one_backward_of_the_total_loss_trains_generator_by_proxy_loss_only():
    cfg = config(proxyfda=True)
    cfg.PROXYFDA.TEXT_WEIGHT = 3.0
    reg = build_regularizers(cfg, embed_dim=DIM)[0]
    z, z_hat = features(12)
    loss, summary = reg(FeatureSets(text=z, text_frozen=z_hat))
    loss.backward()
    total_grads = [p.grad.clone() for p in reg.generator_parameters()]
    reg.zero_grad()
    _, proxy_loss = proxy_fda_terms(z, z_hat, reg.generator, **reg.options, alpha=reg.alpha,
                                    gamma=reg.gamma)
    proxy_loss.backward()
    for total, own in zip(total_grads, reg.generator_parameters()):
        assert torch.allclose(total, own.grad, atol=1e-7)
    assert loss.item() == pytest.approx(3.0 * summary["fda_text"] + summary["proxy"], rel=1e-5)


def test_proxies_are_convex_combinations_of_their_set():
    _, z_hat = features(12)
    z_hat = F.normalize(z_hat, dim=-1)
    k = 4
    graph = knn_graph(z_hat, k)
    g = generator(num_pos=3, num_neg=5)
    pooling = proxy_pooling(g, z_hat, graph).detach()  # [N, P, N]
    assert (pooling >= 0).all()
    assert torch.allclose(pooling.sum(-1), torch.ones(12, 8))
    eye = torch.eye(12, dtype=torch.bool)
    positive_support = pooling[:, :3] > 0
    negative_support = pooling[:, 3:] > 0
    assert not (positive_support & ~graph.pos_mask.unsqueeze(1)).any()
    assert not (negative_support & (graph.pos_mask | eye).unsqueeze(1)).any()
    proxies = pooling @ z_hat
    for i in range(12):  # inside the hull: every coordinate within the set's range
        for p in range(8):
            members = z_hat[pooling[i, p] > 0]
            assert (proxies[i, p] >= members.min(0).values - 1e-6).all()
            assert (proxies[i, p] <= members.max(0).values + 1e-6).all()


def test_generator_masks_sets_of_different_sizes_per_anchor():
    g = generator(num_pos=2, num_neg=2)
    pool = F.normalize(torch.randn(7, DIM), dim=-1)
    member_index = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 2, 3, 4, 5, 6]])
    pos = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    neg = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 0]], dtype=torch.bool)  # 6 is padding
    weights = g(pool[:2], pool, member_index, torch.rand(2, 6), pos, neg)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4))
    assert (weights[:, :2][~pos.unsqueeze(1).expand(-1, 2, -1)] == 0).all()
    assert (weights[:, 2:][~neg.unsqueeze(1).expand(-1, 2, -1)] == 0).all()
    assert torch.allclose(weights[1, 2:, 4], torch.ones(2))  # a one-member set


def test_generator_has_about_20k_parameters_at_clip_width():
    proxy = config().PROXYFDA.PROXY
    g = ProxyGenerator(512, proxy.NUM_POS, proxy.NUM_NEG, proxy.RANK, proxy.CHANNELS)
    assert 15_000 <= sum(p.numel() for p in g.parameters()) <= 25_000


def test_proxy_switch_gives_plain_fda_when_off():
    z, z_hat = features(12)
    cfg = config(proxyfda=True)
    cfg.PROXYFDA.PROXY.ENABLE = False
    plain = build_regularizers(cfg, embed_dim=DIM)[0]
    loss, summary = plain(FeatureSets(text=z, text_frozen=z_hat))
    assert plain.generator is None and plain.generator_parameters() == []
    assert set(summary) == {"fda_text"}
    assert torch.allclose(loss, fda_loss(z, z_hat, **plain.options))

    cfg.PROXYFDA.PROXY.ENABLE = True
    proxy = build_regularizers(cfg, embed_dim=DIM)[0]
    loss, summary = proxy(FeatureSets(text=z, text_frozen=z_hat))
    assert set(summary) == {"fda_text", "proxy"} and proxy.generator_parameters()
    assert not torch.allclose(loss, fda_loss(z, z_hat, **proxy.options))


def test_proxy_fda_acts_only_on_the_towers_a_trainer_prompts():
    cfg = config(proxyfda=True)
    coop = build_regularizers(cfg, embed_dim=DIM, towers=("text",))[0]
    maple = build_regularizers(cfg, embed_dim=DIM, towers=("text", "image"))[0]
    assert coop.needs == {"text", "text_frozen"}
    assert maple.needs == {"text", "text_frozen", "image", "image_frozen"}
    cfg.PROXYFDA.TEXT_WEIGHT = 0.0
    with pytest.raises(ConfigError):
        build_regularizers(cfg, embed_dim=DIM, towers=("text",))
    with pytest.raises(ValueError, match="text_frozen"):
        coop(FeatureSets(text=features(5)[0]))


# ---- LDIFS ----------------------------------------------------------------------------------

def test_ldifs_equals_its_formula_on_known_tensors():
    # tokens (3, 4) and (1, 0) normalized over tokens: (0.6, 0.8) and (1, 0)
    frozen = torch.tensor([[[3.0], [4.0]]])
    prompted = torch.tensor([[[1.0], [0.0]]])
    assert ldifs_distance(prompted, frozen, norm_dim=1).item() == pytest.approx(0.4)

    g = torch.Generator().manual_seed(0)
    frozen = [torch.randn(3, 5, 8, generator=g) for _ in range(3)]
    prompted = [f + 0.5 * torch.randn(3, 5, 8, generator=g) for f in frozen]
    for dim in (1, -1):
        expected = sum(
            ((f / (f.norm(dim=dim, keepdim=True) + 1e-10)
              - p / (p.norm(dim=dim, keepdim=True) + 1e-10)) ** 2).mean()
            for p, f in zip(prompted, frozen)
        ) / 3
        cfg = config(ldifs=True)
        cfg.LDIFS.NORM_DIM = dim
        reg = build_regularizers(cfg)[0]
        loss, summary = reg(FeatureSets(hidden={"text": (prompted, frozen)}))
        assert loss.item() == pytest.approx(10.0 * expected.item(), rel=1e-6)
        assert summary["ldifs_text"] == pytest.approx(expected.item(), rel=1e-6)


def test_ldifs_drops_appended_prompt_tokens_and_maps_layers_to_depth():
    frozen = torch.randn(2, 5, 8)
    prompted = torch.cat([frozen, torch.randn(2, 3, 8)], dim=1)  # 3 vision prompt tokens
    assert ldifs_distance(prompted, frozen).item() == pytest.approx(0.0, abs=1e-12)
    reg = build_regularizers(config(ldifs=True), towers=("text", "image"))[0]
    assert reg.hidden_layers(12) == [0, 3, 6, 9, 12]
    assert reg.hidden_layers(4) == [0, 3, 4]
    with pytest.raises(ValueError, match="image"):
        reg(FeatureSets(hidden={"text": ([frozen], [frozen])}))


# ---- PACE -----------------------------------------------------------------------------------

def pace(sigma=0.5, **options):
    cfg = config(pace=True)
    cfg.PACE.SIGMA = sigma
    for key, value in options.items():
        cfg.PACE[key.upper()] = value
    return build_regularizers(cfg, prompt_depth=3)[0]


def test_pace_noise_is_independent_per_pass_and_per_sample_channel():
    reg = pace(sigma=0.5)
    prompt = torch.randn(4, 16)  # n_ctx x D
    first, second = reg.perturb(prompt, 0, 8), reg.perturb(prompt, 0, 8)
    assert first.shape == (8, 4, 16)
    assert not torch.allclose(first, second)
    noise = first / prompt
    assert torch.allclose(noise, noise[:, :1].expand_as(noise), atol=1e-5)  # shared over tokens
    assert noise[:, 0].std() > 0.1  # varies over samples and channels
    base = torch.randn(4, 16)
    assert not torch.allclose(reg.perturb(prompt, 1, 8, base=base) - base, prompt - base)
    reg.eval()
    assert reg.perturb(prompt, 0, 8) is prompt


def test_pace_consistency_is_zero_when_sigma_is_zero():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 5)
    prompt = torch.randn(4, 16, requires_grad=True)
    images = torch.randn(6, 16)

    def logits(reg, batch):
        return head(images[:batch] + reg.perturb(prompt, 0, batch).mean(-2))

    quiet = pace(sigma=0.0)
    loss, summary = quiet(FeatureSets(logits=logits(quiet, 6), logits_second_pass=logits(quiet, 6)))
    assert loss.item() == 0.0 and summary == {"pace": 0.0}

    noisy = pace(sigma=0.5, weight=2.0)
    first, second = logits(noisy, 6), logits(noisy, 3)
    loss, summary = noisy(FeatureSets(logits=first, logits_second_pass=second))
    expected = ((first[:3] - second) ** 2).sum(-1).mean()
    assert summary["pace"] == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() == pytest.approx(2.0 * expected.item(), rel=1e-6)
    loss.backward()
    assert prompt.grad.abs().sum() > 0
    assert consistency(first, first[:2]).item() == 0.0


def test_pace_sigma_falls_with_depth():
    assert [sigma_for_layer(layer, 4, 1.2) for layer in range(4)] == pytest.approx(
        [1.2, 0.9, 0.6, 0.3])
    assert sigma_for_layer(0, 1, 0.7) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        sigma_for_layer(4, 4, 1.0)


def test_pace_lazy_runs_the_second_pass_on_half_the_batch_every_interval():
    assert [pace().second_pass_size(step, 8) for step in range(3)] == [8, 8, 8]
    lazy = pace(lazy=True, lazy_interval=3)
    assert [lazy.second_pass_size(step, 8) for step in range(6)] == [4, 0, 0, 4, 0, 0]
    assert lazy.second_pass_size(0, 1) == 1
    loss, summary = lazy(FeatureSets(logits=torch.randn(8, 5, requires_grad=True)))
    assert loss.item() == 0.0 and summary == {"pace": 0.0}


# ---- sampler --------------------------------------------------------------------------------

def clustered_classes():
    """12 classes in 3 groups of 4 near-identical text features; class 5 has only 2 images."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, DIM, generator=g) * 5
    text = centres.repeat_interleave(4, dim=0) + 0.1 * torch.randn(12, DIM, generator=g)
    labels = [c for c in range(12) for _ in range(2 if c == 5 else 6)]
    return labels, class_similarity(text)


def test_sampler_yields_m_by_n_batches_of_similar_classes():
    labels, similarity = clustered_classes()
    sampler = SimilarClassBatchSampler(labels, similarity, num_classes=4, num_images=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // 12
    for batch in batches:
        assert len(batch) == 12
        classes = [labels[i] for i in batch]
        assert all(classes.count(c) == 3 for c in set(classes)) and len(set(classes)) == 4
        assert len({c // 4 for c in classes}) == 1  # one group of similar classes
    few = [i for i, y in enumerate(labels) if y == 5]
    many = SimilarClassBatchSampler(labels, similarity, 4, 3, num_batches=30)
    for batch in many:
        if labels[batch[0]] // 4 == 1:
            assert set(few) <= set(batch)  # both images, one repeated


def test_sampler_is_deterministic_under_torch_seeding():
    labels, similarity = clustered_classes()
    sampler = SimilarClassBatchSampler(labels, similarity, 2, 2, num_batches=10)
    torch.manual_seed(3)
    first = list(sampler)
    torch.manual_seed(3)
    assert list(sampler) == first
    assert list(sampler) != first  # a new epoch draws new batches


# ---- config and building --------------------------------------------------------------------

def test_all_regularizers_are_off_by_default_and_build_nothing():
    cfg = config()
    assert not cfg.PROXYFDA.ENABLE and not cfg.LDIFS.ENABLE and not cfg.PACE.ENABLE
    assert build_regularizers(cfg, embed_dim=DIM, towers=("text", "image")) == []
    assert build_regularizers(CN(), embed_dim=DIM) == []
    assert needed_features([]) == frozenset()
    cfg.PROXYFDA.K = 9
    assert add_regularizer_config(cfg).PROXYFDA.K == 9  # existing values are kept


def test_all_on_builds_each_once_and_sums_their_losses():
    regs = build_regularizers(config(proxyfda=True, ldifs=True, pace=True), embed_dim=DIM,
                              towers=("text",), prompt_depth=2)
    assert [type(r) for r in regs] == [ProxyFDA, LDIFS, PACE]
    assert needed_features(regs) == {"text", "text_frozen", "hidden", "logits",
                                     "logits_second_pass"}
    z, z_hat = features(8)
    hidden = torch.randn(8, 4, DIM)
    feats = FeatureSets(text=z, text_frozen=z_hat, hidden={"text": ([hidden + 0.1], [hidden])},
                        logits=torch.randn(4, 8), logits_second_pass=torch.randn(4, 8))
    loss, summary = regularization_loss(regs, feats)
    assert set(summary) == {"fda_text", "proxy", "ldifs_text", "pace"}
    assert torch.allclose(loss, sum(reg(feats)[0] for reg in regs))


def test_bad_options_are_config_errors():
    cfg = config(proxyfda=True)
    cfg.PROXYFDA.NEG_WEIGHT = "hard"
    with pytest.raises(ConfigError):
        build_regularizers(cfg, embed_dim=DIM)
    cfg = config(proxyfda=True)
    with pytest.raises(ConfigError, match="embed_dim"):
        build_regularizers(cfg)
    with pytest.raises(ConfigError):
        build_regularizers(cfg, embed_dim=DIM, towers=("audio",))


def test_losses_run_in_float32_under_autocast():
    cfg = config(proxyfda=True, ldifs=True)
    regs = build_regularizers(cfg, embed_dim=DIM)
    z, z_hat = features(8)
    hidden = torch.randn(8, 4, DIM)
    feats = FeatureSets(text=z.bfloat16(), text_frozen=z_hat.bfloat16(),
                        hidden={"text": ([hidden.bfloat16()], [hidden])})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [reg(feats)[0] for reg in regs]
    assert all(loss.dtype == torch.float32 for loss in losses)
