"""Imitation training: run / resume / load, and the Trainer whose stages (setup, train_step, evaluate, save_checkpoint)
its run() calls in order."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from safetensors.torch import load_file

from policies.chunking import ChunkExecutor
from policies.factory import make_policy
from policies.interface import Policy
from fileio.atomic import write_text_atomic
from fileio.locks import DirectoryLock, LockHeldError
from training import distributed
from training.checkpoints import latest_checkpoint, lock_run_dir
from training.datasets import DatasetMeta, WindowDataset
from training.datasets.format import STATS_PATH
from training.datasets.observations import ObservationMapping
from training.distributed import DistributedContext
from training.evaluation import EvaluationResult, evaluate, make_eval_envs, write_results
from training.imitation import hardware
from training.imitation.checkpoint import (
    ImitationCheckpoint,
    latest_of_run,
    read_imitation_checkpoint,
    save_imitation_checkpoint,
)
from training.imitation.checks import (
    ImitationSetupError,
    check_dataset_fits_env,
    check_env_fits_policy,
    open_dataset,
    probe_env,
)
from training.imitation.config import ImitationTrainConfig, config_from_dict, to_dict
from training.imitation.sampler import make_training_loader, validation_batches
from training.imitation.state import capture_rng, restore_rng, scheduler_state, seed_everything, split_optimizer_state
from training.logging import ExperimentLogger, evaluation_metrics, truncate_metrics
from training.progress import Progress
from training.resume import ResumeError, apply_changes, override_key, parse_overrides, resume_changes

METRICS_FILE = "metrics.jsonl"
# Overrides that may accompany resume=<run dir>: they change how the run executes, not what it computes.
RESUME_OVERRIDABLE = ("resume", "device", "amp", "amp_dtype", "compile", "compile_mode", "torch_threads",
                      "progress_bar", "max_train_seconds", "log_every", "dataset.root", "dataset.num_workers",
                      "logger.mode", "eval.async_envs", "objective")


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    step: int
    train_seconds: float
    stopped_by_time_budget: bool
    final_eval: Optional[EvaluationResult]
    history: list[dict[str, float]] = field(default_factory=list)  # the logged metric rows of this segment
    policy: Optional[Policy] = None  # the trained policy (in memory, on the training device)


# ------------------------------------------------------------------------------------------------ entry points
def run(cfg: ImitationTrainConfig, default_run_dir: str | Path, overrides: Sequence[str] = ()) -> TrainResult:
    """scripts/train.py: a fresh run in cfg.run_dir (or default_run_dir), or `resume=<run dir>` (see `resume`)."""
    if cfg.resume:
        return _resume(cfg.resume, to_dict(cfg), overrides)
    if cfg.env is None:
        check_no_eval_overrides(overrides)
    return train(cfg, Path(cfg.run_dir or default_run_dir))


def resume(run_dir: str | Path, overrides: Sequence[str] = (),
           should_stop: Callable[[int], bool] | None = None) -> TrainResult:
    """Continue a run from its latest checkpoint with its saved config; `overrides` ("device=cpu", ...) may change
    only how it executes (RESUME_OVERRIDABLE), any other is refused."""
    return _resume(run_dir, None, overrides, should_stop)


def load(path: str | Path, device: str | torch.device = "cpu") -> Policy:
    """The trained policy of a checkpoint (or of a run directory's latest), in eval mode."""
    return read_imitation_checkpoint(path).load_policy(device).eval()


def _resume(run_dir: str | Path, given: Mapping[str, Any] | None, overrides: Sequence[str],
            should_stop: Callable[[int], bool] | None = None) -> TrainResult:
    try:
        resumed = latest_of_run(run_dir)
    except (FileNotFoundError, ValueError) as err:
        raise ImitationSetupError(str(err)) from err
    cfg = resumed_config(resumed, given, overrides, run_dir)
    if distributed.launched_rank() == 0:
        print(f"resuming {run_dir} at step {resumed.step} with the run's saved config")
    return train(cfg, Path(run_dir), resume=resumed, should_stop=should_stop)


def check_no_eval_overrides(overrides: Sequence[str]) -> None:
    """With env=null nothing is evaluated; an evaluation asked for on the command line is refused, not ignored."""
    asked = [o for o in overrides if override_key(o).startswith("eval.") and override_key(o) != "eval.async_envs"
             and o.split("=", 1)[-1].strip() not in ("0", "null")]
    if asked:
        raise ImitationSetupError(f"env is null (training from the dataset alone), so there is no evaluation in "
                                  f"simulation, but {asked} asks for one; drop it or choose an env=...")


def resumed_config(resumed: ImitationCheckpoint, given: ImitationTrainConfig | Mapping[str, Any] | None,
                   overrides: Sequence[str], run_dir: str | Path | None = None) -> ImitationTrainConfig:
    """The saved config of the run, with the execution-only overrides of RESUME_OVERRIDABLE applied; their values
    come from `given` (the config they built) or, without one, from the overrides themselves."""
    if isinstance(given, ImitationTrainConfig):
        run_dir, given = run_dir or given.resume, to_dict(given)
    try:
        given = parse_overrides(overrides) if given is None else given
        changes = resume_changes(given, overrides, RESUME_OVERRIDABLE, {"policy": resumed.policy_type}, run_dir)
        return config_from_dict(apply_changes(to_dict(resumed.config), changes))
    except (ResumeError, ValueError) as err:
        raise ImitationSetupError(str(err)) from err


# ------------------------------------------------------------------------------------------------ setup
def dataset_fingerprint(meta: DatasetMeta, stats_text: str) -> dict:
    return {"total_episodes": meta.total_episodes, "total_frames": meta.total_frames, "fps": meta.fps,
            "stats_sha256": hashlib.sha256(stats_text.encode()).hexdigest()}


def build_policy(cfg: ImitationTrainConfig, meta: DatasetMeta) -> Policy:
    """The policy for this dataset (features filled from it, normalization from its stats), with clear errors."""
    try:
        return make_policy(cfg.policy, features=meta.shapes(channel_first=True), stats=meta.stats)
    except (ValueError, FileNotFoundError) as err:
        raise ImitationSetupError(f"dataset {meta.root} does not fit the {cfg.policy.type} policy config: {err}") from err


def split_episodes(cfg: ImitationTrainConfig, meta: DatasetMeta) -> tuple[list[int], list[int]]:
    total = meta.total_episodes
    selected = list(range(total)) if cfg.dataset.episodes is None else [int(e) for e in cfg.dataset.episodes]
    bad = [e for e in selected if not 0 <= e < total]
    if bad:
        raise ImitationSetupError(f"dataset.episodes {bad} out of range: dataset {meta.root} has {total} episodes")
    n_val = cfg.dataset.val_episodes
    if n_val >= len(selected):
        raise ImitationSetupError(f"dataset.val_episodes={n_val} leaves no training episode out of {len(selected)}")
    return (selected[: len(selected) - n_val], selected[len(selected) - n_val :]) if n_val else (selected, [])


def init_weights_from(policy: Policy, path: str) -> None:
    """Copy the weights (and normalization) of an imitation checkpoint of the same policy type and features."""
    try:
        source = read_imitation_checkpoint(path)
    except (FileNotFoundError, ValueError, NotADirectoryError) as err:
        raise ImitationSetupError(f"init_from={path!r}: {err}") from err
    if source.policy_type != policy.name:
        raise ImitationSetupError(
            f"init_from={path!r} holds a {source.policy_type!r} policy, but this run trains {policy.name!r}; "
            f"use policy={source.policy_type} or a {policy.name} checkpoint"
        )
    other = source.load_policy("cpu")
    for name in ("input_features", "output_features"):
        if getattr(other.config, name) != getattr(policy.config, name):
            raise ImitationSetupError(f"init_from={path!r}: its {name} {getattr(other.config, name)} differ from this "
                                      f"run's {getattr(policy.config, name)}")
    try:
        policy.load_state_dict(other.state_dict(), strict=True)
    except RuntimeError as err:
        raise ImitationSetupError(f"init_from={path!r}: the network sizes differ from this run's policy config: "
                                  f"{str(err).splitlines()[0]}") from err


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: ImitationTrainConfig):
    from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if cfg.optim.scheduler == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, cfg.optim.warmup_steps, cfg.steps)
    return get_constant_schedule_with_warmup(optimizer, cfg.optim.warmup_steps)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


