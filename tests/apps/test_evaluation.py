"""scripts/eval.py's dispatch: any checkpoint kind through one loader table, results written, bad configs refused."""

import json

import pytest

from apps import evaluation
from apps.closed_loop import BundleRunConfig
from apps.evaluation import EvaluateConfig, check_evaluation_inputs, detect_kind, evaluate_checkpoint
from envs.config import EnvConfig, make_env
from envs.experts import make_expert
from training.checkpoints import save_checkpoint
from training.evaluation import LoadedPolicy

REACH = EnvConfig(id="cerebellum/Reach-v0", max_episode_steps=40)


def experts(n):
    local = make_env(REACH)
    return [make_expert(local) for _ in range(n)]


def test_checkpoint_dispatch_by_kind_writes_results(tmp_path, monkeypatch):
    """A trainer plugs its checkpoints into scripts/eval.py with one loader; unknown kinds are refused clearly."""
    ckpt = save_checkpoint(tmp_path / "run", step=3, kind="scripted", type="reach_expert",
                           config={"env": "reach"}, write_files=lambda d: None)

    def load(path, device):
        return LoadedPolicy(env=REACH, make_policy=experts, metadata={"kind": "scripted", "device": device})

    monkeypatch.setitem(evaluation.LOADERS, "scripted", load)
    cfg = EvaluateConfig(checkpoint=str(tmp_path / "run"), episodes=3, n_envs=2, video_episodes=0, randomization=True)
    result = evaluate_checkpoint(cfg, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["episodes"] == 3 and data["successes"] == result.successes
    assert data["metadata"]["kind"] == "scripted" and data["metadata"]["randomization"] is True
    assert data["metadata"]["checkpoint"] == str((tmp_path / "run").resolve())
    assert ckpt.exists()

    monkeypatch.delitem(evaluation.LOADERS, "scripted")
    with pytest.raises(ValueError, match="no evaluation loader for 'scripted' checkpoints"):
        evaluate_checkpoint(cfg, tmp_path / "out2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_checkpoint(EvaluateConfig(checkpoint=str(tmp_path / "missing")), tmp_path / "out3")


def test_evaluate_config_rejects_bad_values():
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        EvaluateConfig(checkpoint="x", episodes=0)
    with pytest.raises(ValueError, match="video_episodes must be >= 0"):
        EvaluateConfig(checkpoint="x", video_episodes=-1)


def test_kinds_are_read_from_the_path_and_bundle_settings_checked_only_for_bundles(tmp_path):
    save_checkpoint(tmp_path / "run", step=1, kind="scripted", type="x", config={}, write_files=lambda d: None)
    assert detect_kind(tmp_path / "run") == "scripted"
    with pytest.raises(ValueError, match="no evaluation loader for 'scripted' checkpoints"):
        check_evaluation_inputs(EvaluateConfig(checkpoint=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="no checkpoint given"):
        check_evaluation_inputs(EvaluateConfig())
    bad_run = BundleRunConfig(mode="sync", latency_ms=5.0)
    save_checkpoint(tmp_path / "rl", step=1, kind="rl", type="ppo", config={}, write_files=lambda d: None)
    assert check_evaluation_inputs(EvaluateConfig(checkpoint=str(tmp_path / "rl"), bundle=bad_run)) == "rl"
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="set bundle.mode=async"):
        check_evaluation_inputs(EvaluateConfig(checkpoint=str(tmp_path / "bundle"), bundle=bad_run))
    assert EvaluateConfig(checkpoint="x", bundle={"mode": "async"}).bundle == BundleRunConfig(mode="async")


def test_randomization_choice_visual_randomizes_only_what_a_camera_sees():
    from apps.evaluation import with_randomization
    from envs.randomization import DomainRandomizationConfig

    plain = EnvConfig(id="cerebellum/PickCube-v0")
    visual = with_randomization(plain, "visual").randomization
    assert visual == DomainRandomizationConfig.visual_only() and visual.enabled
    assert visual.friction_scale == (1.0, 1.0) and visual.action_delay_steps == (0, 0)
    assert visual.agent_pos_noise_std == 0.0 and visual.camera_rot_std_deg > 0 and visual.color_jitter > 0
    assert with_randomization(plain, None) is plain
    assert with_randomization(plain, True).randomization.enabled
    assert with_randomization(plain, True).randomization.friction_scale == plain.randomization.friction_scale
    with pytest.raises(ValueError, match=r"randomization must be one of null \(as trained\), true, false or 'visual', "
                                         r"got 'visible'"):
        EvaluateConfig(checkpoint="x", randomization="visible")
