"""Chunk execution and temporal ensembling against hand-computed values, alone and inside ChunkExecutor."""

import math

import pytest
import torch

from policies import make_policy
from policies.chunking import ActionQueue, ChunkExecutor, TemporalEnsembler

from .synthetic import STATE_FEATURES, TINY, ChunkTask


def test_action_queue_executes_n_steps_per_chunk():
    queue = ActionQueue(n_action_steps=2)
    assert queue.needs_chunk()
    queue.add_chunk(torch.tensor([[[1.0], [2.0], [3.0]]]))
    assert queue.pop().item() == 1.0
    assert not queue.needs_chunk()
    assert queue.pop().item() == 2.0
    assert queue.needs_chunk()  # the third action of the chunk is never executed
    queue.add_chunk(torch.tensor([[[7.0], [8.0], [9.0]]]))
    assert queue.pop().item() == 7.0
    queue.reset()
    assert queue.needs_chunk()
    with pytest.raises(RuntimeError, match="empty"):
        queue.pop()


def test_temporal_ensembling_hand_computed():
    # k = ln 2 -> weights w_0 = 1 (oldest prediction), w_1 = 1/2, w_2 = 1/4.
    ens = TemporalEnsembler(coeff=math.log(2.0), chunk_length=3)
    chunks = [
        [10.0, 11.0, 12.0],  # predicted at t=0 for t=0,1,2
        [20.0, 21.0, 22.0],  # at t=1 for t=1,2,3
        [30.0, 31.0, 32.0],  # at t=2 for t=2,3,4
        [40.0, 41.0, 42.0],  # at t=3 for t=3,4,5
    ]
    expected = [
        10.0,  # t=0: only the t=0 chunk
        (11.0 * 1 + 20.0 * 0.5) / 1.5,  # t=1
        (12.0 * 1 + 21.0 * 0.5 + 30.0 * 0.25) / 1.75,  # t=2
        (22.0 * 1 + 31.0 * 0.5 + 40.0 * 0.25) / 1.75,  # t=3: the t=0 chunk no longer covers it
    ]
    for chunk, want in zip(chunks, expected):
        ens.add_chunk(torch.tensor(chunk).reshape(1, 3, 1))
        got = ens.pop()
        assert got.shape == (1, 1)
        assert got.item() == pytest.approx(want, rel=1e-6)


def test_temporal_ensembling_zero_coefficient_is_plain_average_and_batched():
    ens = TemporalEnsembler(coeff=0.0, chunk_length=2)
    ens.add_chunk(torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[10.0, 10.0], [20.0, 20.0]]]))
    assert torch.equal(ens.pop(), torch.tensor([[0.0, 1.0], [10.0, 10.0]]))
    ens.add_chunk(torch.tensor([[[4.0, 5.0], [0.0, 0.0]], [[40.0, 40.0], [0.0, 0.0]]]))
    assert torch.allclose(ens.pop(), torch.tensor([[3.0, 4.0], [30.0, 30.0]]))


def test_temporal_ensembler_needs_one_chunk_per_step():
    ens = TemporalEnsembler(coeff=0.01, chunk_length=2)
    with pytest.raises(RuntimeError, match="add_chunk"):
        ens.pop()
    ens.add_chunk(torch.zeros(1, 2, 1))
    with pytest.raises(RuntimeError, match="two chunks"):
        ens.add_chunk(torch.zeros(1, 2, 1))
    with pytest.raises(ValueError, match="must be"):
        TemporalEnsembler(0.01, 2).add_chunk(torch.zeros(1, 3, 1))


class _ScriptedChunks:
    """Replaces a policy's predict_chunk: the c-th call's chunks hold values 100*c + i (every row), counts calls."""

    def __init__(self, length: int, action_dim: int):
        self.calls = 0
        self.length, self.action_dim = length, action_dim

    def __call__(self, window):
        base = 100.0 * self.calls
        self.calls += 1
        values = base + torch.arange(self.length, dtype=torch.float32)
        rows = next(iter(window.values())).shape[0]
        return values.reshape(1, self.length, 1).expand(rows, self.length, self.action_dim).clone()


def _observation(n_envs=1, dim_state=4, dim_env=3):
    return {"observation.state": torch.zeros(n_envs, dim_state),
            "observation.environment_state": torch.zeros(n_envs, dim_env)}


def test_executor_runs_chunks_of_n_action_steps():
    policy = make_policy({"type": "mlp", **TINY["mlp"]}, STATE_FEATURES, ChunkTask().stats()).eval()
    scripted = _ScriptedChunks(policy.chunk_length, policy.action_dim)
    policy.predict_chunk = scripted
    executor = ChunkExecutor(policy)
    got = [executor(_observation())[0, 0].item() for _ in range(9)]
    # n_action_steps = 4: chunk 0 gives 0..3, chunk 1 gives 100..103, chunk 2 starts at 200.
    assert got == [0, 1, 2, 3, 100, 101, 102, 103, 200]
    assert scripted.calls == 3
    executor.reset(0)
    assert executor(_observation())[0, 0].item() == 300  # a reset starts a fresh chunk


def test_executor_keeps_each_environment_on_its_own_schedule_in_one_batch():
    policy = make_policy({"type": "mlp", **TINY["mlp"]}, STATE_FEATURES, ChunkTask().stats()).eval()
    scripted = _ScriptedChunks(policy.chunk_length, policy.action_dim)
    policy.predict_chunk = scripted
    executor = ChunkExecutor(policy, n_envs=2)
    got = [executor(_observation(2))[:, 0].tolist() for _ in range(2)]
    executor.reset(1)  # env 1 starts a new episode: only it asks for a chunk now
    got += [executor(_observation(2))[:, 0].tolist() for _ in range(3)]
    assert got == [[0, 0], [1, 1], [2, 100], [3, 101], [200, 102]]
    assert scripted.calls == 3
    with pytest.raises(ValueError, match="one per environment"):
        executor(_observation(3))


def test_executor_with_temporal_ensembling_predicts_every_step():
    cfg = {"type": "act", **TINY["act"], "chunk_size": 3, "n_action_steps": 1, "temporal_ensemble_coeff": 0.0}
    policy = make_policy(cfg, STATE_FEATURES, ChunkTask().stats()).eval()
    scripted = _ScriptedChunks(policy.chunk_length, policy.action_dim)
    policy.predict_chunk = scripted
    executor = ChunkExecutor(policy)
    got = [executor(_observation())[0, 0].item() for _ in range(4)]
    # plain average of every chunk covering the step: t=1: (1 + 100)/2, t=2: (2 + 101 + 200)/3, t=3: (102+201+300)/3
    assert got == pytest.approx([0.0, 50.5, 101.0, 201.0])
    assert scripted.calls == 4


def test_ensembling_requires_single_step_execution():
    with pytest.raises(ValueError, match="n_action_steps must be 1"):
        cfg = {"type": "act", **TINY["act"], "temporal_ensemble_coeff": 0.01}
        make_policy(cfg, STATE_FEATURES, ChunkTask().stats())
