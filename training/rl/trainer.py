"""RL training (SB3): run / resume / load; check, build envs and the model, learn with callbacks, checkpoint, evaluate."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from fileio.atomic import write_text_atomic
from training.checkpoints import checkpoint_to_resume, latest_checkpoint, lock_run_dir
from training.evaluation import EvaluationResult, evaluate, make_eval_envs, write_results
from training.logging import ExperimentLogger, evaluation_metrics, truncate_csv
from training.progress import is_terminal
from training.resume import ResumeError, apply_changes, parse_overrides, resume_changes
from training.rl.algorithms import algorithm_spec, build_model, check_action_space
from training.rl.callbacks import AtRolloutBoundary, ProgressLines, TimeBudget, WandbOutputFormat
from training.rl.checkpoint import (
    RLCheckpoint,
    load_policy,
    read_rl_checkpoint,
    restore_training_state,
    save_rl_checkpoint,
)
from training.rl.config import RLTrainConfig, config_from_dict, to_dict
from training.rl.environments import make_training_vec_env, probe_spaces
from training.rl.normalization import ObservationNormalizer, vecnormalize_state
from training.rl.policy import SB3VectorPolicy


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    num_timesteps: int
    train_seconds: float
    stopped_by_time_budget: bool
    final_eval: EvaluationResult | None


# Overrides that may accompany resume=<run dir>: they change how the run executes, not what it computes.
RESUME_OVERRIDABLE = ("resume", "algo.device", "torch_threads", "vec_env", "progress_bar", "verbose",
                      "max_train_seconds", "logger.mode", "eval.async_envs")


class RLSetupError(ValueError):
    """The run cannot start: bad config, an algorithm that does not fit the env, a bad resume point or run dir."""


def run(cfg: RLTrainConfig, default_run_dir: str | Path, overrides: Sequence[str] = ()) -> TrainResult:
    """scripts/train_rl.py: a fresh run in cfg.run_dir (or default_run_dir), or `resume=<run dir>` (see `resume`)."""
    if cfg.resume:
        return _resume(cfg.resume, to_dict(cfg), overrides)
    return train(cfg, Path(cfg.run_dir or default_run_dir))


def resume(run_dir: str | Path, overrides: Sequence[str] = ()) -> TrainResult:
    """Continue a run from its latest checkpoint with its saved config; `overrides` ("algo.device=cuda", ...) may
    change only how it executes (RESUME_OVERRIDABLE), any other is refused."""
    return _resume(run_dir, None, overrides)


def _resume(run_dir: str | Path, given: Mapping[str, Any] | None, overrides: Sequence[str]) -> TrainResult:
    """`given`: the config the overrides built (scripts), or None to read their values from the overrides."""
    try:
        resumed = resume_from(run_dir)
        given = parse_overrides(overrides) if given is None else given
        changes = resume_changes(given, overrides, RESUME_OVERRIDABLE, {"algo": resumed.config.algo.name}, run_dir)
        cfg = config_from_dict(apply_changes(to_dict(resumed.config), changes))
    except (ResumeError, FileNotFoundError, ValueError) as err:
        raise RLSetupError(str(err)) from err
    print(f"resuming {run_dir} from step {resumed.checkpoint.step} with the run's saved config")
    return train(cfg, Path(run_dir), resume=resumed)


def load(path: str | Path, device: str = "cpu"):
    """The trained SB3 policy of a checkpoint (or of a run directory's latest), pickle-free, in eval mode."""
    return load_policy(read_rl_checkpoint(path), device)


def resume_from(run_dir: str | Path) -> RLCheckpoint:
    """The latest checkpoint of a run directory, with a clear error when there is none."""
    return read_rl_checkpoint(checkpoint_to_resume(run_dir))


def _check_fresh_run_dir(run_dir: Path) -> None:
    if latest_checkpoint(run_dir) is not None:
        raise RLSetupError(f"{run_dir} already holds a run with checkpoints; continue it with resume={run_dir} or "
                           "choose another run_dir")


def check_run(cfg: RLTrainConfig, resume: RLCheckpoint | None = None):
    """Config values, the env's spaces against the algorithm, and the resume point; returns the observation layout."""
    try:
        cfg.validate()
        layout, _, action_space = probe_spaces(cfg.env)
        check_action_space(cfg.algo, action_space, cfg.env.id)
    except (ValueError, FileNotFoundError) as err:
        raise RLSetupError(str(err)) from err
    if resume is not None:
        if resume.layout != layout:
            raise RLSetupError(f"cannot resume: checkpoint observations {resume.layout.to_dict()} differ from the "
                               f"env's {layout.to_dict()}")
        if resume.checkpoint.step >= cfg.total_timesteps:
            raise RLSetupError(f"nothing to resume: the run is at step {resume.checkpoint.step} >= "
                               f"total_timesteps={cfg.total_timesteps}")
    return layout


def _segment_seed(seed: int, step: int) -> int:
    """A resumed segment must not replay the episodes of the first one: its seed derives from (seed, step)."""
    if step == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1)[0] % (2**31 - 1))


