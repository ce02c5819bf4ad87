"""Dataset-test fixtures: decoded-image caches go to a per-test folder, never to the user's ~/.cache."""

import pytest


@pytest.fixture(autouse=True)
def private_image_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CEREBELLUM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
