"""Dataset-test fixtures: one small camera dataset per session that tests copy, and decoded-image caches in a
per-test folder, never in the user's ~/.cache."""

import shutil
from pathlib import Path

import pytest
from dataset_test_utils import write_small_dataset


@pytest.fixture(autouse=True)
def private_image_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CEREBELLUM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def pristine_dataset(tmp_path_factory) -> Path:
    """Three camera episodes of 5, 6 and 4 frames (two commits), written once; never modified."""
    return write_small_dataset(tmp_path_factory.mktemp("small") / "ds", seed=4, lengths=(5, 6, 4))


@pytest.fixture
def dataset(pristine_dataset, tmp_path) -> Path:
    """This test's own copy of the small dataset, free to break."""
    root = tmp_path / "ds"
    shutil.copytree(pristine_dataset, root)
    return root