def train(cfg: RLTrainConfig, run_dir: Path, resume: RLCheckpoint | None = None,
          callbacks: Sequence = ()) -> TrainResult:
    """Train until cfg.total_timesteps (or the time budget); returns the final checkpoint and evaluation.

    The run directory is locked for the whole training: a second training into it raises LockHeldError at once.
    """
    layout = check_run(cfg, resume)
    run_dir = Path(run_dir)
    run_lock = lock_run_dir(run_dir)
    try:
        latest = latest_checkpoint(run_dir)
        if resume is None:
            _check_fresh_run_dir(run_dir)  # again, now that no other process can add checkpoints
        else:
            if latest is None or latest.resolve() != resume.checkpoint.path.resolve():
                raise RLSetupError(f"cannot resume {run_dir}: its latest checkpoint is now {latest}, not "
                                   f"{resume.checkpoint.path} (another process trained it meanwhile); resume it "
                                   "again")
            # Rows logged after the checkpoint are logged again by the resumed segment.
            for csv_log in run_dir.glob("progress*.csv"):
                truncate_csv(csv_log, resume.checkpoint.step, "time/total_timesteps")
        return _train(cfg, run_dir, resume, callbacks, layout)
    finally:
        run_lock.release()


def _train(cfg: RLTrainConfig, run_dir: Path, resume: RLCheckpoint | None, callbacks: Sequence, layout) -> TrainResult:
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, Logger

    start_step = resume.checkpoint.step if resume is not None else 0
    config_dict = to_dict(cfg)
    write_text_atomic(run_dir / "config.json", json.dumps(config_dict, indent=2))
    torch.set_num_threads(cfg.torch_threads)

    algo = cfg.algo
    venv = make_training_vec_env(cfg.env, algo.n_envs, _segment_seed(cfg.seed, start_step), cfg.vec_env,
                                 algo.normalize_obs, algo.normalize_reward, algo.gamma, algo.clip_obs)
    eval_envs = None
    logger = None
    try:
        model = build_model(algo, venv, seed=_segment_seed(cfg.seed, start_step), verbose=cfg.verbose)
        if resume is not None:
            restore_training_state(resume, model, venv)
        logger = ExperimentLogger(cfg.logger, run_dir, config_dict,
                                  run_id=resume.state.get("wandb_run_id") if resume is not None else None)
        # SB3's CSV writer truncates its file, so each resumed segment gets its own.
        csv_name = "progress.csv" if start_step == 0 else f"progress_from_{start_step}.csv"
        formats = [CSVOutputFormat(str(run_dir / csv_name)), WandbOutputFormat(logger)]
        if cfg.verbose:
            formats.append(HumanOutputFormat(sys.stdout))
        model.set_logger(Logger(str(run_dir), formats))

        def save(m) -> Path:
            return save_rl_checkpoint(run_dir, m, venv, cfg, layout, wandb_run_id=logger.run_id)

        eval_count = 0

        def periodic_eval(m) -> None:
            nonlocal eval_envs, eval_count
            eval_count += 1
            if eval_envs is None:
                eval_envs = make_eval_envs(cfg.env, cfg.eval.n_envs, cfg.eval.async_envs)
            videos = cfg.eval.video_episodes if cfg.eval.video_every and eval_count % cfg.eval.video_every == 0 else 0
            _evaluate_now(m, venv, layout, eval_envs, cfg, cfg.eval.episodes, videos, run_dir, logger)

        budget = TimeBudget(cfg.max_train_seconds) if cfg.max_train_seconds else None
        all_callbacks = [AtRolloutBoundary(cfg.checkpoint.every_steps, save),
                         AtRolloutBoundary(cfg.eval.every_steps, periodic_eval), *callbacks]
        if budget is not None:
            all_callbacks.append(budget)
        sb3_bar = cfg.progress_bar and is_terminal(sys.stderr)  # SB3's bar redraws in place: a terminal only
        if cfg.progress_bar and not sb3_bar:
            all_callbacks.append(ProgressLines(cfg.total_timesteps, f"train {algo.name}"))

        started = time.perf_counter()
        model.learn(
            total_timesteps=cfg.total_timesteps - model.num_timesteps,
            callback=CallbackList(all_callbacks),
            reset_num_timesteps=False,
            progress_bar=sb3_bar,
            log_interval=1 if not algorithm_spec(algo.name).off_policy else 4,
        )
        train_seconds = time.perf_counter() - started
        checkpoint = save(model)
        logger.log({"time/train_seconds": train_seconds}, step=model.num_timesteps)
        final = None
        if cfg.eval.final_episodes:
            if eval_envs is None:
                eval_envs = make_eval_envs(cfg.env, cfg.eval.n_envs, cfg.eval.async_envs)
            final = _evaluate_now(model, venv, layout, eval_envs, cfg, cfg.eval.final_episodes,
                                  cfg.eval.video_episodes, run_dir, logger, tag="final")
            model.logger.dump(model.num_timesteps)
        return TrainResult(run_dir, checkpoint, int(model.num_timesteps), train_seconds,
                           bool(budget and budget.exhausted), final)
    finally:
        venv.close()
        if eval_envs is not None:
            eval_envs.close()
        if logger is not None:
            logger.finish()


def _evaluate_now(model, venv, layout, eval_envs, cfg: RLTrainConfig, episodes: int, video_episodes: int,
                  run_dir: Path, logger: ExperimentLogger, tag: str | None = None) -> EvaluationResult:
    """Evaluate the current policy with a frozen copy of the training normalization statistics."""
    step = int(model.num_timesteps)
    out = run_dir / "eval" / (tag or f"step_{step:012d}")
    policy = SB3VectorPolicy(model.policy, layout, ObservationNormalizer.from_state(vecnormalize_state(venv)))
    result = evaluate(eval_envs, policy, episodes=episodes, seed=cfg.eval.seed, video_episodes=video_episodes,
                      video_dir=out / "videos", metadata={"kind": "rl", "type": cfg.algo.name, "step": step})
    write_results(result, out / "results.json")
    metrics = evaluation_metrics(result)
    logger.log(metrics, step=step)
    logger.log_videos(result.videos, step)
    for key, value in metrics.items():
        model.logger.record(key, value)
    return result
