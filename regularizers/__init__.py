"""Anti-forgetting regularizers with one interface (base.py): Proxy-FDA and plain FDA, LDIFS,
PACE, plus the similar-class sampler, and the features they read (features.py). Importing a
regularizer's module registers it under its config node; this package imports every module
in it, so adding a regularizer (or a feature) is one file here."""
import importlib
import pkgutil

from .base import (
    REGULARIZERS, FeatureSets, FrozenCLIP, Regularizer, RegularizerContext,
    add_regularizer_config, build_regularizers, enabled_nodes, needed_features,
    regularization_loss, register_regularizer,
)
from .features import (
    FEATURES, FeatureUnavailable, StepContext, produce_features, register_feature,
    unregister_feature,
)
from .fda import KnnGraph, effective_k, fda_loss, knn_graph
from .proxy import ProxyGenerator, proxy_fda_terms, proxy_pooling
from .sampler import SimilarClassBatchSampler, class_similarity
# Each import registers a regularizer. The shipped ones first, in this order (the order they
# are built and their losses summed), then any other module here, by name.
from .proxy_fda import ProxyFDA  # noqa: E402  isort: skip
from .ldifs import LDIFS, ldifs_distance  # noqa: E402  isort: skip
from .pace import PACE, consistency, sigma_for_layer  # noqa: E402  isort: skip

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "REGULARIZERS", "FeatureSets", "FrozenCLIP", "Regularizer", "RegularizerContext",
    "add_regularizer_config", "build_regularizers", "enabled_nodes", "needed_features",
    "regularization_loss", "register_regularizer",
    "FEATURES", "FeatureUnavailable", "StepContext", "produce_features", "register_feature",
    "unregister_feature",
    "KnnGraph", "effective_k", "fda_loss", "knn_graph",
    "LDIFS", "ldifs_distance",
    "PACE", "consistency", "sigma_for_layer",
    "ProxyGenerator", "proxy_fda_terms", "proxy_pooling", "ProxyFDA",
    "SimilarClassBatchSampler", "class_similarity",
]
