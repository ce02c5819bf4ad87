"""Fuzz: bad constructor arguments of every registered env are refused by name; physics blow-ups truncate, never NaN."""

import contextlib
import math
import signal

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

import envs  # noqa: F401  (registration)
from envs.config import make_env
from envs.registration import TASKS
from envs.tasks.push_t import PushTEnv
from envs.tasks.reach import ReachEnv

ENV_IDS = sorted(TASKS)
nan, inf = math.nan, math.inf

# (kwargs, words the message must contain). Checked on every registered env.
COMMON = {
    "obs_mode": [
        ({"obs_mode": "pixel"}, ["obs_mode", "did you mean 'pixels'"]),
        ({"obs_mode": ""}, ["obs_mode", "'state'"]),
        ({"obs_mode": "STATE"}, ["obs_mode", "'state'"]),
        ({"obs_mode": None}, ["obs_mode"]),
        ({"obs_mode": 3}, ["obs_mode"]),
        ({"obs_mode": ["state"]}, ["obs_mode"]),
        ({"obs_mode": np.array(["state"])}, ["obs_mode"]),
        ({"obs_mode": b"state"}, ["obs_mode"]),
    ],
    "render_mode": [
        ({"render_mode": "rgb"}, ["render_mode", "did you mean 'rgb_array'"]),
        ({"render_mode": ""}, ["render_mode"]),
    ],
    "control_hz": [
        ({"control_hz": "50"}, ["control_hz", "real number"]),
        ({"control_hz": 0}, ["control_hz", "> 0"]),
        ({"control_hz": -50}, ["control_hz", "> 0"]),
        ({"control_hz": nan}, ["control_hz", "finite"]),
        ({"control_hz": inf}, ["control_hz", "finite"]),
        ({"control_hz": True}, ["control_hz", "real number"]),
        ({"control_hz": [50]}, ["control_hz", "real number"]),
        ({"control_hz": 50 + 0j}, ["control_hz", "real number"]),
        ({"control_hz": 33}, ["control period", "whole multiple"]),
        ({"control_hz": 1e-6}, ["physics steps per control step", "at most"]),
        ({"control_hz": 1000}, ["control period", "whole multiple"]),
    ],
    "timestep": [
        ({"timestep": "0.002"}, ["timestep", "real number"]),
        ({"timestep": 0}, ["timestep", ">= 1e-05"]),
        ({"timestep": -0.002}, ["timestep", ">= 1e-05"]),
        ({"timestep": nan}, ["timestep", "finite"]),
        ({"timestep": inf}, ["timestep", "finite"]),
        ({"timestep": 1e-9}, ["timestep", ">= 1e-05"]),
        ({"timestep": True}, ["timestep", "real number"]),
        ({"timestep": [0.002]}, ["timestep", "real number"]),
        ({"timestep": 0.003}, ["control period", "whole multiple"]),
    ],
    "cameras": [
        ({"obs_mode": "pixels", "cameras": "nope"}, ["no camera 'nope'", "available cameras"]),
        ({"obs_mode": "pixels", "cameras": ["tpo"]}, ["no camera 'tpo'", "did you mean 'top'"]),
        ({"obs_mode": "pixels", "cameras": ["top", "top"]}, ["cameras", "more than once"]),
        ({"obs_mode": "pixels", "cameras": []}, ["needs at least one camera"]),
        ({"obs_mode": "state_pixels", "cameras": ()}, ["needs at least one camera"]),
        ({"obs_mode": "pixels", "cameras": [""]}, ["cameras", "non-empty strings"]),
        ({"obs_mode": "pixels", "cameras": [1]}, ["cameras", "non-empty strings"]),
        ({"obs_mode": "pixels", "cameras": ["top", None]}, ["cameras", "non-empty strings"]),
        ({"obs_mode": "pixels", "cameras": b"top"}, ["cameras", "camera name"]),
        ({"obs_mode": "pixels", "cameras": {"top": 1}}, ["cameras", "camera name"]),
        ({"obs_mode": "pixels", "cameras": 5}, ["cameras", "camera name"]),
        ({"obs_mode": "pixels", "cameras": {"top"}}, ["cameras", "camera name"]),
        ({"obs_mode": "pixels", "cameras": OmegaConf.create({"top": 1})}, ["cameras", "camera name"]),
        ({"obs_mode": "state", "cameras": "nope"}, ["no camera 'nope'"]),
    ],
    "image_size": [
        ({"obs_mode": "pixels", "image_size": "96"}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": "96x96"}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": (96.5, 96)}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": 96.0}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": (np.float32(96), 96)}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": (0, 96)}, ["image_size", "positive"]),
        ({"obs_mode": "pixels", "image_size": (-1, 96)}, ["image_size", "positive"]),
        ({"obs_mode": "pixels", "image_size": 0}, ["image_size", "positive"]),
        ({"obs_mode": "pixels", "image_size": (96,)}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": (96, 96, 3)}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": ()}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": True}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": (True, 96)}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": {"h": 96}}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": OmegaConf.create({"h": 96, "w": 96})}, ["image_size", "two integers"]),
        ({"obs_mode": "pixels", "image_size": (5000, 96)}, ["image_size", "exceeds 4096", "MiB"]),
        ({"obs_mode": "pixels", "image_size": (96, 10**6)}, ["image_size", "exceeds 4096"]),
        ({"obs_mode": "pixels", "image_size": 10**5}, ["image_size", "exceeds 4096"]),
        ({"obs_mode": "state", "image_size": "96"}, ["image_size"]),
    ],
    "randomization": [
        ({"randomization": "yes"}, ["randomization must be a mapping"]),
        ({"randomization": 1}, ["randomization must be a mapping"]),
        ({"randomization": 0.5}, ["randomization must be a mapping"]),
        ({"randomization": ["friction_scale"]}, ["randomization must be a mapping"]),
        ({"randomization": {"frictoin_scale": [0.5, 1]}}, ["frictoin_scale", "did you mean 'friction_scale'"]),
        ({"randomization": {"mass_scale": [0.5, 1]}}, ["mass_scale", "valid options"]),
        ({"randomization": {1: 2}}, ["unknown randomization option"]),
        ({"randomization": {"friction_scale": [1.2, 0.8]}}, ["friction_scale", "low <= high"]),
        ({"randomization": {"friction_scale": [-1, 1]}}, ["friction_scale[0]", "> 0"]),
        ({"randomization": {"friction_scale": [0, 1]}}, ["friction_scale[0]", "> 0"]),
        ({"randomization": {"friction_scale": [nan, 1]}}, ["friction_scale[0]", "finite"]),
        ({"randomization": {"friction_scale": [1, inf]}}, ["friction_scale[1]", "finite"]),
        ({"randomization": {"friction_scale": ["0.5", 1]}}, ["friction_scale[0]", "real number"]),
        ({"randomization": {"friction_scale": "0.5 1"}}, ["friction_scale", "(low, high) pair"]),
        ({"randomization": {"friction_scale": [1, 1, 1]}}, ["friction_scale", "pair of 2"]),
        ({"randomization": {"friction_scale": [1]}}, ["friction_scale", "pair of 2"]),
        ({"randomization": {"friction_scale": 1.0}}, ["friction_scale", "(low, high) pair"]),
        ({"randomization": {"friction_scale": [True, 1]}}, ["friction_scale[0]", "real number"]),
        ({"randomization": {"friction_scale": {"low": 1, "high": 2}}}, ["friction_scale", "(low, high) pair"]),
        ({"randomization": {"object_mass_scale": None}}, ["object_mass_scale", "(low, high) pair"]),
        ({"randomization": {"actuator_gain_scale": np.ones((2, 2))}}, ["actuator_gain_scale", "pair"]),
        ({"randomization": {"action_delay_steps": [1.5, 2]}}, ["action_delay_steps[0]", "integer"]),
        ({"randomization": {"action_delay_steps": [1.0, 2]}}, ["action_delay_steps[0]", "integer"]),
        ({"randomization": {"action_delay_steps": [-1, 2]}}, ["action_delay_steps[0]", ">= 0"]),
        ({"randomization": {"action_delay_steps": [0, 10**9]}}, ["action_delay_steps[1]", "<= 1000"]),
        ({"randomization": {"action_delay_steps": [3, 1]}}, ["action_delay_steps", "low <= high"]),
        ({"randomization": {"action_delay_steps": 2}}, ["action_delay_steps", "(low, high) pair"]),
        ({"randomization": {"enabled": "yes"}}, ["enabled", "true or false"]),
        ({"randomization": {"enabled": 1}}, ["enabled", "true or false"]),
        ({"randomization": {"agent_pos_noise_std": -0.1}}, ["agent_pos_noise_std", ">= 0"]),
        ({"randomization": {"agent_pos_noise_std": nan}}, ["agent_pos_noise_std", "finite"]),
        ({"randomization": {"agent_pos_noise_std": "0.1"}}, ["agent_pos_noise_std", "real number"]),
        ({"randomization": {"agent_pos_noise_std": [0.1]}}, ["agent_pos_noise_std", "real number"]),
        ({"randomization": {"environment_state_noise_std": inf}}, ["environment_state_noise_std", "finite"]),
        ({"randomization": {"color_jitter": 2.0}}, ["color_jitter", "<= 1"]),
        ({"randomization": {"camera_rot_std_deg": inf}}, ["camera_rot_std_deg", "finite"]),
        ({"randomization": {"camera_pos_std": None}}, ["camera_pos_std", "real number"]),
        ({"randomization": {"light_intensity_scale": [0, 1]}}, ["light_intensity_scale[0]", "> 0"]),
    ],
    "unknown_keyword": [
        ({"obs_mod": "state"}, ["obs_mod", "did you mean 'obs_mode'"]),
        ({"foo": 1}, ["foo", "valid arguments"]),
        ({"image_sizes": (96, 96)}, ["image_sizes", "did you mean 'image_size'"]),
        ({"randomisation": True}, ["randomisation", "did you mean 'randomization'"]),
    ],
}

