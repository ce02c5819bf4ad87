"""A foreign env (tests/foreign_envs/toyforeign, gym-pusht conventions) through record -> train -> evaluate -> export ->
closed loop with the project's own entry points and no glue: the bundle must match the checkpoint in every episode."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from apps.closed_loop import BundleRunConfig, BundleVectorPolicy
from apps.evaluation import EvaluateConfig, evaluate_bundle, evaluate_checkpoint
from apps.recording import CollectConfig, collect
from deploy.export import ExportConfig, export_checkpoint
from deploy.export.env_info import read_env_info
from deploy.export.parity import tolerances
from envs.config import EnvConfig
from tests.deploy.bundle_factory import ramp_bundle
from training.checkpoints import checkpoint_to_resume
from training.datasets.observations import ObservationMapping, ObservationMappingError, action_shape
from training.imitation.config import config_from_dict
from training.imitation.trainer import run

pytestmark = pytest.mark.slow  # record -> train -> evaluate -> export -> closed loop, end to end

FOREIGN_DIR = Path(__file__).resolve().parents[1] / "foreign_envs"
TOY_ID = "toyforeign/Reach2D-v0"
EPISODES = 6


def toy_env(obs_type: str = "state", pixels_as: str = "dict", **extra) -> dict:
    return {"id": TOY_ID, "import_modules": ["toyforeign"], "kwargs": {"obs_type": obs_type, "pixels_as": pixels_as},
            **extra}


def run_pipeline(tmp_path: Path, env: dict, collect_kwargs: dict, bundle_run=None):
    """collect -> train a small MLP -> evaluate -> export -> closed loop; returns (checkpoint, bundle) results."""
    data = tmp_path / "data"
    recording = dict(env_id=env["id"], env_kwargs=dict(env["kwargs"]), import_modules=list(env["import_modules"]),
                     policy_factory="toyforeign:make_scripted_policy", n_episodes=12, output_dir=str(data),
                     progress=False)
    collect(CollectConfig(**{**recording, **collect_kwargs}))
    train_cfg = config_from_dict({
        "env": env, "dataset": {"root": str(data)}, "steps": 300, "batch_size": 32, "seed": 0, "torch_threads": 1,
        "policy": {"type": "mlp", "hidden_dims": [64, 64], "chunk_size": 4, "n_action_steps": 2, "n_obs_steps": 1,
                   "optimizer_lr": 3e-3},
        "optim": {"warmup_steps": 10}, "eval": {"final_episodes": 0}, "checkpoint": {"every_steps": 300},
        "logger": {"mode": "disabled"}, "log_every": 100, "progress_bar": False, "amp": False, "device": "cpu",
    })
    run_dir = tmp_path / "train"
    train_cfg.run_dir = str(run_dir)
    run(train_cfg, default_run_dir=run_dir)
    checkpoint = checkpoint_to_resume(run_dir)
    ckpt_result = evaluate_checkpoint(EvaluateConfig(checkpoint=str(checkpoint), episodes=EPISODES, n_envs=1,
                                                     video_episodes=0), tmp_path / "eval")
    bundle = tmp_path / "bundle"
    exported = export_checkpoint(ExportConfig(checkpoint=str(checkpoint), output=str(bundle), optimize=False,
                                              parity_samples=2))
    bundle_result = evaluate_bundle(EvaluateConfig(checkpoint=str(bundle), episodes=EPISODES, n_envs=1,
                                                   video_episodes=0), tmp_path / "eval_bundle",
                                    bundle_run or BundleRunConfig())
    return ckpt_result, exported, bundle_result


def test_foreign_env_state_pipeline_bundle_matches_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(FOREIGN_DIR)  # the user's env package is importable from the directory they work in
    monkeypatch.setenv("WANDB_MODE", "disabled")
    env = toy_env("state", action_names=["x", "y"], action_units=["px", "px"])
    ckpt, exported, bundle = run_pipeline(tmp_path, env, {})

    outcomes = [r.success for r in ckpt.records]
    assert outcomes == [r.success for r in bundle.records]  # the bundle does what the checkpoint does, per episode
    assert sum(outcomes) >= EPISODES // 2, f"the tiny policy should reach most goals, got {outcomes}"
    assert bundle.metadata["runner"]["faults"] == {}, bundle.metadata["runner"]  # no range or rate-limit holds

    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    action, source = manifest["action"], manifest["source"]
    assert action["names"] == ["x", "y"] and action["units"] == ["px", "px"]
    assert action["lower"] == [0.0, 0.0] and action["upper"] == [64.0, 64.0]  # the action space's bounds
    assert manifest["control"]["frequency_hz"] == 10.0  # the env's metadata["render_fps"]
    assert action["initial_from"] == {"key": "observation.state", "indices": [0, 1]}
    assert source["env_metadata"]["control_hz"] == "env metadata['render_fps']"
    assert source["env_metadata"]["action_names"] == "env config"
    parity = source["parity"]
    # Actions in pixels: judged relative to each dimension's 64-px range, not by an absolute 1e-4.
    assert parity["mode"] == "relative" and parity["passed"]
    assert parity["tolerance"] == pytest.approx([64 * parity["rtol"]] * 2)
    assert exported.parity.passed


def test_state_policy_on_env_with_single_array_pixels_and_unknown_metadata(tmp_path, monkeypatch):
    """gym-pusht's form: obs['pixels'] is one Box image; a state-only policy trains, exports (no 'Box has no
    spaces'), and with no action names anywhere the manifest says "unknown" and the closed loop needs initial_action."""
    monkeypatch.chdir(FOREIGN_DIR)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    env = toy_env("pixels_agent_pos", "array")
    ckpt, exported, bundle = run_pipeline(tmp_path, env, {}, BundleRunConfig(initial_action=[32.0, 32.0]))

    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert [f["key"] for f in manifest["observation"]] == ["observation.state"]
    assert manifest["action"]["units"] == ["unknown", "unknown"]
    assert manifest["action"]["names"] == ["unknown_0", "unknown_1"]
    assert manifest["action"].get("initial_from") is None
    assert manifest["source"]["env_metadata"]["initial_from"].startswith("none")
    assert manifest["source"]["env_metadata"]["action_units"] == "unknown"
    assert len(bundle.records) == len(ckpt.records) == EPISODES


