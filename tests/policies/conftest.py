"""Policy-test fixtures: one torch thread (tiny models run far slower with threads on a shared 2-core machine)."""

import pytest
import torch

from .synthetic import ChunkTask


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def task() -> ChunkTask:
    return ChunkTask()
