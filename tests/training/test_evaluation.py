"""Evaluation: Wilson interval, seeded episodes independent of n_envs, per-env and batched policies, videos, JSON."""

import json

import av
import gymnasium as gym
import numpy as np
import pytest

from envs.config import EnvConfig, make_env
from envs.experts import make_expert
from training import evaluation
from training.evaluation import (
    evaluate,
    make_eval_envs,
    wilson_interval,
    write_results,
)

REACH = EnvConfig(id="cerebellum/Reach-v0", max_episode_steps=40)


# Reference values computed by hand from the Wilson score formula with z = 1.959964 (they match published tables,
# e.g. 8/10 -> 0.490-0.943, 0/10 -> 0-0.278).
@pytest.mark.parametrize(
    "successes, n, low, high",
    [(8, 10, 0.49016, 0.94331), (0, 10, 0.0, 0.27753), (10, 10, 0.72247, 1.0), (50, 100, 0.40383, 0.59617),
     (190, 200, 0.91042, 0.97262)],
)
def test_wilson_interval_matches_hand_computed_values(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=2e-5)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(5, 4)


def experts(n):
    local = make_env(REACH)
    return [make_expert(local) for _ in range(n)]


def test_expert_evaluation_is_seeded_per_episode_and_independent_of_n_envs(tmp_path):
    runs = []
    for n_envs in (1, 3):
        envs = make_eval_envs(REACH, n_envs)
        runs.append(evaluate(envs, experts(n_envs), episodes=5, seed=11))
        envs.close()
    one, three = runs
    assert [r.to_dict() for r in one.records] == [r.to_dict() for r in three.records]
    assert [r.seed for r in one.records] == [11, 12, 13, 14, 15]
    assert one.success_rate == 1.0  # the scripted expert solves Reach
    assert all(r.length == 40 for r in one.records)

    path = write_results(one, tmp_path / "results.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    assert data["env_id"] == "cerebellum/Reach-v0"
    assert (data["episodes"], data["seed"], data["successes"]) == (5, 11, 5)
    assert data["success_rate"] == 1.0
    assert data["success_ci95"] == pytest.approx(list(wilson_interval(5, 5)))
    returns = [e["return"] for e in data["per_episode"]]
    assert data["mean_return"] == pytest.approx(np.mean(returns))
    assert data["std_return"] == pytest.approx(np.std(returns))
    assert data["mean_length"] == 40.0 and data["physics_errors"] == 0
    assert set(data["per_episode"][0]) == {"episode", "seed", "success", "return", "length", "physics_error"}
    assert data["videos"] == [] and isinstance(data["wall_time_s"], float)


class HoldPolicy:
    """Batched, stateless: commands the current joint positions; counts per-env resets."""

    def __init__(self):
        self.resets = []

    def __call__(self, obs):
        return obs["agent_pos"].copy()

    def reset(self, env_index):
        self.resets.append(env_index)


@pytest.mark.slow
def test_batched_policy_gets_one_reset_per_episode_and_failure_is_counted(tmp_path, capfd):
    envs = make_eval_envs(REACH, 2)
    policy = HoldPolicy()
    result = evaluate(envs, policy, episodes=5, seed=0, video_episodes=1, video_dir=tmp_path / "videos",
                      progress=True)
    envs.close()
    err = capfd.readouterr().err  # no terminal here: one plain line, no redrawn frames
    assert "\r" not in err and "evaluate cerebellum/Reach-v0: 5/5 episodes (100%)" in err and "success=0/5" in err
    assert len(policy.resets) == 5 and set(policy.resets) <= {0, 1}
    assert result.success_rate == 0.0  # holding still never reaches a target 14+ cm away
    assert result.success_ci95 == pytest.approx(wilson_interval(0, 5))
    assert all(r.episode_return < 0 for r in result.records)
    (video,) = result.videos
    with av.open(video) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 41  # the reset frame + one per step


def test_bad_policy_output_and_arguments_are_refused(tmp_path):
    envs = make_eval_envs(REACH, 2)
    with pytest.raises(ValueError, match=r"actions of shape \(6,\), expected \(2, 6\)"):
        evaluate(envs, lambda obs: np.zeros(6, np.float32), episodes=2)
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        evaluate(envs, HoldPolicy(), episodes=0)
    with pytest.raises(ValueError, match="needs a video_dir"):
        evaluate(envs, HoldPolicy(), episodes=1, video_episodes=1)
    with pytest.raises(ValueError, match="2 sub-envs"):
        evaluate(envs, experts(3), episodes=1)
    envs.close()
    autoreset = gym.vector.SyncVectorEnv([lambda: make_env(REACH)])
    with pytest.raises(ValueError, match="autoreset_mode=DISABLED"):
        evaluate(autoreset, HoldPolicy(), episodes=1)
    autoreset.close()


# ---------------------------------------------------------------------------------------------- parallel evaluation
@pytest.mark.slow
def test_async_evaluation_in_worker_processes_equals_the_synchronous_one(tmp_path):
    runs = {}
    # Synchronous first: this process has rendered before the workers start (forked workers would hang in EGL).
    for async_envs in (False, True):
        envs = make_eval_envs(REACH, 2, async_envs)
        assert type(envs) is (gym.vector.AsyncVectorEnv if async_envs else gym.vector.SyncVectorEnv)
        runs[async_envs] = evaluate(envs, experts(2), episodes=5, seed=21, video_episodes=1,
                                    video_dir=tmp_path / str(async_envs))
        envs.close()
    sync, parallel = runs[False], runs[True]
    assert [r.to_dict() for r in parallel.records] == [r.to_dict() for r in sync.records]
    assert [r.seed for r in parallel.records] == [21, 22, 23, 24, 25]
    frames = []
    for result in (sync, parallel):
        (video,) = result.videos
        with av.open(video) as container:
            frames.append([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert len(frames[0]) == len(frames[1]) == 41
    assert all(np.array_equal(a, b) for a, b in zip(*frames))  # the same episode, rendered in a worker


def test_async_auto_follows_the_cores_and_falls_back_to_in_process_envs(monkeypatch):
    monkeypatch.setattr(evaluation.os, "sched_getaffinity", lambda pid: {0})
    assert not evaluation.use_async_envs(None, 4)  # one core: nothing to run in parallel
    monkeypatch.setattr(evaluation.os, "sched_getaffinity", lambda pid: {0, 1})
    assert evaluation.use_async_envs(None, 4) and not evaluation.use_async_envs(None, 1)
    assert not evaluation.use_async_envs(False, 4) and evaluation.use_async_envs(True, 2)

    def cannot_start(*args, **kwargs):
        raise OSError("no more processes")

    monkeypatch.setattr(evaluation.gym.vector, "AsyncVectorEnv", cannot_start)
    with pytest.warns(RuntimeWarning, match="could not start 2 evaluation worker processes .*no more processes"):
        envs = make_eval_envs(REACH, 2, None)
    assert isinstance(envs, gym.vector.SyncVectorEnv)
    result = evaluate(envs, experts(2), episodes=2, seed=0)
    envs.close()
    assert result.success_rate == 1.0