def test_bundle_without_initial_from_needs_initial_action(tmp_path):
    """What a foreign bundle needs in closed loop when its state does not measure the commanded joints."""
    bundle = ramp_bundle(tmp_path / "b", initial_from=False)
    with pytest.raises(ValueError, match=r"no action.initial_from.*bundle.initial_action=\[2 values in"):
        BundleVectorPolicy(bundle, 1)
    with pytest.raises(ValueError, match="leave bundle.initial_action unset"):
        BundleVectorPolicy(ramp_bundle(tmp_path / "measured"), 1, BundleRunConfig(initial_action=[0.0, 0.0]))
    policy = BundleVectorPolicy(bundle, 1, BundleRunConfig(initial_action=[0.5, 0.5]))
    try:
        policy.reset(0)
        actions = policy({"agent_pos": np.zeros((1, 2), np.float32)})
        assert actions.shape == (1, 2) and np.isfinite(actions).all()
    finally:
        policy.close()


def test_gym_pusht_state_pipeline_when_installed(tmp_path, monkeypatch):
    """The same path on gym-pusht itself (actions in pixels, 0-512), when it is installed."""
    pytest.importorskip("gym_pusht", reason="gym-pusht is not installed (pip install cerebellum[gym-pusht])")
    monkeypatch.chdir(FOREIGN_DIR)  # for the stand-in recording policy toyforeign:make_sweep_policy
    monkeypatch.setenv("WANDB_MODE", "disabled")
    env = {"id": "gym_pusht/PushT-v0", "import_modules": ["gym_pusht"],
           "kwargs": {"obs_type": "environment_state_agent_pos"}, "max_episode_steps": 40,
           "action_names": ["x", "y"], "action_units": ["px", "px"]}
    ckpt, exported, bundle = run_pipeline(tmp_path, env, dict(
        env_kwargs={"obs_type": "environment_state_agent_pos", "max_episode_steps": 40},
        policy_factory="toyforeign:make_sweep_policy", n_episodes=4, keep_only_successful=False))
    assert [r.success for r in ckpt.records] == [r.success for r in bundle.records]
    assert [r.length for r in ckpt.records] == [r.length for r in bundle.records]
    parity = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["source"]["parity"]
    assert parity["mode"] == "relative" and parity["tolerance"] == pytest.approx([512 * parity["rtol"]] * 2)
    assert exported.manifest.control.frequency_hz == 10.0


# ------------------------------------------------------------------------------------------------ the mapping alone
def _space(**entries):
    import gymnasium as gym

    return gym.spaces.Dict(entries)


def _box(*shape, dtype=np.float32):
    import gymnasium as gym

    return gym.spaces.Box(0, 255 if dtype == np.uint8 else 1, shape, dtype)


def test_mapping_features_and_observations_agree_for_every_pixels_form():
    mapping = ObservationMapping(pixels_camera="cam0")
    single = _space(agent_pos=_box(2), pixels=_box(8, 6, 3, dtype=np.uint8))
    specs = mapping.features(single)
    assert list(specs) == ["observation.state", "observation.images.cam0"]
    assert specs["observation.images.cam0"].shape == (3, 8, 6)
    assert specs["observation.images.cam0"].dataset_feature()["shape"] == [8, 6, 3]
    obs = {"agent_pos": np.ones(2), "pixels": np.zeros((8, 6, 3), np.uint8)}
    out = mapping(obs)
    assert {k: v.shape for k, v in out.items()} == {k: s.shape for k, s in specs.items()}
    cams = _space(pixels=_space(top=_box(4, 4, 3, dtype=np.uint8), wrist=_box(4, 4, 3, dtype=np.uint8)),
                  environment_state=_box(3), agent_pos=_box(2))
    assert list(ObservationMapping().features(cams)) == [
        "observation.state", "observation.environment_state", "observation.images.top", "observation.images.wrist"]


