"""Data-parallel imitation training through torchrun on CPU (gloo): two processes follow the loss curve of one process
with the same global batch, only rank 0 writes, and a distributed run resumes exactly; the process-group plumbing of
training.distributed and the per-rank batch sharding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoints import LATEST_FILE, latest_checkpoint, step_dir_name
from training.distributed import WORKER_HYDRA_OVERRIDES, DistributedContext, setup, worker_hydra_overrides
from training.imitation.checkpoint import read_imitation_checkpoint
from training.imitation.config import config_from_dict
from training.imitation.sampler import RankShard, ResumableBatchSampler
from training.imitation.state import capture_rng
from training.imitation.trainer import _restore_rng_of_rank, train

pytestmark = pytest.mark.slow  # torchrun launches of two gloo processes

REPO = Path(__file__).resolve().parents[2]
STEPS, EVERY = 8, 4
# A deterministic policy (no dropout) whose loss is a plain mean over samples (chunk_size=1: no padded actions, whose
# masked mean would weigh the two halves of a batch unequally): DDP's average of the two ranks' gradients is then the
# gradient of the whole batch, and the loss curves agree up to float summation order.
POLICY = {"type": "mlp", "hidden_dims": [32, 32], "chunk_size": 1, "n_action_steps": 1, "optimizer_lr": 1e-3}
OVERRIDES = [
    "env=reach", "env.max_episode_steps=30", "policy=mlp", "policy.hidden_dims=[32,32]", "policy.chunk_size=1",
    "policy.n_action_steps=1", "policy.optimizer_lr=1e-3", f"steps={STEPS}", "batch_size=16", "log_every=1",
    "optim.warmup_steps=2", f"checkpoint.every_steps={EVERY}", "eval.final_episodes=0", "progress_bar=false",
    "torch_threads=1", "logger.mode=disabled",
]


@pytest.fixture(autouse=True)
def single_threaded(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def torchrun(args: list[str], cwd: Path) -> None:
    """`torchrun --standalone --nproc_per_node=2 scripts/train.py ARGS` from `cwd`, failing with its output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "scripts" / "train.py"), *args]
    env = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def checkpoint_tensors(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run_dir) / name))


@pytest.fixture(scope="module")
def two_process_run(reach_data, tmp_path_factory) -> Path:
    """One torchrun launch of 2 gloo processes, from an empty working directory (to see stray outputs)."""
    work = tmp_path_factory.mktemp("torchrun")
    run_dir = work / "two"
    torchrun([*OVERRIDES, f"dataset.root={reach_data}", f"hydra.run.dir={run_dir}"], cwd=work)
    return run_dir


def test_two_gloo_processes_follow_the_loss_curve_of_one_process_with_the_same_global_batch(
        two_process_run, reach_data, tmp_path):
    cfg = config_from_dict({
        "env": {"id": "cerebellum/Reach-v0", "max_episode_steps": 30}, "policy": POLICY,
        "dataset": {"root": str(reach_data)}, "steps": STEPS, "batch_size": 16, "log_every": 1,
        "optim": {"warmup_steps": 2}, "checkpoint": {"every_steps": EVERY}, "eval": {"final_episodes": 0},
        "logger": {"mode": "disabled"}, "progress_bar": False, "torch_threads": 1,
    })
    one = train(cfg, tmp_path / "one")
    two = metrics(two_process_run)
    # Rank 0 alone logs: one row per step, not one per process.
    assert [row["step"] for row in two] == list(range(1, STEPS + 1))
    one_loss = [row["train/loss"] for row in one.history]
    two_loss = [row["train/loss"] for row in two]  # the all-reduced loss of the global batch
    assert two_loss == pytest.approx(one_loss, rel=1e-5, abs=1e-7)
    assert len(set(round(x, 4) for x in one_loss)) > 4  # a real curve, not a constant
    assert [row["train/grad_norm"] for row in two] == pytest.approx([row["train/grad_norm"] for row in one.history],
                                                                       rel=1e-4)
    single = checkpoint_tensors(tmp_path / "one", "policy/model.safetensors")
    double = checkpoint_tensors(two_process_run, "policy/model.safetensors")
    for key in single:
        torch.testing.assert_close(double[key], single[key], rtol=1e-5, atol=1e-6)


