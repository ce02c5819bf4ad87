"""Closed-loop check of a policy bundle in simulation: ChunkRunner per sub-env, injected latency, success + stats.

    python scripts/eval.py checkpoint=<bundle dir>          (kind "bundle": apps.evaluation loads it with
                                                             load_for_evaluation here)

Inference in simulation is made deterministic: in "async" mode the chunk computed from tick s's observation is
delivered at tick s + ceil((latency + jitter) * control_hz) (deploy.runtime.SimulatedLatency), so the simulated
robot keeps executing the previous chunk meanwhile exactly as on the robot, without depending on this machine's
speed. "sync" runs inference inside the tick (the zero-latency reference), without the robot's sync deadline,
which would make results depend on this machine's load. Episode i of an evaluation reseeds its runner (diffusion
noise, latency jitter) from (seed, i), so results do not depend on n_envs.

When the runner has nothing safe to command (ChunkRunner.tick returns None: every tick of an episode before its
first model action, i.e. before the first valid observation and while the first chunk is computed), a robot's
driver keeps its own hold; the simulated driver does the same by commanding the joints' current measured position
(the manifest's action.initial_from in the current observation): measured_hold.

Besides training.evaluation's results JSON, a bundle's evaluation adds "runner": the summed ChunkRunner statistics
(ticks, held ticks, late/stale chunks, skipped actions, faults, inference latency percentiles), and with
bundle.rollouts writes the executed actions and predicted chunks of every episode for replay (apps.rollouts), each
chunk with the ticks the runner scheduled its actions for (ChunkRunner's on_chunk).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from apps.rollouts import RolloutRecorder
from deploy.runtime import ChunkRunner, SimulatedLatency, load_manifest
from deploy.runtime.stats import RunnerStatistics
from envs.config import EnvConfig
from training.datasets.observations import ObservationMapping
from training.evaluation import EvaluationResult, LoadedPolicy

MODES = ("sync", "async")


@dataclass
class BundleRunConfig:
    """How a bundle runs in closed loop (the eval config's `bundle` group)."""

    mode: str = "sync"  # sync: inference inside the tick; async: delivered after latency_ms (+- jitter_ms)
    latency_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform in [-jitter_ms, +jitter_ms], seeded per episode
    # None: the manifest's steps executed per chunk; in async mode shortened to chunk length - worst delay (ticks)
    # so a chunk requested every n_action_steps ticks arrives before the previous one runs out.
    n_action_steps: Optional[int] = None
    blend_ticks: Optional[int] = None  # async seam crossfade; None: the runner's default (50 ms)
    # None: the manifest's; a number: ACT temporal ensembling every tick with this coefficient (async: a chunk
    # whenever the inference thread is free), instead of n_action_steps per chunk.
    temporal_ensemble_coeff: Optional[float] = None
    max_velocity: Optional[list[float]] = None  # None: the manifest's rate limit (if any); action units / s
    intra_op_threads: int = 1
    seed: int = 0
    # For a bundle whose manifest has no action.initial_from (its observations do not measure the commanded joints,
    # e.g. a foreign env with unnamed actions): the robot's pose in action units at every episode start, as
    # ChunkRunner's initial_action; the simulated driver also holds it until the first command.
    initial_action: Optional[list[float]] = None
    rollouts: bool = False  # write rollouts/ (Parquet + CSV of executed actions and predicted chunks)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"bundle.mode must be one of {MODES}, got {self.mode!r}")
        for name in ("latency_ms", "jitter_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"bundle.{name} must be a finite number >= 0, got {value}")
        if self.mode == "sync" and (self.latency_ms > 0 or self.jitter_ms > 0):
            raise ValueError("bundle.latency_ms / jitter_ms model asynchronous inference: set bundle.mode=async "
                             "(sync mode runs inference inside the tick, with no latency)")
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"bundle.n_action_steps must be >= 1 or null, got {self.n_action_steps}")
        coeff = self.temporal_ensemble_coeff
        if coeff is not None and not math.isfinite(coeff):
            raise ValueError(f"bundle.temporal_ensemble_coeff must be a finite number or null, got {coeff}")
        if coeff is not None and self.n_action_steps not in (None, 1):
            raise ValueError(f"bundle.temporal_ensemble_coeff={coeff:g} predicts every tick: leave "
                             f"bundle.n_action_steps null (got {self.n_action_steps})")
        if self.intra_op_threads < 1:
            raise ValueError(f"bundle.intra_op_threads must be >= 1, got {self.intra_op_threads}")

    def latency(self) -> SimulatedLatency | None:
        if self.mode != "async":
            return None
        return SimulatedLatency(self.latency_ms / 1000.0, self.jitter_ms / 1000.0, seed=self.seed)


def effective_n_action_steps(manifest, run: BundleRunConfig) -> int | None:
    """run.n_action_steps, or in async mode the manifest's shortened so that the next chunk, requested every
    n_action_steps ticks, arrives before the current one runs out: at most chunk length - worst delay in ticks.

    The runner keeps one inference in flight, so a new chunk is requested every max(n_action_steps, delay) ticks;
    a chunk shorter than twice the delay therefore still runs out now and then (held ticks in the statistics).
    """
    ensembling = run.temporal_ensemble_coeff is not None or manifest.control.temporal_ensemble_coeff is not None
    if run.n_action_steps is not None or run.mode != "async" or ensembling:
        return run.n_action_steps
    c = manifest.control
    usable = c.chunk_size - c.chunk_offset
    worst = math.ceil((run.latency_ms + run.jitter_ms) / 1000.0 * c.frequency_hz - 1e-9)
    steps = min(c.n_action_steps, usable - worst)
    if steps < 1:
        raise ValueError(f"latency {run.latency_ms:g} ms (+{run.jitter_ms:g} ms jitter) is {worst} control ticks at "
                         f"{c.frequency_hz:g} Hz, but a chunk of this bundle covers only {usable} ticks: every chunk "
                         "would arrive after its last action was due")
    return steps


def measured_hold(manifest, observation: Mapping[str, Any], previous: np.ndarray | None = None,
                  initial_action: Any = None) -> np.ndarray:
    """The simulated driver's hold for a tick the runner had nothing to command: the joints' measured position
    (manifest action.initial_from of `observation`) clamped to the action limits; `previous` (this episode's last
    command) when the measurement itself is not finite. A bundle without initial_from holds `previous`, else
    `initial_action` (the pose the episode started in)."""
    a = manifest.action
    init = a.initial_from
    if init is None:
        if previous is not None:
            return np.asarray(previous, np.float32).copy()
        if initial_action is not None:
            return np.clip(np.asarray(initial_action, np.float64), a.lower, a.upper).astype(np.float32)
        raise ValueError("the runner had nothing to command and the bundle's manifest names no action.initial_from, "
                         "so the simulated driver cannot hold the measured joint position; pass "
                         "bundle.initial_action=[...] (the pose in action units) or export the bundle from a policy "
                         "that reads the joint state")
    if init.key not in observation:
        raise ValueError(f"the observation has no {init.key!r} (action.initial_from) to hold the measured position")
    measured = np.asarray(observation[init.key], np.float64).reshape(-1)
    if measured.size <= max(init.indices):
        raise ValueError(f"observation {init.key!r} has {measured.size} values; action.initial_from indexes "
                         f"{list(init.indices)}")
    measured = measured[list(init.indices)]
    if not np.isfinite(measured).all():
        if previous is not None:
            return np.asarray(previous, np.float32).copy()
        raise ValueError(f"the runner had nothing to command and the measured position {measured.tolist()} "
                         f"({init.key!r}) is not finite: there is nothing to hold")
    return np.clip(measured, a.lower, a.upper).astype(np.float32)


def _env_config(manifest) -> dict[str, Any]:
    env = manifest.source.extra.get("env") or manifest.source.config.get("env")
    if not isinstance(env, Mapping):
        raise ValueError("the bundle's manifest names no environment (source.env / source.config.env); it was not "
                         "written by deploy.export, so it cannot be run in simulation")
    return dict(env)


class BundleVectorPolicy:
    """A vector policy for training.evaluation.evaluate: one ChunkRunner per sub-env, fed dataset-keyed
    observations (training.datasets.observations, with the env config's mapping), returning the runner's (safe)
    actions."""

    def __init__(self, bundle_dir: str | Path, n_envs: int, run: BundleRunConfig | None = None, recorder=None):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.run = run or BundleRunConfig()
        self.run.validate()
        manifest = load_manifest(bundle_dir)  # hash-checked once here, not again by each sub-env's runner
        self.n_action_steps = effective_n_action_steps(manifest, self.run)
        kwargs: dict[str, Any] = dict(mode=self.run.mode, latency=self.run.latency(),
                                      intra_op_threads=self.run.intra_op_threads,
                                      n_action_steps=self.n_action_steps, blend_ticks=self.run.blend_ticks,
                                      verify_hash=False,
                                      # Sync inference inline, without the robot's wall-clock deadline: results
                                      # must not depend on this machine's load (async latency is simulated).
                                      sync_deadline_s=None)
        if self.run.max_velocity is not None:
            kwargs["max_velocity"] = list(self.run.max_velocity)
        if self.run.temporal_ensemble_coeff is not None:
            kwargs["temporal_ensemble_coeff"] = float(self.run.temporal_ensemble_coeff)
        if manifest.action.initial_from is None:
            if self.run.initial_action is None:
                raise ValueError(f"bundle {bundle_dir}: its manifest has no action.initial_from (the observations do "
                                 "not say where the commanded joints are), so the runner needs the pose each episode "
                                 f"starts in: pass bundle.initial_action=[{manifest.action.dim} values in "
                                 f"{list(manifest.action.units)}]")
            kwargs["initial_action"] = list(self.run.initial_action)
        elif self.run.initial_action is not None:
            raise ValueError(f"bundle {bundle_dir} measures the pose itself (action.initial_from "
                             f"{manifest.action.initial_from.key}): leave bundle.initial_action unset")
        # The env's observations as the bundle's keys, mapped as for training (pixels_camera, obs_key_map); a
        # bundle that names no env (not written by deploy.export) gets the default mapping.
        env = manifest.source.extra.get("env") or manifest.source.config.get("env")
        self.mapping = ObservationMapping.from_env_config(env if isinstance(env, Mapping) else {})
        # (observed tick, start tick) of the chunks each runner accepted during the current tick, for the recorder.
        self._accepted: list[list[tuple[int, int]]] = [[] for _ in range(n_envs)]
        self.runners = []
        for i in range(n_envs):
            on_chunk = None if recorder is None else (lambda o, s, q=self._accepted[i]: q.append((o, s)))
            self.runners.append(ChunkRunner(bundle_dir, on_chunk=on_chunk, **kwargs))
        self.manifest = self.runners[0].manifest
        self.keys = [f.key for f in self.manifest.observation]
        # Cameras: the rendered frame in the layout the bundle takes (HWC as a camera driver delivers it, CHW for a
        # format-1 bundle), stamped with its capture time (rendered for this tick: fresh) like a robot's driver.
        self.hwc = [f.key for f in self.manifest.observation if f.frame_layout == "HWC"]
        self.cameras = [f.key for f in self.manifest.observation if f.frame_layout is not None]
        self.recorder = recorder
        self._episode = [-1] * n_envs  # evaluation episode each sub-env runs
        self._tick = [0] * n_envs
        self._last: list[np.ndarray | None] = [None] * n_envs  # last command sent to each sub-env this episode
        self._started = 0  # evaluate() starts episode k with the k-th reset() call (it assigns them in order)
        if recorder is not None:
            for i, runner in enumerate(self.runners):
                runner.policy = _RecordingPolicy(runner.policy, self, i)

    def reset(self, env_index: int) -> None:
        i = int(env_index)
        episode = self._started
        self._started += 1
        self._episode[i], self._tick[i], self._last[i] = episode, 0, None
        seed = int(np.random.SeedSequence([self.run.seed, episode]).generate_state(1)[0])
        self.runners[i].reset(seed=seed)
        if self.recorder is not None:
            self.recorder.start(episode, None)

    def __call__(self, observations: Any) -> np.ndarray:
        data = self.mapping(observations)
        missing = [k for k in self.keys if k not in data]
        if missing:
            raise ValueError(f"the bundle reads {missing}, which the environment does not observe (it yields "
                             f"{sorted(data)}); evaluate it in the env its manifest names")
        frames = {k: np.moveaxis(data[k], -3, -1) if k in self.hwc else data[k] for k in self.keys}
        actions = []
        for i, runner in enumerate(self.runners):
            held_before = runner.statistics.held_ticks
            captured = runner.clock()
            action = runner.tick({k: frames[k][i] for k in self.keys},
                                 frame_times={k: captured for k in self.cameras} if self.cameras else None)
            no_command = action is None
            if no_command:
                action = measured_hold(self.manifest, {k: v[i] for k, v in data.items()}, self._last[i],
                                       self.run.initial_action)
            self._last[i] = action
            if self.recorder is not None and self._episode[i] >= 0:
                self.recorder.tick(self._episode[i], self._tick[i], action, runner.statistics.held_ticks > held_before,
                                   no_command)
                # Outside tick(), so a recorder error surfaces here instead of as a runner fault.
                for observed, start in self._accepted[i]:
                    self.recorder.accepted(self._episode[i], observed, start, self._tick[i])
            self._accepted[i].clear()
            self._tick[i] += 1
            actions.append(action)
        return np.stack(actions)

    def summary(self) -> dict[str, Any]:
        """ChunkRunner statistics summed over the sub-envs (latency percentiles over all inferences)."""
        total = RunnerStatistics()
        for runner in self.runners:
            s = runner.statistics
            for name, value in vars(s).items():  # every counter, whichever the runtime keeps
                if isinstance(value, int) and not isinstance(value, bool) and not name.startswith("_"):
                    setattr(total, name, getattr(total, name) + value)
            total.faults.update(s.faults)
            total.inference_latency_s.extend(s.inference_latency_s)
            total.delivery_ticks.extend(s.delivery_ticks)
        out = total.summary()
        out["config"] = dataclasses.asdict(self.run)
        out["n_action_steps"] = self.runners[0].n_action_steps
        return out

    def close(self) -> None:
        for runner in self.runners:
            runner.close()

    def results(self, result: EvaluationResult, output_dir: Path) -> dict[str, Any]:
        """Results metadata of the finished evaluation: the runner statistics and, when recording, the rollouts/
        directory written into output_dir (its episodes cut to the evaluated lengths)."""
        out: dict[str, Any] = {"runner": self.summary()}
        if self.recorder is not None:
            for record in result.records:
                if record.episode in self.recorder.episodes:
                    self.recorder.episodes[record.episode].seed = record.seed
            self.recorder.truncate({r.episode: r.length for r in result.records})
            self.recorder.write(output_dir / "rollouts")
            out["rollouts"] = str(output_dir / "rollouts")
        return out


class _RecordingPolicy:
    """Stands in for a runner's BundlePolicy and hands every chunk it computes to the rollout recorder (whether or
    not the runner later uses it: its on_chunk callback says which it accepted and when they are scheduled).

    In sync and simulated-latency modes the runner computes a chunk inside tick(), so the tick being run is the
    chunk's origin.
    """

    def __init__(self, policy, owner: BundleVectorPolicy, index: int):
        self._policy, self._owner, self._index = policy, owner, index

    def __getattr__(self, name: str):
        return getattr(self._policy, name)

    def predict_chunk(self, inputs, noise=None, rng=None):
        chunk = self._policy.predict_chunk(inputs, noise=noise, rng=rng)
        owner, i = self._owner, self._index
        if owner._episode[i] >= 0:
            owner.recorder.chunk(owner._episode[i], owner._tick[i], chunk)
        return chunk


def load_for_evaluation(path: str | Path, device: str = "cpu", run: BundleRunConfig | None = None) -> LoadedPolicy:
    """apps.evaluation's loader for kind "bundle": the env the bundle was exported from and its runners (with a
    rollout recorder when run.rollouts).

    `device` is ignored: the bundle runs on onnxruntime's CPU provider, as on the robot computer.
    """
    # Validated here; the model files are hash-checked once, when make_policy builds the runners.
    manifest = load_manifest(path, verify_hash=False)
    env = EnvConfig.from_any(_env_config(manifest))
    run = run or BundleRunConfig()
    run.validate()
    meta = {"kind": "bundle", "type": manifest.policy_type, "bundle_dir": str(Path(path).resolve()),
            "source_checkpoint": manifest.source.checkpoint, "step": manifest.source.extra.get("step"),
            "bundle": dataclasses.asdict(run)}

    def make_policy(n_envs: int) -> BundleVectorPolicy:
        recorder = None
        if run.rollouts:
            recorder = RolloutRecorder(manifest.action.names, manifest.action.units, manifest.control.frequency_hz,
                                       manifest.control.chunk_offset,
                                       {"bundle_dir": str(Path(path).resolve()), "env_id": env.id,
                                        "run": dataclasses.asdict(run)})
        return BundleVectorPolicy(path, n_envs, run, recorder)

    return LoadedPolicy(env=env, make_policy=make_policy, metadata=meta)