# The env built directly (gymnasium.make consumes max_episode_steps itself: see test_make_env_checks_...).
DIRECT = {
    # gymnasium.make handles render_mode itself first: "human" becomes its HumanRendering wrapper (pygame) over an
    # rgb_array env, and a non-string fails inside gymnasium (AttributeError); make_env checks it before gymnasium.
    "render_mode": [
        ({"render_mode": "human"}, ["render_mode", "rgb_array"]),
        ({"render_mode": 1}, ["render_mode"]),
        ({"render_mode": True}, ["render_mode"]),
        ({"render_mode": ["rgb_array"]}, ["render_mode"]),
    ],
    "max_episode_steps": [
        ({"max_episode_steps": 0}, ["max_episode_steps", ">= 1"]),
        ({"max_episode_steps": -1}, ["max_episode_steps", ">= 1"]),
        ({"max_episode_steps": 1.5}, ["max_episode_steps", "integer"]),
        ({"max_episode_steps": 100.0}, ["max_episode_steps", "integer"]),
        ({"max_episode_steps": "100"}, ["max_episode_steps", "integer"]),
        ({"max_episode_steps": True}, ["max_episode_steps", "integer"]),
        ({"max_episode_steps": nan}, ["max_episode_steps", "integer"]),
        ({"max_episode_steps": [100]}, ["max_episode_steps", "integer"]),
    ],
}