class _LossModule(torch.nn.Module):
    """policy.compute_loss as a module's forward: DistributedDataParallel synchronizes gradients only for work done
    inside its wrapped module's forward, and torch.compile compiles a module as a whole."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.policy.compute_loss(batch)


def _loss_function(policy: Policy, cfg: ImitationTrainConfig, ctx: DistributedContext, device: torch.device):
    """What a training step calls for (loss, logs): the policy itself in a plain single-process run (so that run is
    exactly what it always was), else the policy wrapped in DDP and/or torch.compile."""
    if not ctx.enabled and not cfg.compile:
        return policy.compute_loss
    module: torch.nn.Module = _LossModule(policy)
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # Some policies leave parameters out of the loss (ACT's single decoder layer attends over a constant query);
        # DDP must then look for them each step, or it waits for their gradients forever.
        module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                         find_unused_parameters=True)
    if cfg.compile:
        module = torch.compile(module, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
    return module


def _restore_rng_of_rank(resume: ImitationCheckpoint, ctx: DistributedContext, seed: int) -> None:
    """Each rank continues its own random streams; a run resumed on another number of processes cannot, so ranks
    beyond the first are reseeded (data order, weights and optimizer still continue exactly)."""
    tensors, state = resume.tensors(), resume.state
    if ctx.rank == 0:
        restore_rng(tensors, state["rng"])
        return
    if state.get("world_size", 1) == ctx.world_size:
        prefix = f"rank{ctx.rank}."
        restore_rng({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                    state["rank_rng"][str(ctx.rank)])
    else:
        seed_everything(ctx.rank_seed(seed, resume.step))


def sweep_objective(result: TrainResult, metric: str) -> float:
    """The last logged value of `metric` in a run (what scripts/train.py returns to a Hydra sweeper)."""
    values = [row[metric] for row in result.history if metric in row]
    if not values:
        logged = sorted({k for row in result.history for k in row if k != "step"})
        raise ValueError(f"objective={metric!r} was never logged by this run; it logged {logged}")
    return float(values[-1])


# ------------------------------------------------------------------------------------------------ the loop
def train(cfg: ImitationTrainConfig, run_dir: Path, resume: ImitationCheckpoint | None = None,
          should_stop: Callable[[int], bool] | None = None) -> TrainResult:
    """Train to cfg.steps (or the time budget); `should_stop(step)` may end the segment early after a checkpoint.

    Started by torchrun (or a submitit job with several tasks), the processes train one model data-parallel:
    cfg.batch_size is the global batch, rank 0 alone logs, evaluates and writes checkpoints.
    """
    cfg.validate()
    device = hardware.choose_device(cfg.device)
    ctx = distributed.setup(device.type)
    run_lock = None
    try:
        # Each rank resolved its own default run dir (Hydra's time stamp); rank 0's is the run's.
        run_dir = Path(ctx.broadcast_object(str(run_dir)))
        run_lock = _lock_run_dir(run_dir, ctx, resume)
        trainer = Trainer(cfg, run_dir, resume, should_stop, ctx,
                          hardware.choose_device(cfg.device, local_rank=ctx.local_rank if ctx.enabled else None))
        try:
            trainer.setup()
            return trainer.run()
        finally:
            trainer.close()
    finally:
        if run_lock is not None:
            run_lock.release()
        ctx.close()


def _lock_run_dir(run_dir: Path, ctx: DistributedContext, resume: ImitationCheckpoint | None) -> DirectoryLock | None:
    """Rank 0 alone writes the run dir, so it alone takes its lock, before any work; every rank learns the outcome,
    so no rank waits in a collective for one that stopped. With the lock held, rank 0 drops the metrics rows that the
    resumed steps will log again (all of them for a fresh start: they belong to a run that left no checkpoint)."""
    lock, problem = None, None
    if ctx.is_main:
        try:
            lock = lock_run_dir(run_dir)
            latest = latest_checkpoint(run_dir)
            if resume is not None and (latest is None or latest.resolve() != resume.path.resolve()):
                raise ImitationSetupError(f"cannot resume {run_dir}: its latest checkpoint is now {latest}, not "
                                          f"{resume.path} (another process trained it meanwhile); resume it again")
            if resume is not None or latest is None:
                truncate_metrics(run_dir / METRICS_FILE, resume.step if resume is not None else -1)
        except (LockHeldError, ImitationSetupError) as err:
            if lock is not None:
                lock.release()
            problem = err
    message = ctx.broadcast_object(None if problem is None else str(problem))
    if problem is not None:
        raise problem
    if message is not None:
        raise ImitationSetupError(message)
    return lock


class Trainer:
    """One segment of an imitation run, in the order it happens: `setup()` builds and checks everything,
    `run()` is the loop (train_step, logs, validation_loss, evaluate, save_checkpoint) and returns the result."""

    def __init__(self, cfg: ImitationTrainConfig, run_dir: Path, resume: ImitationCheckpoint | None,
                 should_stop: Callable[[int], bool] | None, ctx: DistributedContext, device: torch.device) -> None:
        self.cfg, self.run_dir, self.resume, self.should_stop = cfg, run_dir, resume, should_stop
        self.ctx, self.device, self.main = ctx, device, ctx.is_main
        self.history: list[dict[str, float]] = []
        self.eval_envs = None
        self.logger: ExperimentLogger | None = None

    # -------------------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        """Everything that can be wrong with the inputs fails here, before the first step. The order is part of the
        behaviour: the random streams must be where an uninterrupted run has them when the loop starts."""
        self._use_device()
        meta, env_features = self._check_inputs()
        self._build_policy_and_data(meta, env_features)
        wandb_id = self._build_optimization()
        self._prepare_run(wandb_id)
        self._position_random_streams()  # last: nothing done while setting up may shift them
        if self.main:
            print(self.describe())

    def _use_device(self) -> None:
        cfg, ctx, device = self.cfg, self.ctx, self.device
        if device.type == "cpu":
            # The idle cores are shared by the processes of a CPU data-parallel run.
            threads = cfg.torch_threads
            if threads is None:
                threads = max(1, hardware.choose_threads(None) // ctx.world_size)
            torch.set_num_threads(threads)
        self.amp_dtype = hardware.amp_dtype(device, cfg.amp, cfg.amp_dtype)

    def _check_inputs(self) -> tuple[DatasetMeta, dict | None]:
        """The dataset (and, for a resumed run, that it is the run's own) and how it fits the env."""
        cfg, resume = self.cfg, self.resume
        meta = open_dataset(cfg.dataset.root)
        self.stats_text = (meta.root / STATS_PATH).read_text()
        self.fingerprint = dataset_fingerprint(meta, self.stats_text)
        if resume is not None and resume.state.get("dataset") != self.fingerprint:
            raise ImitationSetupError(f"cannot resume: dataset {meta.root} is not the one the run was trained on "
                                      f"(recorded {resume.state.get('dataset')}, found {self.fingerprint})")
        env_features = None
        if cfg.env is not None:  # without one (env=null) the dataset alone defines the features
            env_features, control_hz = probe_env(cfg.env)
            check_dataset_fits_env(meta, cfg.env, control_hz)
        return meta, env_features

    def _build_policy_and_data(self, meta: DatasetMeta, env_features: dict | None) -> None:
        cfg, ctx, resume = self.cfg, self.ctx, self.resume
        seed_everything(cfg.seed)  # the same on every rank: every process builds the same initial weights
        self.policy = policy = build_policy(cfg, meta)
        if cfg.env is not None:
            check_env_fits_policy(policy, cfg.env, env_features)
        if cfg.init_from and resume is None:
            init_weights_from(policy, cfg.init_from)
        self.train_eps, self.val_eps = split_episodes(cfg, meta)
        deltas = policy.delta_indices()
        self.train_ds = WindowDataset(meta, deltas, episodes=self.train_eps,
                                      in_memory_images=cfg.dataset.in_memory_images)
        self.val_ds = (WindowDataset(meta, deltas, episodes=self.val_eps, in_memory_images=cfg.dataset.in_memory_images)
                       if self.val_eps else None)
        if cfg.batch_size > len(self.train_ds):
            raise ImitationSetupError(f"batch_size={cfg.batch_size} exceeds the {len(self.train_ds)} training samples "
                                      f"of dataset {meta.root}")
        if cfg.batch_size % ctx.world_size:
            raise ImitationSetupError(f"batch_size={cfg.batch_size} is the global batch and must be divisible by the "
                                      f"{ctx.world_size} training processes")

    def _build_optimization(self) -> str | None:
        """Optimizer, schedule and loss scaling, continued from the checkpoint when resuming; returns the wandb id."""
        cfg, device, resume, policy = self.cfg, self.device, self.resume, self.policy
        policy.to(device)
        self.optimizer = torch.optim.AdamW(policy.optim_param_groups(), betas=tuple(cfg.optim.betas),
                                           eps=cfg.optim.eps)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.scaler = hardware.grad_scaler(device, self.amp_dtype)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.step, self.seconds_before, wandb_id = 0, 0.0, None
        if resume is not None:
            weights = load_file(str(resume.checkpoint.file("policy/model.safetensors")), device=str(device))
            policy.load_state_dict(weights, strict=True)
            resume.restore_optimization(self.optimizer, self.scheduler, self.scaler)
            self.step = resume.step
            self.seconds_before = float(resume.state.get("train_seconds", 0.0))
            wandb_id = resume.state.get("wandb_run_id")
        if self.step >= cfg.steps:
            raise ImitationSetupError(f"nothing to do: the run is at step {self.step} >= steps={cfg.steps}")
        return wandb_id

    def _prepare_run(self, wandb_id: str | None) -> None:
        """The run dir with its config, the data loader at the run's position, the loss function and the logger."""
        cfg, ctx, device, resume = self.cfg, self.ctx, self.device, self.resume
        if resume is None and latest_checkpoint(self.run_dir) is not None:
            raise ImitationSetupError(f"{self.run_dir} already holds a run with checkpoints; continue it with "
                                      f"resume={self.run_dir} or choose another run_dir")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_dict = to_dict(cfg)
        if self.main:
            write_text_atomic(self.run_dir / "config.json", json.dumps(config_dict, indent=2))
        self.loader, self.sampler = make_training_loader(
            self.train_ds, cfg.batch_size, cfg.seed, start_batch=self.step, num_workers=cfg.dataset.num_workers,
            pin_memory=device.type == "cuda", rank=ctx.rank, world_size=ctx.world_size)
        self.loss_function = _loss_function(self.policy, cfg, ctx, device)
        self.logger = ExperimentLogger(cfg.logger, self.run_dir, config_dict, run_id=wandb_id) if self.main else None
        self.val_ids = (validation_batches(self.val_ds, cfg.batch_size, cfg.val_batches) if self.val_ds is not None
                        else [])

    def _position_random_streams(self) -> None:
        """Where the interrupted run left them (each rank its own), or a fresh run's per-rank seeds."""
        cfg, ctx, resume = self.cfg, self.ctx, self.resume
        if resume is not None:
            _restore_rng_of_rank(resume, ctx, cfg.seed)
            saved_world = resume.state.get("world_size", 1)
            if self.main and saved_world != ctx.world_size:
                print(f"the run was saved by {saved_world} process(es) and continues on {ctx.world_size}: data "
                      "order, weights and optimizer continue exactly, the random streams of ranks > 0 are reseeded")
        elif ctx.rank > 0:
            seed_everything(ctx.rank_seed(cfg.seed))  # dropout masks and noise differ between the ranks' samples

    def describe(self) -> str:
        """One line on what is trained where, printed before the first step."""
        cfg, device, ctx = self.cfg, self.device, self.ctx
        n_params = sum(p.numel() for p in self.policy.parameters() if p.requires_grad)
        where = f"{device}" + (f" x {ctx.world_size} processes" if ctx.enabled else "")
        precision = "float32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.")
        return (f"{self.policy.name}: {n_params / 1e6:.2f}M trainable parameters; {len(self.train_ds)} training "
                f"samples from {len(self.train_eps)} episodes ({len(self.val_eps)} held out); {where}"
                + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else "") + f", {precision}"
                + (", torch.compile" if cfg.compile else "")
                + (f"; resuming at step {self.step}" if self.step else ""))

    # -------------------------------------------------------------------------------------------- stages
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step on a batch; returns the metrics of the step (the global batch's under DDP)."""
        cfg, optimizer, scaler = self.cfg, self.optimizer, self.scaler
        batch = _to_device(batch, self.device)
        with hardware.autocast(self.device, self.amp_dtype):
            loss, logs = self.loss_function(batch)
        # The loss and the policy's logs (0-dim tensors) reach the host together: one device sync per step.
        keys = list(logs)
        values = torch.stack([loss.detach().float(), *(logs[k].float() for k in keys)]).tolist()
        if self.ctx.enabled:  # the loss of the global batch, and one finite-loss verdict for all ranks
            values = self.ctx.mean_over_ranks(values, self.device)
        global_loss, logs = values[0], dict(zip(keys, values[1:]))
        if not math.isfinite(global_loss):
            raise FloatingPointError(f"training loss is {global_loss} at step {self.step}; lower "
                                     "policy.optimizer_lr or check the dataset statistics")
        metrics = {}
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.optim.grad_clip_norm > 0:
            metrics["train/grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip_norm))
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self.policy.after_optimizer_step()
        metrics.update({f"train/{key}": value for key, value in logs.items()})
        return metrics

    def log(self, row: dict[str, float], step: int) -> None:
        """Rank 0 alone: to history, wandb and metrics.jsonl."""
        if not self.main:
            return
        row = {"step": step, **row}
        self.history.append(row)
        self.logger.log(row, step=step)
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")

    def validation_loss(self) -> float:
        policy, device = self.policy, self.device
        policy.eval()
        total, count = 0.0, 0
        with torch.random.fork_rng(devices=_rng_devices(device)), torch.no_grad():
            torch.manual_seed(self.cfg.seed)  # the same diffusion noise at every validation: losses are comparable
            for ids in self.val_ids:
                with hardware.autocast(device, self.amp_dtype):
                    loss, _ = policy.compute_loss(_to_device(self.val_ds[ids], device))
                total += float(loss) * len(ids)
                count += len(ids)
        policy.train()
        return total / max(count, 1)

    def evaluate(self, episodes: int, videos: int, tag: str) -> EvaluationResult:
        """Episodes in simulation with the current weights, outside the training random streams; logged."""
        cfg, policy, step = self.cfg, self.policy, self.step
        if self.eval_envs is None:
            self.eval_envs = make_eval_envs(cfg.env, cfg.eval.n_envs, cfg.eval.async_envs)
        out = self.run_dir / "eval" / tag
        runner = ChunkExecutor(policy, self.eval_envs.num_envs, seed=cfg.seed,
                               observation_map=ObservationMapping.from_env_config(cfg.env))
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            result = evaluate(self.eval_envs, runner, episodes=episodes, seed=cfg.eval.seed, video_episodes=videos,
                              video_dir=out / "videos",
                              metadata={"kind": "imitation", "type": policy.name, "step": step})
        policy.train()
        write_results(result, out / "results.json")
        self.log(evaluation_metrics(result), step)
        self.logger.log_videos(result.videos, step)
        return result

    def save_checkpoint(self, train_seconds: float) -> Path:
        """Collective: every rank hands in its RNG state, rank 0 writes, and nobody goes on before it is complete."""
        ctx, cfg, step = self.ctx, self.cfg, self.step
        rng_tensors, rng_plain = capture_rng()
        gathered = ctx.all_gather_object((rng_tensors, rng_plain)) if ctx.enabled else []
        path = None
        if self.main:
            opt_tensors, opt_plain = split_optimizer_state(self.optimizer.state_dict())
            epoch, batch_in_epoch = self.sampler.position(step)
            state = {
                "batches_consumed": step, "data_position": {"epoch": epoch, "batch": batch_in_epoch},
                "train_seconds": train_seconds, "seed": cfg.seed, "optimizer": opt_plain,
                "scheduler": scheduler_state(self.scheduler),
                "grad_scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": rng_plain, "dataset": self.fingerprint, "wandb_run_id": self.logger.run_id,
            }
            if ctx.enabled:
                state["world_size"] = ctx.world_size
                state["rank_rng"] = {str(r): plain for r, (_, plain) in enumerate(gathered) if r > 0}
                for r, (tensors, _) in enumerate(gathered[1:], start=1):
                    rng_tensors.update({f"rank{r}.{k}": v for k, v in tensors.items()})
            path = save_imitation_checkpoint(self.run_dir, cfg, self.policy, step, state,
                                             {**opt_tensors, **rng_tensors}, self.stats_text)
        return Path(ctx.broadcast_object(str(path) if path else None))

    # -------------------------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        cfg, ctx, main, has_val = self.cfg, self.ctx, self.main, self.val_ds is not None
        last_saved, stopped_by_budget, interrupted, final = None, False, False, None
        window: dict[str, list[float]] = defaultdict(list)  # metrics since the last logged row
        segment_start = window_start = time.perf_counter()
        excluded = 0.0  # evaluation time in this segment, not counted as training time
        train_seconds = self.seconds_before
        # Stop decisions must be the same on every rank (rank 0's), or the others would wait for it forever.
        may_stop_early = cfg.max_train_seconds is not None or self.should_stop is not None
        with Progress(cfg.steps, f"train {self.policy.name}", enabled=cfg.progress_bar and main,
                      initial=self.step) as bar:
            if has_val and cfg.val_every and self.step == 0:
                if main:
                    self.log({"val/loss": self.validation_loss()}, 0)  # the untrained reference for later values
                ctx.barrier()
            self.policy.train()
            batches = iter(self.loader)
            while self.step < cfg.steps:
                metrics = self.train_step(next(batches))
                self.step += 1
                step = self.step
                bar.update(1)
                for key, value in metrics.items():
                    window[key].append(value)
                train_seconds = self.seconds_before + time.perf_counter() - segment_start - excluded

                if step % cfg.log_every == 0 or step == cfg.steps:
                    now = time.perf_counter()
                    row = {k: sum(v) / len(v) for k, v in window.items()}
                    row.update({"train/lr": self.optimizer.param_groups[0]["lr"],
                                "train/epoch": step / self.sampler.batches_per_epoch,
                                "train/steps_per_second": len(window["train/loss"]) / max(now - window_start, 1e-9),
                                "time/train_seconds": train_seconds})
                    self.log(row, step)
                    bar.update(0, loss=row.get("train/loss", float("nan")), lr=f"{row['train/lr']:.2e}")
                    window.clear()
                    window_start = time.perf_counter()

                evaluating = cfg.eval.every_steps and step % cfg.eval.every_steps == 0 and step < cfg.steps
                validating = has_val and ((cfg.val_every and step % cfg.val_every == 0) or evaluating)
                if validating or evaluating:
                    t0 = time.perf_counter()
                    if main and validating:
                        self.log({"val/loss": self.validation_loss()}, step)
                    if main and evaluating:
                        self.evaluate(cfg.eval.episodes, cfg.eval.video_episodes, f"step_{step:012d}")
                    ctx.barrier()
                    excluded += time.perf_counter() - t0
                    window_start += time.perf_counter() - t0

                stopped_by_budget = cfg.max_train_seconds is not None and train_seconds >= cfg.max_train_seconds
                interrupted = self.should_stop is not None and self.should_stop(step)
                if ctx.enabled and may_stop_early:
                    stopped_by_budget, interrupted = ctx.broadcast_object((stopped_by_budget, interrupted))
                periodic = cfg.checkpoint.every_steps and step % cfg.checkpoint.every_steps == 0
                if periodic or step == cfg.steps or stopped_by_budget or interrupted:
                    last_saved = self.save_checkpoint(train_seconds)
                if stopped_by_budget or interrupted:
                    break
            bar.close()  # before the lines below

            step = self.step
            if stopped_by_budget and main:
                print(f"time budget of {cfg.max_train_seconds:g} s of training reached at step {step} of {cfg.steps}")
            # After the last checkpoint only rank 0 has work left (the other ranks return).
            if main and has_val and not interrupted and not (cfg.val_every and step % cfg.val_every == 0):
                self.log({"val/loss": self.validation_loss()}, step)
            if main and cfg.eval.final_episodes and not interrupted and cfg.env is not None:
                final = self.evaluate(cfg.eval.final_episodes, cfg.eval.video_episodes, "final")
        return TrainResult(self.run_dir, last_saved, self.step, train_seconds, stopped_by_budget, final,
                           self.history, self.policy)

    def close(self) -> None:
        if self.eval_envs is not None:
            self.eval_envs.close()
        if self.logger is not None:
            self.logger.finish()
