"""Anti-forgetting regularizers with one interface (base.py): Proxy-FDA and plain FDA, LDIFS,
PACE, plus the similar-class sampler. Importing a regularizer's module registers it under its
config node; adding one is its module and an import line here."""
from .base import (
    FEATURE_NAMES, REGULARIZERS, FeatureSets, FrozenCLIP, Regularizer, RegularizerContext,
    add_regularizer_config, build_regularizers, enabled_nodes, needed_features,
    regularization_loss, register_regularizer,
)
from .fda import KnnGraph, effective_k, fda_loss, knn_graph
from .proxy import ProxyGenerator, proxy_fda_terms, proxy_pooling
from .sampler import SimilarClassBatchSampler, class_similarity
# Each import registers a regularizer (in this order: the order they are built and summed).
from .proxy_fda import ProxyFDA  # noqa: E402  isort: skip
from .ldifs import LDIFS, ldifs_distance  # noqa: E402  isort: skip
from .pace import PACE, consistency, sigma_for_layer  # noqa: E402  isort: skip

__all__ = [
    "FEATURE_NAMES", "REGULARIZERS", "FeatureSets", "FrozenCLIP", "Regularizer",
    "RegularizerContext", "add_regularizer_config", "build_regularizers", "enabled_nodes",
    "needed_features", "regularization_loss", "register_regularizer",
    "KnnGraph", "effective_k", "fda_loss", "knn_graph",
    "LDIFS", "ldifs_distance",
    "PACE", "consistency", "sigma_for_layer",
    "ProxyGenerator", "proxy_fda_terms", "proxy_pooling", "ProxyFDA",
    "SimilarClassBatchSampler", "class_similarity",
]
