"""Session-wide test settings."""
import os

import pytest

from trainers.feature_cache import ENV_DIR


@pytest.fixture(autouse=True, scope="session")
def feature_cache_in_tmp(tmp_path_factory):
    """Evaluations cache image features in this session's temporary folder (train.py runs in
    subprocesses inherit it), never in the user's ~/.cache."""
    saved = os.environ.get(ENV_DIR)
    os.environ[ENV_DIR] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if saved is None:
        os.environ.pop(ENV_DIR, None)
    else:
        os.environ[ENV_DIR] = saved
