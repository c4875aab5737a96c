"""A trainer registers itself, with its config node, from its own module.

    @register_trainer(add_config=add_coop_config)
    class CoOp(PromptTrainer): ...

puts the class in Dassl's trainer registry (whichever engine runs, so ``--trainer CoOp`` and
Dassl's ``build_trainer`` find it) and records ``add_config(cfg)``, which adds the trainer's
``cfg.TRAINER.<NODE>`` keys and defaults. ``add_trainer_config(cfg)`` runs every recorded one,
so a YAML file of any registered trainer merges. Nothing else has to be edited: the package
imports every module in ``trainers/`` (``trainers/__init__.py``).
"""
from dassl_compat import TRAINER_REGISTRY

#: trainer name -> function adding its config node (a trainer may have none, or reuse another's)
TRAINER_CONFIGS = {}


def register_trainer(add_config=None):
    """Class decorator: register a trainer under its class name, with ``add_config(cfg)``
    (optional) adding its node; existing values in ``cfg`` are kept."""

    def register(cls):
        TRAINER_REGISTRY.register(cls)
        if add_config is not None:
            TRAINER_CONFIGS[cls.__name__] = add_config
        return cls

    return register


def unregister_trainer(name):
    """Undo ``register_trainer`` (tests that register a trainer for one test)."""
    TRAINER_REGISTRY._obj_map.pop(name, None)
    TRAINER_CONFIGS.pop(name, None)


def add_trainer_config(cfg):
    """Add every registered trainer's config node to ``cfg``."""
    for add_config in TRAINER_CONFIGS.values():
        add_config(cfg)
    return cfg