def test_mapping_obs_key_map_places_and_drops_keys():
    mapping = ObservationMapping.from_env_config({"obs_key_map": {"qpos": "observation.state", "goal": None,
                                                                  "cam": "observation.images.front"}})
    space = _space(qpos=_box(3), goal=_box(2), cam=_box(4, 5, 3, dtype=np.uint8))
    specs = mapping.features(space)
    assert list(specs) == ["observation.state", "observation.images.front"]
    out = mapping({"qpos": np.zeros(3), "goal": np.zeros(2), "cam": np.zeros((4, 5, 3), np.uint8)})
    assert sorted(out) == ["observation.images.front", "observation.state"]
    assert out["observation.state"].dtype == np.float32


@pytest.mark.parametrize("mapping, space, message", [
    (ObservationMapping(), {"qpos": (3,)}, r"observation key 'qpos' has no LeRobot key: map it with env.obs_key_map"),
    (ObservationMapping(pixels_camera=""), {"pixels": (4, 4, 3)}, r"no usable camera name .*env.pixels_camera"),
    (ObservationMapping(), {"pixels": (4, 4)}, r"'pixels'.*must be uint8 of shape \(H, W, 3\)"),
])
def test_mapping_mismatches_are_one_clear_line(mapping, space, message):
    entries = {k: _box(*s, dtype=np.uint8 if k == "pixels" else np.float32) for k, s in space.items()}
    with pytest.raises(ObservationMappingError, match=message) as err:
        mapping.features(_space(**entries))
    assert "\n" not in str(err.value)


def test_mapping_refuses_bad_key_maps_and_non_box_actions():
    with pytest.raises(ObservationMappingError, match="expected a LeRobot observation key"):
        ObservationMapping.from_env_config({"obs_key_map": {"qpos": "state"}})
    with pytest.raises(ObservationMappingError, match="maps both 'a' and 'b' to 'observation.state'"):
        ObservationMapping.from_env_config({"obs_key_map": {"a": "observation.state", "b": "observation.state"}})
    with pytest.raises(ObservationMappingError, match=r"env toy: the action space is Discrete\(3\), expected a 1-D"):
        action_shape(gym.spaces.Discrete(3), "env toy")
    with pytest.raises(ObservationMappingError, match="not a Dict"):
        ObservationMapping().features(_box(3))


# ------------------------------------------------------------------------------------------------ export metadata
def test_env_info_takes_metadata_from_the_config_when_the_env_has_none(monkeypatch):
    monkeypatch.chdir(FOREIGN_DIR)
    info = read_env_info(EnvConfig.from_any(toy_env("state", control_hz=5.0)))
    assert info.control_hz == 5.0 and info.origins["control_hz"] == "env config"  # the config wins over render_fps
    assert info.action_units == ("unknown", "unknown") and info.origins["action_units"] == "unknown"
    assert info.initial_from is None  # unnamed actions: nothing says the state measures them
    assert info.features["observation.environment_state"].units == "unknown"  # not "SI": not our task
    info = read_env_info(EnvConfig.from_any(toy_env("state", action_names=["x", "y"])))
    assert info.control_hz == 10.0 and info.origins["control_hz"] == "env metadata['render_fps']"
    assert info.initial_from is not None and info.features["observation.state"].names == ("x", "y")
    with pytest.raises(ValueError, match=r"env.action_units=\['px'\] must give one non-empty name per action "
                                         r"dimension \(2\)"):
        read_env_info(EnvConfig.from_any(toy_env("state", action_units=["px"])))


def test_parity_tolerance_is_relative_to_each_action_range_unless_atol_is_given():
    mode, tol = tolerances([0.0, -1.0], [512.0, 1.0], 2e-5, None)
    assert mode == "relative" and tol.tolist() == pytest.approx([512 * 2e-5, 2 * 2e-5])
    mode, tol = tolerances([0.0, -1.0], [512.0, 1.0], 2e-5, 1e-3)
    assert mode == "absolute" and tol.tolist() == [1e-3, 1e-3]
    for bad in (dict(parity_rtol=0.0), dict(parity_rtol=1.5), dict(parity_atol=-1.0)):
        with pytest.raises(ValueError, match="parity_"):
            ExportConfig(checkpoint="c", output="o", **bad).validate()