def test_only_rank_0_writes_and_the_checkpoint_holds_every_ranks_random_state(two_process_run):
    work = two_process_run.parent
    # Rank 1 used Hydra with WORKER_HYDRA_OVERRIDES: no run dir, config copy or log of its own anywhere.
    assert sorted(p.name for p in work.iterdir()) == ["two"]
    assert sorted(p.name for p in (two_process_run / "checkpoints").iterdir()) == [
        LATEST_FILE, step_dir_name(EVERY), step_dir_name(STEPS)]
    ckpt = read_imitation_checkpoint(two_process_run)
    assert ckpt.step == STEPS and ckpt.state["world_size"] == 2
    tensors = ckpt.tensors()
    # Each rank has its own random stream (seeded from the run seed and the rank), saved under its rank.
    assert not torch.equal(tensors["rank1.rng.torch_cpu"], tensors["rng.torch_cpu"])
    assert set(ckpt.state["rank_rng"]) == {"1"}

    before = torch.get_rng_state()
    try:
        _restore_rng_of_rank(ckpt, DistributedContext(rank=1, world_size=2), seed=0)
        assert torch.equal(torch.get_rng_state(), tensors["rank1.rng.torch_cpu"])
        _restore_rng_of_rank(ckpt, DistributedContext(rank=0, world_size=2), seed=0)
        assert torch.equal(torch.get_rng_state(), tensors["rng.torch_cpu"])
        # Resumed on 3 processes, rank 1 and 2 cannot continue saved streams: they are reseeded per rank and step.
        _restore_rng_of_rank(ckpt, DistributedContext(rank=2, world_size=3), seed=0)
        rank2 = torch.get_rng_state()
        _restore_rng_of_rank(ckpt, DistributedContext(rank=1, world_size=3), seed=0)
        assert not torch.equal(torch.get_rng_state(), rank2)
        assert not torch.equal(torch.get_rng_state(), tensors["rank1.rng.torch_cpu"])
    finally:
        torch.set_rng_state(before)


def test_a_distributed_run_resumes_to_the_same_weights_and_optimizer_state(two_process_run, tmp_path):
    """As after a kill between the two checkpoints: the step-8 checkpoint is gone, `latest` names step 4."""
    split = tmp_path / "split"
    shutil.copytree(two_process_run, split)
    shutil.rmtree(split / "checkpoints" / step_dir_name(STEPS))
    (split / "checkpoints" / LATEST_FILE).write_text(step_dir_name(EVERY) + "\n")
    torchrun([f"resume={split}"], cwd=tmp_path)
    assert read_imitation_checkpoint(split).step == STEPS
    for name in ("policy/model.safetensors", "trainer_state.safetensors"):
        whole, resumed = checkpoint_tensors(two_process_run, name), checkpoint_tensors(split, name)
        assert sorted(whole) == sorted(resumed)
        for key in whole:
            assert torch.equal(whole[key], resumed[key]), f"{name}: {key} differs"
    # The rows logged after the step-4 checkpoint were dropped at resume; the resumed segment logged steps 5..8 again
    # with the same losses, so every step appears once.
    rows = metrics(split)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["train/loss"] for r in rows[EVERY:]] == [r["train/loss"] for r in metrics(two_process_run)[EVERY:]]


# ------------------------------------------------------------------------------------------------ plumbing
def test_each_rank_loads_its_contiguous_share_of_every_global_batch():
    batches = ResumableBatchSampler(num_samples=40, batch_size=8, seed=3, start_batch=2)
    shards = [RankShard(batches, rank, 2) for rank in range(2)]
    streams = [iter(batches), *(iter(s) for s in shards)]
    for _ in range(12):  # across an epoch boundary (5 batches per epoch)
        whole, first, second = (next(s) for s in streams)
        assert first + second == whole and len(first) == 4
    with pytest.raises(ValueError, match="batch_size=8 .* must be divisible by the 3 training processes"):
        RankShard(batches, 0, 3)


def test_single_process_context_is_a_no_op_and_launch_variables_are_checked(monkeypatch):
    ctx = setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
    assert ctx.broadcast_object("x") == "x" and ctx.all_gather_object(3) == [3]
    assert ctx.mean_over_ranks([1.0, 2.5], torch.device("cpu")) == [1.0, 2.5]
    assert worker_hydra_overrides() == []
    assert DistributedContext(rank=1, world_size=2).rank_seed(0) != DistributedContext(world_size=2).rank_seed(0)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert worker_hydra_overrides() == list(WORKER_HYDRA_OVERRIDES)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR is not set: start multi-process training with torchrun"):
        setup("cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is outside 0..WORLD_SIZE-1=1"):
        setup("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        setup("cpu")
