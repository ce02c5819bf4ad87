"""Collection in any registered env (vectorized, keep-only-successful, cameras), replay, inspect and the scripts."""

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATASET_TESTS = REPO / "tests" / "training" / "datasets"  # the toy env shared with the dataset tests
sys.path.insert(0, str(DATASET_TESTS))

import toy_env_for_datasets as toy  # noqa: E402

from apps.recording import CollectConfig, collect, features_from_env  # noqa: E402
from training.cli import compose, to_object  # noqa: E402
from training.datasets import DatasetMeta, load_images, load_numeric  # noqa: E402
from training.datasets.replay import replay_episode  # noqa: E402
from training.datasets.summary import describe  # noqa: E402
from training.datasets.video import decode_video  # noqa: E402


def config(root: Path, **kw) -> CollectConfig:
    base = dict(env_id=toy.ENV_ID, import_modules=["toy_env_for_datasets"],
                policy_factory="toy_env_for_datasets:make_toy_expert", n_episodes=8, output_dir=str(root),
                commit_every=4, progress=False, seed=3)
    base.update(kw)
    return CollectConfig(**base)


@pytest.mark.slow
def test_vector_envs_give_the_same_dataset_and_keep_only_successes(tmp_path):
    one = collect(config(tmp_path / "one"))
    two = collect(config(tmp_path / "two", n_envs=2))  # AsyncVectorEnv, episodes finish out of order
    assert one.episodes == two.episodes == 8 and one.attempts > 8  # some far targets fail and are dropped
    m1, m2 = DatasetMeta(tmp_path / "one"), DatasetMeta(tmp_path / "two")
    assert m1.episode_column("success").all()
    seeds = m1.episode_column("seed").tolist()
    assert seeds == m2.episode_column("seed").tolist() and seeds == sorted(seeds) and seeds[0] >= 3
    a, b = load_numeric(m1, ["action", "observation.state"]), load_numeric(m2, ["action", "observation.state"])
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # Each recorded episode is the env's own rollout from its seed: the target is what reset() draws.
    env = gym.make(toy.ENV_ID)
    target = load_numeric(m1, ["observation.environment_state"])["observation.environment_state"]
    for ep, seed in enumerate(seeds):
        obs, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(target[m1.episode(ep)["dataset_from_index"]], obs["environment_state"])
    done = load_numeric(m1, ["next.done"])["next.done"]
    assert done.sum() == 8 and all(done[m1.episode(e)["dataset_to_index"] - 1] for e in range(8))
    assert m1.fps == 10 and m1.features["action"]["names"] == ["vx", "vy"]
    assert m1.units == {"action": ["m/s", "m/s"]}


def test_all_rollouts_kept_when_failures_allowed(tmp_path):
    collect(config(tmp_path / "ds", keep_only_successful=False))
    meta = DatasetMeta(tmp_path / "ds")
    assert meta.episode_column("seed").tolist() == list(range(3, 11))
    success = meta.episode_column("success")
    assert not success.all() and success.any()
    failed = int(np.flatnonzero(~success)[0])
    assert meta.episode(failed)["length"] == 20  # truncated at max_episode_steps


def test_camera_stream_and_replay(tmp_path):
    root = tmp_path / "ds"
    collect(config(root, n_episodes=3, env_kwargs={"obs_mode": "state_pixels"}, cameras=["top"]))
    meta = DatasetMeta(root)
    assert meta.features["observation.images.top"]["shape"] == [32, 32, 3]
    images = load_images(meta, "observation.images.top", in_memory=True)
    numeric = load_numeric(meta, ["observation.state", "observation.environment_state"])
    env = toy.ToyReachEnv(obs_mode="state_pixels")
    expected = []
    for pos, target in zip(numeric["observation.state"], numeric["observation.environment_state"]):
        env.pos, env.target = pos.astype(np.float64), target.astype(np.float64)
        expected.append(env._image().transpose(2, 0, 1))
    assert np.abs(images.astype(np.int16) - np.stack(expected)).mean() < 3.0

    result = replay_episode(root, 1, tmp_path / "replay.mp4")
    assert result.reproduced and result.replayed_success and result.max_state_error == 0.0
    assert result.steps == meta.episode(1)["length"]
    frames = decode_video(tmp_path / "replay.mp4", meta.fps, result.steps)
    assert frames.shape == (result.steps, 32, 32, 3)
    text = describe(meta)
    assert "episodes  3" in text and "observation.images.top" in text and "q99" in text and "av1" in text


def test_env_without_requested_camera(tmp_path):
    env = gym.make(toy.ENV_ID)
    with pytest.raises(ValueError, match=r"cameras \['top'\] are not in obs\['pixels'\] \(available: \[\]\)"):
        features_from_env(env, True, ["top"])
    with pytest.raises(ValueError, match="policy_factory: module .* has no attribute 'nope'"):
        collect(config(tmp_path / "x", policy_factory="toy_env_for_datasets:nope"))


