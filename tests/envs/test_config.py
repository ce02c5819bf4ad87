"""EnvConfig and make_env with a foreign env: kwargs verbatim, import_modules, our options refused, the old task_kwargs name."""

from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from envs.config import EnvConfig, accepts_our_options, make_env
from envs.modules import import_object, import_user_module

FOREIGN_DIR = Path(__file__).resolve().parents[1] / "foreign_envs"
TOY_ID = "toyforeign/Reach2D-v0"


@pytest.fixture
def foreign_path(monkeypatch):
    monkeypatch.syspath_prepend(str(FOREIGN_DIR))


def test_foreign_env_gets_kwargs_verbatim_and_none_of_our_options(foreign_path):
    env = make_env({"id": TOY_ID, "import_modules": ["toyforeign"],
                    "kwargs": {"obs_type": "pixels_agent_pos", "pixels_as": "array", "resolution": 24}},
                   render_mode="rgb_array")
    assert isinstance(env.observation_space["pixels"], spaces.Box)
    assert env.observation_space["pixels"].shape == (24, 24, 3)
    assert env.unwrapped.render_mode == "rgb_array"
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].dtype == np.uint8
    assert not accepts_our_options(TOY_ID) and accepts_our_options("cerebellum/Reach-v0")
    # The dict form (gym-aloha): the same env through a kwarg; max_episode_steps is gymnasium.make's own.
    env = make_env({"id": TOY_ID, "import_modules": ["toyforeign"], "kwargs": {"obs_type": "pixels_agent_pos"},
                    "max_episode_steps": 5})
    assert isinstance(env.observation_space["pixels"], spaces.Dict) and env.spec.max_episode_steps == 5


def test_our_tasks_still_get_our_options_and_old_task_kwargs_load():
    old = EnvConfig.from_any({"id": "cerebellum/Reach-v0", "task_kwargs": {"reward_type": "sparse"}})
    assert old.kwargs == {"reward_type": "sparse"}
    assert old.make_kwargs()["reward_type"] == "sparse" and old.make_kwargs()["obs_mode"] == "state"
    env = make_env({"id": "cerebellum/Reach-v0", "task_kwargs": {"reward_type": "sparse"}, "control_hz": 20.0})
    assert env.unwrapped.reward_type == "sparse" and env.unwrapped.control_hz == 20.0
    same = EnvConfig.from_any({"task_kwargs": {"reward_type": "sparse"}, "kwargs": {"reward_type": "sparse"}})
    assert same.kwargs == {"reward_type": "sparse"}
    with pytest.raises(ValueError, match="task_kwargs is the old name of kwargs"):
        EnvConfig.from_any({"task_kwargs": {"reward_type": "sparse"}, "kwargs": {"reward_type": "dense"}})


@pytest.mark.parametrize("option, expected", [
    ({"randomization": {"enabled": True}}, "env.randomization.enabled=true"),
    ({"obs_mode": "state_pixels"}, "env.obs_mode='state_pixels'"),
    ({"cameras": ["top"]}, "env.cameras=['top']"),
    ({"image_size": [64, 64]}, "env.image_size=[64, 64]"),
    ({"timestep": 0.001}, "env.timestep=0.001"),
])
def test_foreign_env_refuses_our_options(foreign_path, option, expected):
    with pytest.raises(ValueError) as err:
        make_env({"id": TOY_ID, "import_modules": ["toyforeign"], **option})
    message = str(err.value)
    assert expected in message and "foreign env" in message and TOY_ID in message


def test_unknown_id_suggests_import_modules():
    with pytest.raises(ValueError, match=r"unknown environment id 'somelab/Arm-v0'.*env\.import_modules=\[somelab\]"):
        make_env({"id": "somelab/Arm-v0"})


def test_missing_module_names_the_search_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        make_env({"id": TOY_ID, "import_modules": ["no_such_sim_pkg"]})
    message = str(err.value)
    assert "env.import_modules: cannot import 'no_such_sim_pkg'" in message
    assert str(tmp_path) in message and "sys.path=" in message
    with pytest.raises(ValueError, match="not a Python module name"):
        make_env({"id": TOY_ID, "import_modules": ["gym-pusht"]})
    with pytest.raises(ValueError, match="env.import_modules must be a list of strings"):
        EnvConfig.from_any({"import_modules": "gym_pusht"})


def test_modules_resolve_from_the_current_directory(tmp_path, monkeypatch):
    """A user's policy file beside them imports by name, as `module:attr` suggests, without PYTHONPATH."""
    (tmp_path / "my_lab_policy_17.py").write_text("def make(env):\n    return 'policy'\n")
    (tmp_path / "my_lab_broken_17.py").write_text("import not_installed_dependency_17\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    assert import_object("my_lab_policy_17:make")(None) == "policy"
    with pytest.raises(ModuleNotFoundError, match="a module that 'my_lab_broken_17' imports is not installed"):
        import_user_module("my_lab_broken_17")
    with pytest.raises(AttributeError, match="policy_factory: module 'my_lab_policy_17' .* has no attribute 'nope'"):
        import_object("my_lab_policy_17:nope")


def test_metadata_and_mapping_fields_are_checked():
    cfg = EnvConfig.from_any({"pixels_camera": "front", "obs_key_map": {"qpos": "observation.state"},
                              "action_names": ["x", "y"], "action_units": ["px", "px"]})
    assert cfg.pixels_camera == "front" and cfg.obs_key_map == {"qpos": "observation.state"}
    with pytest.raises(ValueError, match="env.obs_key_map must map"):
        EnvConfig.from_any({"obs_key_map": {"qpos": 3}})
    with pytest.raises(ValueError, match="env.pixels_camera must be a camera name"):
        EnvConfig.from_any({"pixels_camera": ""})
    with pytest.raises(ValueError, match="env.action_units must be a list"):
        EnvConfig.from_any({"action_units": "px"})


def test_ready_made_gym_pusht_config_when_installed():
    """configs/env/gym_pusht.yaml through make_env, when the optional gym-pusht is installed."""
    pytest.importorskip("gym_pusht", reason="gym-pusht is optional (pip install cerebellum[gym-pusht])")
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.load(FOREIGN_DIR.parents[1] / "configs/env/gym_pusht.yaml"))
    data.pop("defaults")
    env = make_env(data, render_mode="rgb_array")
    assert not accepts_our_options(data["id"])
    assert env.observation_space["pixels"].shape == (96, 96, 3) and env.action_space.shape == (2,)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].dtype == np.uint8 and obs["agent_pos"].shape == (2,)
    with pytest.raises(ValueError, match="env.randomization.enabled=true"):
        make_env({**data, "randomization": {"enabled": True}})


@pytest.mark.parametrize("name", ["gym_pusht", "gym_aloha_transfer_cube", "foreign"])
def test_foreign_env_configs_compose(name):
    """The ready-made foreign env configs type-check against EnvConfig (building them needs their packages)."""
    from omegaconf import OmegaConf

    from training.cli import compose
    from training.imitation.config import register_configs

    register_configs()
    overrides = [f"env={name}", "dataset.root=data/x"] + (["env.id=somelab/Arm-v0"] if name == "foreign" else [])
    env = EnvConfig.from_any(OmegaConf.to_container(compose("train", overrides)["env"]))
    assert env.import_modules or name == "foreign"
    assert not env.randomization.enabled and env.obs_mode == "state" and env.pixels_camera == "top"
