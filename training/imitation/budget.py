"""Fitting a run to a wall-clock budget: measure the step time of a config, then choose `steps` so that the
warm-up + cosine schedule ends when the budget does (a time cut alone would stop at a high learning rate)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from training.imitation.config import ImitationTrainConfig
from training.imitation.trainer import train


def measure_seconds_per_step(cfg: ImitationTrainConfig, probe_steps: int = 40) -> float:
    """Seconds per training step of `cfg` on this machine, from a throw-away run (first steps excluded as warm-up)."""
    if probe_steps < 20:
        raise ValueError(f"probe_steps must be >= 20 to leave steps after the warm-up, got {probe_steps}")
    warm = probe_steps // 4
    probe = dataclasses.replace(
        cfg, steps=probe_steps, log_every=warm, max_train_seconds=None, val_every=0, resume=None, run_dir=None,
        progress_bar=False, eval=dataclasses.replace(cfg.eval, every_steps=0, final_episodes=0),
        checkpoint=dataclasses.replace(cfg.checkpoint, every_steps=0),
        logger=dataclasses.replace(cfg.logger, mode="disabled"),
    )
    with tempfile.TemporaryDirectory(prefix="step-time-") as tmp:
        result = train(probe, Path(tmp))
    rates = [row["train/steps_per_second"] for row in result.history if "train/steps_per_second" in row][1:]
    return 1.0 / (sum(rates) / len(rates))


def steps_for_budget(seconds_per_step: float, budget_seconds: float, margin: float = 0.9) -> int:
    """Steps that fit in `margin` of the budget (the rest absorbs load fluctuations and checkpoints)."""
    if seconds_per_step <= 0 or budget_seconds <= 0 or not 0 < margin <= 1:
        raise ValueError("seconds_per_step and budget_seconds must be > 0 and margin in (0, 1]")
    return max(1, int(budget_seconds * margin / seconds_per_step))
