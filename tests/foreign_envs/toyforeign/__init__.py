"""A toy foreign Gymnasium env, registered as toyforeign/Reach2D-v0 on import, in gym-aloha / gym-pusht conventions.

It stands in for a user's own simulator: its constructor takes none of our options (no obs_mode, randomization,
cameras, image_size, control_hz or timestep), declares no control_hz, action units or names, and its actions are
positions in pixels (0-64) like gym-pusht's. `obs_type`/`pixels_as` pick the observation convention:
  obs_type="state":            {"agent_pos": (2,), "environment_state": (2,)}
  obs_type="pixels_agent_pos": {"agent_pos": (2,), "pixels": ...} with pixels_as="dict" -> {"top": HxWx3} (gym-aloha)
                               or pixels_as="array" -> one HxWx3 uint8 array (gym-pusht)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "toyforeign/Reach2D-v0"
SIZE = 64.0  # the arena is [0, SIZE]^2 pixels; actions are target positions in it
GOAL_COLOR = (0, 200, 0)
AGENT_COLOR = (220, 30, 30)


class Reach2DEnv(gym.Env):
    """Drive a point to a seeded goal by commanding target positions; at most `max_move` pixels per step."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, obs_type: str = "state", pixels_as: str = "dict", resolution: int = 32, max_move: float = 6.0,
                 render_mode: str | None = None):
        if obs_type not in ("state", "pixels_agent_pos"):
            raise ValueError(f"Reach2DEnv: obs_type must be 'state' or 'pixels_agent_pos', got {obs_type!r}")
        if pixels_as not in ("dict", "array"):
            raise ValueError(f"Reach2DEnv: pixels_as must be 'dict' or 'array', got {pixels_as!r}")
        self.obs_type, self.pixels_as, self.resolution = obs_type, pixels_as, int(resolution)
        self.max_move = float(max_move)
        self.render_mode = render_mode
        spaces: dict[str, gym.Space] = {"agent_pos": gym.spaces.Box(0, SIZE, (2,), np.float32)}
        if obs_type == "state":
            spaces["environment_state"] = gym.spaces.Box(0, SIZE, (2,), np.float32)
        else:
            image = gym.spaces.Box(0, 255, (self.resolution, self.resolution, 3), np.uint8)
            spaces["pixels"] = gym.spaces.Dict({"top": image}) if pixels_as == "dict" else image
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(0, SIZE, (2,), np.float32)

    def _image(self) -> np.ndarray:
        n = self.resolution
        img = np.full((n, n, 3), 30, np.uint8)
        for point, color in ((self.goal, GOAL_COLOR), (self.agent, AGENT_COLOR)):
            r, c = (np.clip(point / SIZE * n, 1, n - 2)).astype(int)[::-1]
            img[r - 1 : r + 2, c - 1 : c + 2] = color
        return img

    def _obs(self) -> dict:
        obs: dict = {"agent_pos": self.agent.astype(np.float32)}
        if self.obs_type == "state":
            obs["environment_state"] = self.goal.astype(np.float32)
        else:
            image = self._image()
            obs["pixels"] = {"top": image} if self.pixels_as == "dict" else image
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.agent = self.np_random.uniform(8, SIZE - 8, 2)
        self.goal = self.np_random.uniform(8, SIZE - 8, 2)
        return self._obs(), {"is_success": False}

    def step(self, action):
        move = np.clip(np.asarray(action, np.float64), 0, SIZE) - self.agent
        norm = float(np.linalg.norm(move))
        if norm > self.max_move:
            move *= self.max_move / norm
        self.agent = self.agent + move
        success = float(np.linalg.norm(self.agent - self.goal)) < 3.0
        return self._obs(), 1.0 if success else 0.0, success, False, {"is_success": success}

    def render(self):
        return self._image()


def goal_from_observation(obs: dict) -> np.ndarray:
    """The goal as a policy sees it: environment_state, else the centre of the goal-coloured pixels."""
    if "environment_state" in obs:
        return np.asarray(obs["environment_state"], np.float64)
    image = obs["pixels"]["top"] if isinstance(obs["pixels"], dict) else obs["pixels"]
    rows, cols = np.nonzero(np.all(np.asarray(image) == GOAL_COLOR, axis=-1))
    if not len(rows):  # hidden under the agent: it is already there
        return np.asarray(obs["agent_pos"], np.float64)
    n = image.shape[0]
    return (np.array([cols.mean(), rows.mean()]) + 0.5) * SIZE / n


class ScriptedReacher:
    """The user's recording policy: command the goal's position (seen in the observation) every step."""

    def __init__(self, env: gym.Env):
        self.episodes = 0

    def reset(self) -> None:
        self.episodes += 1

    def __call__(self, obs: dict) -> np.ndarray:
        return goal_from_observation(obs).astype(np.float32)


def make_scripted_policy(env: gym.Env) -> ScriptedReacher:
    """policy_factory "toyforeign:make_scripted_policy"."""
    return ScriptedReacher(env)


def make_sweep_policy(env: gym.Env):
    """policy_factory "toyforeign:make_sweep_policy" for any Box-action env (e.g. gym-pusht): sweeps the action range,
    a stand-in for a user's expert where only the recording path is under test."""
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)

    class Sweep:
        def reset(self) -> None:
            self.t = 0

        def __call__(self, obs: dict) -> np.ndarray:
            self.t += 1
            return (low + (high - low) * (0.5 + 0.4 * np.sin(0.3 * self.t + np.arange(low.size)))).astype(np.float32)

    policy = Sweep()
    policy.reset()
    return policy


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=Reach2DEnv, max_episode_steps=30)
