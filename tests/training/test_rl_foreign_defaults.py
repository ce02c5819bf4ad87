"""RL on a foreign env starts from the generic configs/algo/<algo>.yaml, never another env's tuning, unless asked."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from training.cli import compose
from training.rl.config import finalize, register_configs

FOREIGN = ["env.id=toyforeign/Reach2D-v0", "env.import_modules=[toyforeign]", "logger.mode=disabled"]
register_configs()


def typed(overrides, search_dirs=()):
    return finalize(OmegaConf.to_object(compose("train_rl", overrides, search_dirs=search_dirs)))


def test_reach_keeps_its_tuning():
    cfg = typed(["env=reach", "algo=ppo"])
    assert cfg.tuned_for == "cerebellum/Reach-v0" and cfg.algo.n_envs == 8 and cfg.algo.learning_rate == 6e-4


def test_another_env_id_on_a_tuned_group_is_refused_with_the_way_out():
    with pytest.raises(ValueError) as err:
        typed(["algo=ppo", *FOREIGN])
    message = str(err.value)
    assert "tuned for cerebellum/Reach-v0, not env.id='toyforeign/Reach2D-v0'" in message
    assert "~algo/tuned" in message and "algo/tuned=<file>" in message
    with pytest.raises(ValueError, match="tuned for cerebellum/Reach-v0"):
        typed(["algo=sac", *FOREIGN])


def test_foreign_env_gets_the_generic_algo_settings():
    generic = OmegaConf.load(Path(__file__).resolve().parents[2] / "configs/algo/ppo.yaml")
    for overrides in (["algo=ppo", "~algo/tuned", *FOREIGN], ["env=gym_pusht", "algo=ppo", "logger.mode=disabled"]):
        cfg = typed(overrides)
        assert cfg.tuned_for is None
        assert (cfg.algo.n_envs, cfg.algo.learning_rate, cfg.algo.n_steps, cfg.algo.net_arch) == (
            generic.n_envs, generic.learning_rate, generic.n_steps, list(generic.net_arch))
        assert cfg.total_timesteps == 200_000  # train_rl.yaml's, not a tuned file's


def test_user_points_algo_tuned_at_their_own_file(tmp_path):
    (tmp_path / "algo/tuned").mkdir(parents=True)
    (tmp_path / "algo/tuned/my_ppo.yaml").write_text(
        "# @package _global_\ntuned_for: toyforeign/Reach2D-v0\nalgo:\n  n_envs: 3\n  learning_rate: 0.002\n"
        "total_timesteps: 1234\n")
    cfg = typed(["algo=ppo", "algo/tuned=my_ppo", *FOREIGN], search_dirs=[str(tmp_path)])
    assert (cfg.algo.n_envs, cfg.algo.learning_rate, cfg.total_timesteps) == (3, 0.002, 1234)
    assert cfg.tuned_for == "toyforeign/Reach2D-v0"


def test_configs_saved_before_issue_17_still_load():
    """Checkpoints store the env config; older ones call env.kwargs `task_kwargs` (merged into the schema on load)."""
    from training.imitation.config import config_from_dict as imitation_from_dict
    from training.rl.config import config_from_dict as rl_from_dict, to_dict

    saved = to_dict(typed(["env=reach", "algo=ppo", "+env.kwargs.reward_type=sparse"]))
    old_env = {k: v for k, v in saved["env"].items()
               if k not in ("kwargs", "import_modules", "pixels_camera", "obs_key_map", "action_names", "action_units")}
    old = {**{k: v for k, v in saved.items() if k != "tuned_for"}, "env": {**old_env, "task_kwargs": {"reward_type": "sparse"}}}
    assert rl_from_dict(old).env.kwargs == {"reward_type": "sparse"}
    imitation = imitation_from_dict({"policy": {"type": "mlp"}, "dataset": {"root": "data/x"},
                                     "env": {"id": "cerebellum/Reach-v0", "task_kwargs": {"reward_type": "sparse"}}})
    assert imitation.env.kwargs == {"reward_type": "sparse"}
