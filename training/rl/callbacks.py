"""SB3 callbacks and logger output of the RL trainer: checkpoints, periodic evaluation, time budget, progress lines,
wandb metrics."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from training.logging import ExperimentLogger
from training.progress import Progress


class WandbOutputFormat(KVWriter):
    """Forwards SB3's logger records (rollout/ep_rew_mean, rollout/success_rate, train/*_loss, ...) to wandb."""

    def __init__(self, logger: ExperimentLogger) -> None:
        self.logger = logger

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        metrics = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if "wandb" in excluded or isinstance(value, str):
                continue
            if isinstance(value, (int, float, np.integer, np.floating)) or (
                isinstance(value, np.ndarray) and value.size == 1
            ):
                metrics[key] = float(value)
        self.logger.log(metrics, step)

    def close(self) -> None:
        pass


class AtRolloutBoundary(BaseCallback):
    """Calls `action(model)` at the first rollout start at or after every multiple of `every_steps` timesteps.

    Rollout starts are the points where the parameters reflect every update for the steps counted so far (PPO:
    after train(); off-policy: after the gradient steps of the last collection), so a checkpoint or an evaluation
    taken there is consistent with its step count, and a resumed run repeats no update and skips none.
    """

    def __init__(self, every_steps: int, action: Callable[[Any], None]) -> None:
        super().__init__()
        self.every_steps = int(every_steps)
        self.action = action
        self._next = None

    def _on_training_start(self) -> None:
        if self.every_steps > 0:
            self._next = (self.model.num_timesteps // self.every_steps + 1) * self.every_steps

    def _on_rollout_start(self) -> None:
        if self._next is not None and self.model.num_timesteps >= self._next:
            self.action(self.model)
            self._next = (self.model.num_timesteps // self.every_steps + 1) * self.every_steps

    def _on_step(self) -> bool:
        return True


class TimeBudget(BaseCallback):
    """Stops training once `seconds` of wall clock have passed since learn() started."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = float(seconds)
        self.start = None
        self.exhausted = False

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()

    def _on_step(self) -> bool:
        if time.perf_counter() - self.start >= self.seconds:
            self.exhausted = True
            return False
        return True


class ProgressLines(BaseCallback):
    """Plain progress lines of learn() (training.progress) where no terminal shows SB3's own bar."""

    def __init__(self, total_timesteps: int, desc: str, log_every_s: float = 30.0) -> None:
        super().__init__()
        self.total_timesteps, self.desc, self.log_every_s = int(total_timesteps), desc, log_every_s
        self.progress: Progress | None = None

    def _on_training_start(self) -> None:
        self.progress = Progress(self.total_timesteps, self.desc, initial=self.model.num_timesteps,
                                 log_every_s=self.log_every_s)

    def _on_rollout_end(self) -> None:
        episodes = self.model.ep_info_buffer
        if episodes:
            self.progress.postfix["ep_rew_mean"] = float(np.mean([info["r"] for info in episodes]))

    def _on_step(self) -> bool:
        self.progress.update(self.model.num_timesteps - self.progress.count)
        return True

    def _on_training_end(self) -> None:
        self.progress.close()
