"""The quick-start pipeline end to end on a tiny budget: every stage's output exists and a rerun continues, not redoes."""

import json

import pytest

from apps.quickstart import PipelineConfig, run_pipeline


def tiny(tmp_path, **overrides):
    cfg = dict(demos=2, steps=20, batch_size=8, eval_episodes=2, n_envs=1, video_episodes=0, torch_threads=1,
               output_dir=str(tmp_path / "qs"))
    cfg.update(overrides)
    return PipelineConfig(**cfg)


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_a_rerun_reuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    lines = []
    result = run_pipeline(tiny(tmp_path), log=lines.append)
    out = tmp_path / "qs"
    assert result.demos == 2 and result.episodes == 2
    assert (out / "data" / "meta" / "info.json").is_file()
    assert result.checkpoint.parent == out / "train" / "checkpoints" and result.checkpoint.name.endswith("20")
    assert (out / "bundle" / "manifest.json").is_file() and (out / "bundle" / "policy.onnx").is_file()
    assert json.loads((out / "eval" / "results.json").read_text())["episodes"] == 2
    assert json.loads((out / "eval_bundle" / "results.json").read_text())["episodes"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint_success"] == result.checkpoint_success
    # The bundle at zero latency replays the checkpoint: every episode's outcome and length agree, and its return to
    # 1% (float32 ONNX vs torch differences grow through PickCube's contacts: 0.02-0.15% on this seed).
    checkpoint_eps = json.loads((out / "eval" / "results.json").read_text())["per_episode"]
    bundle_eps = json.loads((out / "eval_bundle" / "results.json").read_text())["per_episode"]
    for ckpt_ep, bundle_ep in zip(checkpoint_eps, bundle_eps, strict=True):
        assert (bundle_ep["seed"], bundle_ep["success"], bundle_ep["length"]) == (
            ckpt_ep["seed"], ckpt_ep["success"], ckpt_ep["length"])
        assert bundle_ep["return"] == pytest.approx(ckpt_ep["return"], rel=1e-2)
    returns = [e["return"] for e in checkpoint_eps]
    assert abs(returns[0] - returns[1]) > 2e-2 * max(returns)  # two different episodes, apart beyond the tolerance
    assert result.same_outcomes == 2 and summary["same_outcomes"] == 2

    # A second run finds every stage done: same checkpoint, bundle untouched.
    bundle_mtime = (out / "bundle" / "manifest.json").stat().st_mtime_ns
    lines.clear()
    again = run_pipeline(tiny(tmp_path), log=lines.append)
    assert again.checkpoint == result.checkpoint
    assert (out / "bundle" / "manifest.json").stat().st_mtime_ns == bundle_mtime
    assert any("already exported" in line for line in lines)

    # Another training config in the same output_dir is refused, naming what changed; nothing is overwritten.
    with pytest.raises(ValueError, match=r"steps: 20 -> 30"):
        run_pipeline(tiny(tmp_path, steps=30), log=lines.append)
    assert [p.name for p in (out / "train" / "checkpoints").glob("step_*")] == [result.checkpoint.name]


@pytest.mark.parametrize("field, value, message", [("demos", 0, "demos"), ("policy", {"chunk_size": 5}, "type")])
def test_bad_config_is_refused_before_any_work(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        run_pipeline(tiny(tmp_path, **{field: value}))
    assert not (tmp_path / "qs").exists()


def test_quickstart_yaml_mirrors_the_dataclass_and_refuses_typos():
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="quickstart_schema", node=PipelineConfig)
    configs = str(Path(__file__).resolve().parents[2] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = OmegaConf.to_object(compose("quickstart", overrides=["steps=7"]))
        with pytest.raises(ConfigCompositionException):
            compose("quickstart", overrides=["stepz=7"])
    assert isinstance(cfg, PipelineConfig) and cfg.steps == 7
    defaults = PipelineConfig()
    assert (cfg.env_id, cfg.demos, cfg.policy, cfg.eval_episodes) == (
        defaults.env_id, defaults.demos, defaults.policy, defaults.eval_episodes)


def test_pixel_variant_composes_to_a_camera_pipeline():
    """`+variant=pixels` is one switch: a camera, a camera backbone, and its own output directory."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="quickstart_schema", node=PipelineConfig)
    configs = str(Path(__file__).resolve().parents[2] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = OmegaConf.to_object(compose("quickstart", overrides=["+variant=pixels"]))
    assert cfg.camera == "front" and cfg.policy["vision_backbone"] == "cnn_small"
    assert cfg.policy["dim_model"] == PipelineConfig().policy["dim_model"]  # the variant adds to the default policy
    assert cfg.output_dir != PipelineConfig().output_dir
    cfg.validate()


@pytest.mark.slow
def test_pixel_pipeline_trains_on_joints_and_the_camera_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    policy = {**PipelineConfig().policy, "vision_backbone": "cnn_small", "backbone_norm": "group", "image_shift": 2}
    result = run_pipeline(tiny(tmp_path, camera="front", image_size=[32, 32], max_episode_steps=100, policy=policy),
                          log=lambda line: None)
    out = tmp_path / "qs"
    info = json.loads((out / "data" / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.front"]["shape"] == [32, 32, 3]
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    inputs = sorted(spec["key"] for spec in manifest["observation"])
    assert inputs == ["observation.images.front", "observation.state"]  # never the cube pose
    episodes = json.loads((out / "eval" / "results.json").read_text())["per_episode"]
    assert all(e["length"] <= 100 for e in episodes)  # the expert needs ~75 steps to lift the cube
    assert result.same_outcomes == result.episodes


def test_camera_and_env_kwargs_reach_recording_and_training_alike(tmp_path):
    from apps.quickstart import _collect_config, _train_config

    cfg = tiny(tmp_path, camera="front", image_size=[48, 64], max_episode_steps=90,
               env_kwargs={"target_height_range": [0.1, 0.1]})
    collect_cfg = _collect_config(cfg, tmp_path / "data")
    assert collect_cfg.cameras == ["front"]
    assert collect_cfg.env_kwargs == {"obs_mode": "state_pixels", "cameras": ["front"], "image_size": [48, 64],
                                      "max_episode_steps": 90, "target_height_range": [0.1, 0.1]}
    env = _train_config(cfg, tmp_path / "data").env
    assert (env.obs_mode, env.cameras, list(env.image_size), env.max_episode_steps) == (
        "state_pixels", ["front"], [48, 64], 90)
    assert env.kwargs == {"target_height_range": [0.1, 0.1]}
    # Before recording, the policy's inputs are left to the dataset; a bad camera value is refused up front.
    with pytest.raises(ValueError, match="image_size"):
        tiny(tmp_path, camera="front", image_size=[96]).validate()


def test_a_camera_run_over_a_dataset_without_that_camera_is_refused_by_name(tmp_path):
    from apps.quickstart import _policy_config

    meta = tmp_path / "data" / "meta"
    meta.mkdir(parents=True)
    (meta / "info.json").write_text(json.dumps({"features": {"observation.state": {"shape": [6]},
                                                             "observation.environment_state": {"shape": [11]}}}))
    with pytest.raises(ValueError, match=r"camera='front' but the dataset .* holds no 'observation.images.front'"):
        _policy_config(tiny(tmp_path, camera="front"), tmp_path / "data")