TASK_SPECIFIC = {
    "cerebellum/Reach-v0": [
        ({"reward_type": "dens"}, ["reward_type", "did you mean 'dense'"]),
        ({"reward_type": 1}, ["reward_type"]),
        ({"reward_type": None}, ["reward_type"]),
        ({"reward_type": ["dense"]}, ["reward_type"]),
        ({"robot_mjcf": 123}, ["robot_mjcf", "path"]),
        ({"robot_mjcf": "/nonexistent/arm.xml", "end_effector_site": "tip"}, ["robot_mjcf", "does not exist"]),
        ({"end_effector_site": "tip"}, ["end_effector_site", "only used together with robot_mjcf"]),
        ({"end_effector_site": 5}, ["end_effector_site", "site name"]),
    ],
    "cerebellum/PickCube-v0": [
        ({"reward_type": "spars"}, ["reward_type", "did you mean 'sparse'"]),
        ({"target_height_range": (0.12, 0.08)}, ["target_height_range", "low <= high"]),
        ({"target_height_range": "0.1"}, ["target_height_range", "(low, high) pair"]),
        ({"target_height_range": 0.1}, ["target_height_range", "(low, high) pair"]),
        ({"target_height_range": (0.01, 0.1)}, ["target_height_range", "0.03"]),
        ({"target_height_range": (0.1, 0.5)}, ["target_height_range", "0.2"]),
        ({"target_height_range": (nan, 0.1)}, ["target_height_range[0]", "finite"]),
        ({"target_height_range": ("0.1", 0.12)}, ["target_height_range[0]", "real number"]),
        ({"target_height_range": (0.08, 0.1, 0.12)}, ["target_height_range", "pair of 2"]),
        ({"randomization": {"object_size_scale": [5, 5]}}, ["object_size_scale", "clear its base"]),
        ({"randomization": {"object_size_scale": [1, 1e9]}}, ["object_size_scale", "up to a scale of 4"]),
    ],
    "cerebellum/TransferCube-v0": [
        ({"reward_type": "dense"}, ["reward_type", "valid arguments"]),
        ({"randomization": {"object_size_scale": [12, 12]}}, ["object_size_scale", "right arm's base"]),
        ({"randomization": {"object_size_scale": [0.5, 100]}}, ["object_size_scale", "up to a scale of 11"]),
    ],
    "cerebellum/PushT-v0": [
        ({"reward_type": "x"}, ["reward_type"]),
        ({"success_coverage": 0}, ["success_coverage", "> 0"]),
        ({"success_coverage": 1.5}, ["success_coverage", "<= 1"]),
        ({"success_coverage": "0.9"}, ["success_coverage", "real number"]),
        ({"success_coverage": nan}, ["success_coverage", "finite"]),
        ({"success_coverage": True}, ["success_coverage", "real number"]),
        ({"scene": "big"}, ["scene"]),
        ({"scene": {"table_half": -1}}, ["table_half", "> 0"]),
        ({"scene": {"table_half": "0.3"}}, ["table_half", "numbers"]),
        ({"scene": {"goal_pose": [0, 0]}}, ["goal_pose", "(x, y, yaw)"]),
        ({"scene": {"goal_pose": "0 0 0"}}, ["scene.goal_pose", "list of numbers"]),
        ({"scene": {"goal_pose": [0.0, 0.0, None]}}, ["goal_pose", "numbers"]),
        ({"scene": {"shape": {"bar_half": [0.1]}}}, ["TShape", "2 values"]),
        ({"scene": {"shape": {"bar_half": 0.1}}}, ["scene.shape.bar_half", "list of numbers"]),
        ({"scene": {"shape": "T"}}, ["scene.shape", "mapping"]),
        ({"scene": {"shape": {"stem": [0.1, 0.1]}}}, ["scene.shape", "stem"]),
        ({"scene": {"workspace_half": "0.2"}}, ["workspace_half", "numbers"]),
        ({"scene": {"foo": 1}}, ["scene option", "foo"]),
        ({"randomization": {"object_size_scale": [20, 20]}}, ["object_size_scale", "on the table"]),
        ({"randomization": {"object_size_scale": [1.0, 2.0]}}, ["object_size_scale", "up to a scale of 1.86"]),
        ({"scene": {"goal_pose": [0.2, 0.2, 0.0]}},
         ["PushTEnv", "cannot place its object even at its nominal size", "goal"]),
        ({"scene": {"goal_pose": [0.05, 0.0, 0.0]}, "randomization": {"object_size_scale": [1, 1.5]}},
         ["object_size_scale", "up to a scale of 1.24"]),
    ],
}


