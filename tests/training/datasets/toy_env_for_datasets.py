"""A tiny gym-aloha-style env (Dict obs agent_pos / environment_state / pixels) and a scripted policy for dataset tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "cerebellum_test/ToyReach-v0"


class ToyReachEnv(gym.Env):
    """Move a point to a seeded target at bounded speed; far targets are not reached in time (failures)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, obs_mode: str = "state", image_size: tuple[int, int] = (32, 32), max_episode_steps: int = 20,
                 render_mode: str | None = None):
        self.obs_mode = obs_mode
        self.image_size = tuple(image_size)
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.control_hz = 10.0
        self.joint_names = ["x", "y"]
        self.action_names = ["vx", "vy"]
        self.action_units = ["m/s", "m/s"]
        spaces: dict[str, gym.Space] = {}
        if obs_mode in ("state", "state_pixels"):
            spaces["agent_pos"] = gym.spaces.Box(-2, 2, (2,), np.float32)
            spaces["environment_state"] = gym.spaces.Box(-2, 2, (2,), np.float32)
        if obs_mode in ("pixels", "state_pixels"):
            h, w = self.image_size
            spaces["pixels"] = gym.spaces.Dict({"top": gym.spaces.Box(0, 255, (h, w, 3), np.uint8)})
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def _image(self) -> np.ndarray:
        h, w = self.image_size
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 2] = 40
        for point, color in ((self.target, (0, 200, 0)), (self.pos, (220, 30, 30))):
            r = int(np.clip((point[1] + 1.5) / 3 * h, 1, h - 2))
            c = int(np.clip((point[0] + 1.5) / 3 * w, 1, w - 2))
            img[r - 1 : r + 2, c - 1 : c + 2] = color
        return img

    def _obs(self) -> dict:
        obs = {}
        if "agent_pos" in self.observation_space.spaces:
            obs["agent_pos"] = self.pos.astype(np.float32)
            obs["environment_state"] = self.target.astype(np.float32)
        if "pixels" in self.observation_space.spaces:
            obs["pixels"] = {"top": self._image()}
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.zeros(2)
        self.target = self.np_random.uniform(-1, 1, 2)
        self.steps = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.pos = self.pos + 0.1 * np.clip(np.asarray(action, np.float64), -1, 1)
        self.steps += 1
        distance = float(np.linalg.norm(self.pos - self.target))
        success = distance < 0.06
        return self._obs(), -distance, success, self.steps >= self.max_episode_steps and not success, {"is_success": success}

    def render(self):
        return self._image()


class ToyExpert:
    """Heads for the target at 0.4 speed; reads the target from the observation only."""

    def __init__(self, env: gym.Env):
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, observation: dict) -> np.ndarray:
        delta = observation["environment_state"] - observation["agent_pos"]
        return np.clip(5.0 * delta, -0.4, 0.4).astype(np.float32)


def make_toy_expert(env: gym.Env) -> ToyExpert:
    return ToyExpert(env)


class SlowExpert(ToyExpert):
    """The toy expert taking $TOY_EXPERT_SLEEP seconds (default 0.02) per action, so that a collection lasts long
    enough for another process to meet it; its resumption may run at full speed (TOY_EXPERT_SLEEP=0)."""

    def __call__(self, observation: dict) -> np.ndarray:
        import os
        import time

        time.sleep(float(os.environ.get("TOY_EXPERT_SLEEP", "0.02")))
        return super().__call__(observation)


def make_slow_expert(env: gym.Env) -> SlowExpert:
    return SlowExpert(env)


class Crash(RuntimeError):
    """Raised by CrashingExpert to simulate a collection killed mid-run."""


class CrashingExpert(ToyExpert):
    """Fails on its Nth episode start, counted across every instance in this process."""

    crash_at_episode = 10**9
    started = 0

    def reset(self) -> None:
        CrashingExpert.started += 1
        if CrashingExpert.started >= CrashingExpert.crash_at_episode:
            raise Crash(f"simulated crash at episode start #{CrashingExpert.started}")


def make_crashing_expert(env: gym.Env) -> CrashingExpert:
    return CrashingExpert(env)


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=ToyReachEnv)
