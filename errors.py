"""Errors that end a run with one message instead of a traceback.

`train.py` catches `UserError` and prints ``ERROR: <message>``; every message
names what was wrong and how to fix it.
"""


class UserError(Exception):
    """Bad input from the user: a path, a name, a config value."""


class ConfigError(UserError):
    """An unknown trainer, dataset or config key, or an invalid value."""


class DatasetError(UserError):
    """A missing dataset folder, split file, class-name file or image."""


class WeightsError(UserError):
    """CLIP weights that cannot be found, downloaded or read."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss became NaN or infinite."""
