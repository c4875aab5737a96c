"""Anti-forgetting regularizers with one interface (SPEC decision 7; see base.py for the
trainer-side protocol): Proxy-FDA and plain FDA, LDIFS, PACE, plus the similar-class sampler."""
from .base import (
    FEATURE_NAMES, FeatureSets, Regularizer, build_regularizers, needed_features,
    regularization_loss,
)
from .config import add_regularizer_config
from .fda import KnnGraph, effective_k, fda_loss, knn_graph
from .ldifs import LDIFS, ldifs_distance
from .pace import PACE, consistency, sigma_for_layer
from .proxy import ProxyGenerator, proxy_fda_terms, proxy_pooling
from .proxy_fda import ProxyFDA
from .sampler import SimilarClassBatchSampler, class_similarity

__all__ = [
    "FEATURE_NAMES", "FeatureSets", "Regularizer", "build_regularizers", "needed_features",
    "regularization_loss", "add_regularizer_config",
    "KnnGraph", "effective_k", "fda_loss", "knn_graph",
    "LDIFS", "ldifs_distance",
    "PACE", "consistency", "sigma_for_layer",
    "ProxyGenerator", "proxy_fda_terms", "proxy_pooling", "ProxyFDA",
    "SimilarClassBatchSampler", "class_similarity",
]