def _cases(table):
    return [pytest.param(kw, words, id=f"{kind}-{i}")
            for kind, rows in table.items() for i, (kw, words) in enumerate(rows)]


def _task_cases():
    return [pytest.param(env_id, kw, words, id=f"{env_id.split('/')[1]}-{i}")
            for env_id, rows in TASK_SPECIFIC.items() for i, (kw, words) in enumerate(rows)]


@contextlib.contextmanager
def deadline(seconds):
    """Fail (TimeoutError) instead of hanging: every constructor and reset here must return within `seconds`."""
    def expire(signum, frame):
        raise TimeoutError(f"call did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _assert_refused(build, words, error=ValueError):
    with deadline(20), pytest.raises(error) as info:
        env = build()
        env.reset(seed=0)  # reached only if construction wrongly accepted the argument
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("kwargs,words", _cases(COMMON))
def test_bad_common_argument_is_refused_by_name(env_id, kwargs, words):
    # An unknown keyword is a TypeError, as Python raises for any function; every bad value is a ValueError.
    unknown = not set(kwargs) <= {"obs_mode", "render_mode", "control_hz", "timestep", "cameras", "image_size",
                                  "randomization"}
    _assert_refused(lambda: gym.make(env_id, **kwargs), words, TypeError if unknown else ValueError)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("kwargs,words", _cases(DIRECT))
def test_bad_episode_length_is_refused_by_the_env_class(env_id, kwargs, words):
    env_cls = gym.spec(env_id).entry_point
    module, name = env_cls.split(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    _assert_refused(lambda: cls(**kwargs), words)


@pytest.mark.parametrize("env_id,kwargs,words", _task_cases())
def test_bad_task_argument_is_refused_by_name(env_id, kwargs, words):
    error = TypeError if "valid arguments" in words else ValueError
    _assert_refused(lambda: gym.make(env_id, **kwargs), words, error)


@pytest.mark.parametrize("value", [0, -1, 1.5, "100", True, [100]])
def test_make_env_checks_the_length_that_gymnasium_make_consumes(value):
    # gymnasium.make takes max_episode_steps for its TimeLimit (-1 there silently means "no limit", True means 1).
    _assert_refused(lambda: make_env({"id": "cerebellum/Reach-v0", "max_episode_steps": value}), ["max_episode_steps"])


@pytest.mark.parametrize("config,words", [
    ({"id": "cerebellum/Reach-v1"}, ["unknown environment id", "did you mean 'cerebellum/Reach-v0'"]),
    ({"id": 3}, ["unknown environment id"]),
    ({"id": "cerebellum/Reach-v0", "obs_mod": "state"}, ["obs_mod", "did you mean 'obs_mode'"]),
    ({"id": "cerebellum/Reach-v0", "task_kwargs": "dense"}, ["task_kwargs", "mapping"]),
    ({"id": "cerebellum/Reach-v0", "task_kwargs": {"render_mode": 1}}, ["render_mode"]),
    ({"id": "cerebellum/Reach-v0", "task_kwargs": {"render_mode": "human"}}, ["render_mode", "rgb_array"]),
    ({"id": "cerebellum/Reach-v0", "task_kwargs": {"reward_type": "dens"}}, ["reward_type", "did you mean"]),
    ({"id": "cerebellum/Reach-v0", "randomization": {"enabled": True, "friction_scale": [2, 1]}}, ["friction_scale"]),
])
def test_make_env_config_errors_name_the_option(config, words):
    _assert_refused(lambda: make_env(config), words)


# ------------------------------------------------------------------------------------------ accepted spellings
def test_a_plain_camera_string_is_one_camera_and_an_int_image_size_is_square():
    env = gym.make("cerebellum/Reach-v0", obs_mode="pixels", cameras="top", image_size=np.int64(24))
    obs, _ = env.reset(seed=0)
    assert list(obs["pixels"]) == ["top"] and obs["pixels"]["top"].shape == (24, 24, 3)
    env.close()


def test_hydra_lists_are_accepted_where_lists_are_expected():
    env = gym.make("cerebellum/Reach-v0", obs_mode="state_pixels", cameras=OmegaConf.create(["top", "front"]),
                   image_size=OmegaConf.create([16, 24]),
                   randomization=OmegaConf.create({"enabled": True, "friction_scale": [0.9, 1.1]}))
    obs, _ = env.reset(seed=0)
    assert list(obs["pixels"]) == ["top", "front"] and obs["pixels"]["front"].shape == (16, 24, 3)
    assert env.unwrapped.randomization.friction_scale == (0.9, 1.1)
    env.close()


def test_numpy_numbers_are_accepted_where_numbers_are_expected():
    env = gym.make("cerebellum/PushT-v0", obs_mode="pixels", image_size=(np.int32(20), np.uint16(28)),
                   control_hz=np.float64(10), timestep=np.float64(0.002), success_coverage=np.float64(0.9),
                   randomization={"action_delay_steps": np.array([1, 2]), "friction_scale": (np.float32(0.9), 1)})
    obs, _ = env.reset(seed=0)
    assert obs["pixels"]["top"].shape == (20, 28, 3)
    assert env.unwrapped.randomization.action_delay_steps == (1, 2)
    env.close()


# ------------------------------------------------------------------------------------------ caps on sampling loops
def test_push_t_reported_hang_is_refused_at_construction_in_milliseconds():
    with deadline(10), pytest.raises(ValueError, match="object_size_scale"):
        gym.make("cerebellum/PushT-v0", randomization={"object_size_scale": [20, 20]}).reset(seed=0)


def test_push_t_largest_placeable_scale_resets_for_many_seeds():
    largest = PushTEnv().max_object_size_scale()[0]
    env = PushTEnv(randomization={"object_size_scale": [largest, largest]})
    with deadline(60):
        for seed in range(40):
            obs, _ = env.reset(seed=seed)
            assert np.isfinite(obs["environment_state"]).all()


class _UnplaceablePushT(PushTEnv):
    max_initial_coverage = 0.0  # no block pose can cover less than nothing: rejection sampling never succeeds


class _NoRoomForThePusher(PushTEnv):
    pusher_init_half = 0.0  # the pusher must start at the goal, where the block's draws keep landing near


def test_push_t_block_sampling_is_capped_with_a_clear_error():
    env = _UnplaceablePushT()
    message = r"no block pose covering < 0.0 of the goal found in 1000 random draws"
    with deadline(20), pytest.raises(ValueError, match=message):
        env.reset(seed=0)


def test_push_t_pusher_sampling_is_capped_with_a_clear_error():
    env = _NoRoomForThePusher()
    env.block_init_half = 0.0  # the block sits on the goal (0, 0), exactly where the pusher must start
    env.max_initial_coverage = 1.1
    with deadline(20), pytest.raises(ValueError, match="no pusher position clear of the block found in 1000"):
        env.reset(seed=0)


BURIED_ARM = """
<mujoco>
  <worldbody>
    <geom name="wall" type="box" size="1 1 1" pos="0 0 0"/>
    <body name="l1" pos="0 0 0.1">
      <joint name="yaw" axis="0 0 1" range="-1.5 1.5"/>
      <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02"/>
      <site name="tip" pos="0.2 0 0"/>
    </body>
  </worldbody>
  <actuator><position name="a_yaw" joint="yaw" kp="50" ctrlrange="-1.5 1.5"/></actuator>
</mujoco>
"""


def test_reach_user_robot_target_sampling_is_capped_with_a_clear_error(tmp_path):
    path = tmp_path / "buried.xml"
    path.write_text(BURIED_ARM)
    env = ReachEnv(robot_mjcf=path, end_effector_site="tip")
    with deadline(20), pytest.raises(ValueError, match="random joint configurations .* all penetrate"):
        env.reset(seed=0)


# ------------------------------------------------------------------------------------------ physics blow-ups
BLOW_UPS = {
    "gain_1e12": {"randomization": {"actuator_gain_scale": [1e12, 1e12]}},
    "gain_1e30": {"randomization": {"actuator_gain_scale": [1e30, 1e30]}},
    "damping_1e30": {"randomization": {"joint_damping_scale": [1e30, 1e30]}},
    "armature_1e-12": {"randomization": {"armature_scale": [1e-12, 1e-12]}},
    "object_mass_1e12": {"randomization": {"object_mass_scale": [1e12, 1e12]}},
    "object_mass_1e30": {"randomization": {"object_mass_scale": [1e30, 1e30]}},
    "object_mass_1e-30": {"randomization": {"object_mass_scale": [1e-30, 1e-30]}},
    "friction_1e30": {"randomization": {"friction_scale": [1e30, 1e30]}},
    "timestep_0.5": {"timestep": 0.5, "control_hz": 2},
    "timestep_1": {"timestep": 1.0, "control_hz": 1},
    "timestep_0.5_gain_1e12": {"timestep": 0.5, "control_hz": 2,
                               "randomization": {"actuator_gain_scale": [1e12, 1e12]}},
    "timestep_1e300": {"timestep": 1e300, "control_hz": 1e-300},
    "timestep_10": {"timestep": 10.0, "control_hz": 0.1},
    "injected_qvel_1e12": {},
    "injected_qpos_1e11": {},
}
# Cases that must really blow up on a task: without them the invariant test could pass by never being exercised.
MUST_BLOW_UP = {
    "cerebellum/Reach-v0": {"timestep_1e300", "injected_qvel_1e12", "injected_qpos_1e11"},
    "cerebellum/PickCube-v0": {"object_mass_1e12", "object_mass_1e30", "timestep_1e300", "injected_qvel_1e12"},
    "cerebellum/TransferCube-v0": {"object_mass_1e12", "timestep_0.5", "timestep_1", "timestep_1e300",
                                   "injected_qvel_1e12"},
    "cerebellum/PushT-v0": {"object_mass_1e12", "object_mass_1e30", "timestep_1e300", "injected_qvel_1e12"},
}


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("case", sorted(BLOW_UPS))
def test_physics_blow_up_truncates_with_physics_error_and_finite_observations(env_id, case):
    env = gym.make(env_id, **BLOW_UPS[case]).unwrapped
    obs, _ = env.reset(seed=0)
    if case == "injected_qvel_1e12":
        env.data.qvel[:] = 1e12
    elif case == "injected_qpos_1e11":
        env.data.qpos[:] = 1e11
    errors = 0
    with deadline(30):
        for i in range(30):
            # Bang-bang between the bounds: the most exciting input the action box allows.
            action = env.action_space.high if i % 2 else env.action_space.low
            obs, reward, terminated, truncated, info = env.step(action)
            for key in ("agent_pos", "environment_state"):
                assert np.isfinite(obs[key]).all(), f"{key} not finite at step {i}"
            assert math.isfinite(reward)
            if "physics_error" in info:
                errors += 1
                assert truncated and not terminated and "unstable" in info["physics_error"]
                assert info["is_success"] is False
                obs, _ = env.reset(seed=i + 1)
    if case in MUST_BLOW_UP[env_id]:
        assert errors > 0, f"{case} was expected to blow up {env_id}'s physics"
    env.close()
