"""Samplers by name (``DATALOADER.*.SAMPLER``).

Register another one with ``@register_sampler("Name")`` on a factory
``(cfg, data_source, batch_size, n_domain, n_ins) -> Sampler``; or hand a
sampler object straight to ``build_data_loader(..., sampler=...)``.
"""
from torch.utils.data import RandomSampler, SequentialSampler

from errors import ConfigError

_SAMPLERS = {}


def register_sampler(name):
    def decorator(factory):
        _SAMPLERS[name] = factory
        return factory
    return decorator


@register_sampler("RandomSampler")
def _random_sampler(cfg, data_source, batch_size, n_domain, n_ins):
    return RandomSampler(data_source)


@register_sampler("SequentialSampler")
def _sequential_sampler(cfg, data_source, batch_size, n_domain, n_ins):
    return SequentialSampler(data_source)


def build_sampler(
    sampler_type, cfg=None, data_source=None, batch_size=32, n_domain=0, n_ins=16
):
    if sampler_type not in _SAMPLERS:
        raise ConfigError(
            f"Unknown sampler type: {sampler_type}; the built-in engine "
            f"supports {sorted(_SAMPLERS)}"
        )
    return _SAMPLERS[sampler_type](cfg, data_source, batch_size, n_domain, n_ins)