@pytest.mark.slow
def test_scripts_collect_inspect_replay(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DATASET_TESTS), os.environ.get("PYTHONPATH", "")])}
    root = tmp_path / "ds"
    overrides = [f"env_id={toy.ENV_ID}", "import_modules=[toy_env_for_datasets]",
                 "policy_factory=toy_env_for_datasets:make_toy_expert", "n_episodes=3", f"output_dir={root}",
                 f"hydra.run.dir={tmp_path / 'hydra'}"]
    run = subprocess.run([sys.executable, str(REPO / "scripts/collect.py"), *overrides], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 episodes" in run.stdout
    # Progress into a pipe: a plain line, no redrawn bar.
    assert "\r" not in run.stderr and f"collect {toy.ENV_ID}: 3/3 episodes (100%)" in run.stderr
    typo = subprocess.run([sys.executable, str(REPO / "scripts/collect.py"), "n_episode=3"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert typo.returncode != 0 and "n_episode" in typo.stderr
    shown = subprocess.run([sys.executable, str(REPO / "scripts/inspect_dataset.py"), str(root)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "frames" in shown.stdout and "observation.state" in shown.stdout
    replay = subprocess.run([sys.executable, str(REPO / "scripts/replay.py"), f"root={root}", "episodes=[0,2]",
                             f"video_dir={tmp_path / 'videos'}", f"hydra.run.dir={tmp_path / 'hydra2'}"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert replay.stdout.count("reproduced") == 2 and (tmp_path / "videos/episode_000002.mp4").exists()


FOREIGN_DIR = REPO / "tests" / "foreign_envs"


@pytest.mark.slow
@pytest.mark.parametrize("pixels_as", ["dict", "array"])
def test_script_records_a_foreign_env_in_both_pixel_forms(tmp_path, pixels_as):
    """collect.py on a foreign env whose constructor takes none of our options: collect.yaml's default obs_mode is
    not passed to it, its module and the policy factory import from the current directory (no PYTHONPATH), and
    obs['pixels'] as a dict of cameras (gym-aloha) or one array (gym-pusht) records as observation.images.top."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    root = tmp_path / "ds"
    overrides = ["env_id=toyforeign/Reach2D-v0", "import_modules=[toyforeign]",
                 "policy_factory=toyforeign:make_scripted_policy", "+env_kwargs.obs_type=pixels_agent_pos",
                 f"+env_kwargs.pixels_as={pixels_as}", "cameras=[top]", "n_episodes=3", f"output_dir={root}",
                 "progress=false", "video.codec=libx264", f"hydra.run.dir={tmp_path / 'hydra'}"]
    run = subprocess.run([sys.executable, str(REPO / "scripts/collect.py"), *overrides], env=env, cwd=FOREIGN_DIR,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 episodes" in run.stdout
    meta = DatasetMeta(root)
    assert meta.fps == 10 and meta.total_episodes == 3
    assert meta.features["observation.images.top"]["shape"] == [32, 32, 3]
    assert meta.features["observation.state"]["shape"] == [2] and meta.features["action"]["shape"] == [2]
    assert "observation.environment_state" not in meta.features
    frames = load_images(meta, "observation.images.top", in_memory=True)
    assert frames.shape == (meta.total_frames, 3, 32, 32) and frames.std() > 0
    # The recorder keeps the env config it recorded with (no obs_mode), so replay rebuilds the same env.
    assert meta.collection["env_kwargs"] == {"obs_mode": "state", "obs_type": "pixels_agent_pos", "pixels_as": pixels_as}


def test_foreign_env_refuses_a_pixels_obs_mode(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FOREIGN_DIR))
    cfg = CollectConfig(env_id="toyforeign/Reach2D-v0", import_modules=["toyforeign"],
                        policy_factory="toyforeign:make_scripted_policy", env_kwargs={"obs_mode": "state_pixels"},
                        n_episodes=1, output_dir=str(tmp_path / "ds"), progress=False)
    with pytest.raises(ValueError, match=r"env_kwargs.obs_mode='state_pixels': 'toyforeign/Reach2D-v0' is a foreign env"):
        collect(cfg)
    env = gym.make("toyforeign/Reach2D-v0", obs_type="pixels_agent_pos", pixels_as="array")
    with pytest.raises(ValueError, match=r"cameras \['front'\] are not in obs\['pixels'\] \(available: \['top'\]\)"):
        features_from_env(env, True, ["front"])
    assert "observation.images.front" in features_from_env(env, True, ["front"], pixels_camera="front")


def test_missing_policy_module_names_the_search_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        CollectConfig(policy_factory="my_missing_pusher:make", output_dir=str(tmp_path / "ds")).resolve()
    assert "policy_factory: cannot import module 'my_missing_pusher'" in str(err.value)
    assert str(tmp_path) in str(err.value) and "sys.path=" in str(err.value)


@pytest.mark.slow
def test_script_records_gym_pusht_when_installed(tmp_path):
    """The same path on the real gym-pusht (its pixels are one 96x96 array), when the optional package is installed."""
    pytest.importorskip("gym_pusht", reason="gym-pusht is optional (pip install cerebellum[gym-pusht])")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    root = tmp_path / "ds"
    overrides = ["env_id=gym_pusht/PushT-v0", "import_modules=[gym_pusht]", "policy_factory=toyforeign:make_sweep_policy",
                 "+env_kwargs.obs_type=pixels_agent_pos", "+env_kwargs.max_episode_steps=15", "cameras=[top]",
                 "keep_only_successful=false", "n_episodes=2", f"output_dir={root}", "progress=false",
                 "video.codec=libx264", f"hydra.run.dir={tmp_path / 'hydra'}"]
    run = subprocess.run([sys.executable, str(REPO / "scripts/collect.py"), *overrides], env=env, cwd=FOREIGN_DIR,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = DatasetMeta(root)
    assert meta.fps == 10 and meta.total_episodes == 2 and meta.total_frames == 30
    assert meta.features["observation.images.top"]["shape"] == [96, 96, 3]
    assert meta.features["observation.state"]["shape"] == [2] and meta.features["action"]["shape"] == [2]


def test_recorder_places_keys_through_the_shared_mapping(tmp_path, monkeypatch):
    """Another Dict key reaches the dataset through obs_key_map (the env config's mapping); an unplaced one is named."""
    monkeypatch.syspath_prepend(str(FOREIGN_DIR))
    import toyforeign

    class QposEnv(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = gym.spaces.Dict({"qpos": env.observation_space["agent_pos"],
                                                      "goal": env.observation_space["environment_state"]})

        def observation(self, obs):
            return {"qpos": obs["agent_pos"], "goal": obs["environment_state"]}

    env = QposEnv(toyforeign.Reach2DEnv())
    with pytest.raises(ValueError, match=r"observation key 'goal' has no LeRobot key: map it with env.obs_key_map"):
        features_from_env(env, True, [])
    features = features_from_env(env, True, [], obs_key_map={"qpos": "observation.state", "goal": None})
    assert list(features)[:2] == ["observation.state", "action"]
    features = features_from_env(env, True, [], obs_key_map={"qpos": "observation.state",
                                                             "goal": "observation.environment_state"})
    assert features["observation.environment_state"]["shape"] == [2]


def test_env_group_records_as_train_and_eval_build_the_env(tmp_path, monkeypatch):
    """collect.py takes the `env` group of train/eval: env=foreign (or env=gym_pusht) sets the env fields."""
    runpy.run_path(str(REPO / "scripts/collect.py"), run_name="schemas")  # registers collect_schema and env/base_env

    monkeypatch.chdir(FOREIGN_DIR)  # toyforeign and the policy factory import from the current directory
    cfg = to_object(compose("collect", [
        "env=foreign", "env.id=toyforeign/Reach2D-v0", "env.import_modules=[toyforeign]",
        "+env.kwargs.obs_type=pixels_agent_pos", "+env.kwargs.pixels_as=array", "env.pixels_camera=front",
        "policy_factory=toyforeign:make_scripted_policy", "cameras=[front]", "n_episodes=2",
        f"output_dir={tmp_path / 'ds'}", "progress=false", "video.codec=libx264"]))
    result = collect(cfg)
    assert result.episodes == 2
    meta = DatasetMeta(tmp_path / "ds")
    assert "observation.images.front" in meta.features
    assert meta.collection["env_kwargs"] == {"obs_type": "pixels_agent_pos", "pixels_as": "array"}
    assert meta.collection["import_modules"] == ["envs", "toyforeign"]
    # Our options on a foreign env, and the env given twice, are refused with the option named.
    for extra, expected in ((["env.randomization.enabled=true"], "env.randomization.enabled=true"),
                            (["env_id=cerebellum/Reach-v0"], "give the env once"),
                            (["+env_kwargs.resolution=16"], "give constructor arguments in env.kwargs")):
        bad = to_object(compose("collect", ["env=foreign", "env.id=toyforeign/Reach2D-v0",
                                            "env.import_modules=[toyforeign]", f"output_dir={tmp_path / 'x'}", *extra]))
        with pytest.raises(ValueError, match=re.escape(expected)):
            bad.validate()
    # Our own task through its group: the same env (our options included) as env_id + env_kwargs would build.
    ours = to_object(compose("collect", ["env=reach", f"output_dir={tmp_path / 'y'}"]))
    ours.validate()
    assert ours.env_id == "cerebellum/Reach-v0" and ours.env_kwargs["obs_mode"] == "state"
    assert ours.env_kwargs["randomization"]["enabled"] is False
