"""Errors that end a run with one message instead of a traceback.

`train.py` catches `UserError` and prints ``ERROR: <message>``; every message
names what was wrong and how to fix it.
"""


class UserError(Exception):
    """Bad input from the user: a path, a name, a config value."""

    def __init__(self, *args):
        # A DataLoader worker cannot send the exception itself: torch re-raises it in the
        # main process as ``type(exc)(text)`` with the whole worker traceback as the text
        # ("Caught X in DataLoader worker process 0. Original Traceback ..."). Keep only
        # our own message, so that the run still ends in one ERROR line.
        if len(args) == 1 and isinstance(args[0], str):
            args = (_worker_message(args[0], type(self)),)
        super().__init__(*args)


def _worker_message(text, cls):
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    marker = f"\n{cls.__module__}.{cls.__qualname__}: "
    start = text.rfind(marker)
    return text[start + len(marker):].rstrip("\n") if start >= 0 else text


class ConfigError(UserError):
    """An unknown trainer, dataset or config key, or an invalid value."""


class DatasetError(UserError):
    """A missing dataset folder, split file, class-name file or image."""


class ImageReadError(DatasetError):
    """An image file that exists but cannot be decoded."""


class OutputDirError(UserError):
    """An output folder that cannot be created or written to."""


class WeightsError(UserError):
    """CLIP weights that cannot be found, downloaded or read."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss became NaN or infinite."""
