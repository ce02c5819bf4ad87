"""The built-in default job: expert demos -> imitation policy -> evaluation in sim -> ONNX bundle -> closed-loop check.

It chains the packages' own entry points (collect, train, evaluate_checkpoint, export_checkpoint, then
evaluate_checkpoint on the bundle in closed loop), so the quick start exercises exactly what the scripts run.

Every stage writes under one output directory and is skipped when its result is already there, so an interrupted
quick start continues where it stopped: the dataset recorder resumes by itself, training resumes from its latest
checkpoint, and finished evaluations and bundles are reused.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from apps.evaluation import EvaluateConfig, evaluate_checkpoint
from apps.recording import CollectConfig, collect
from deploy.export import ExportConfig, export_checkpoint
from fileio.atomic import write_json_atomic
from training.checkpoints import checkpoint_to_resume, latest_checkpoint
from training.imitation.checkpoint import latest_of_run
from training.imitation.config import config_from_dict, to_dict
from training.imitation.trainer import RESUME_OVERRIDABLE, run

DEFAULT_POLICY: Dict[str, Any] = {
    # A small ACT: state observations need no image backbone, and one decoder layer is LeRobot's default.
    "type": "act", "chunk_size": 20, "n_action_steps": 20, "dim_model": 128, "n_heads": 8, "dim_feedforward": 512,
    "n_encoder_layers": 2, "n_decoder_layers": 1, "use_vae": False, "dropout": 0.0, "optimizer_lr": 5e-4,
}


@dataclass
class PipelineConfig:
    """configs/quickstart.yaml mirrors it."""

    env_id: str = "cerebellum/PickCube-v0"
    demos: int = 150  # 50 leave the policy near 85%: the cube pose and target height need covering
    policy: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_POLICY))  # checked by the policy dataclass
    steps: int = 4000
    batch_size: int = 64
    eval_episodes: int = 50
    n_envs: int = 2
    video_episodes: int = 1  # of the checkpoint's evaluation
    seed: int = 0
    torch_threads: Optional[int] = None  # None: one thread per idle core
    output_dir: str = "outputs/quickstart"
    # A camera name (e.g. front): record it, and train a policy that reads only the arm's joints and this camera,
    # never the object pose (configs/variant/pixels.yaml). null: state observations.
    camera: Optional[str] = None
    image_size: List[int] = field(default_factory=lambda: [96, 96])  # (height, width) of the camera
    max_episode_steps: Optional[int] = None  # null: the task's default episode length
    env_kwargs: Dict[str, Any] = field(default_factory=dict)  # the task's constructor options (env.kwargs)

    def validate(self) -> None:
        """The config of every stage (collect, train, evaluate, export) is built and checked here, so a bad value
        for a late stage is refused before the demos are recorded."""
        for name in ("demos", "steps", "batch_size", "eval_episodes", "n_envs"):
            if getattr(self, name) < 1:
                raise ValueError(f"quickstart: {name} must be >= 1, got {getattr(self, name)}")
        if self.video_episodes < 0:
            raise ValueError(f"quickstart: video_episodes must be >= 0, got {self.video_episodes}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"quickstart: max_episode_steps must be >= 1 or null, got {self.max_episode_steps}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"quickstart: image_size must be [height, width], each >= 8, got {list(self.image_size)}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"quickstart: torch_threads must be >= 1 or null, got {self.torch_threads}")
        if "type" not in self.policy:
            raise ValueError(f"quickstart: policy needs a 'type' (act, diffusion or mlp), got {dict(self.policy)}")
        out = Path(self.output_dir)
        if out.exists() and not out.is_dir():
            raise ValueError(f"quickstart: output_dir={self.output_dir!r} is a file, not a directory")
        try:
            collect_cfg = _collect_config(self, out / "data")
            collect_cfg.validate()
            collect_cfg.resolve()
            _train_config(self, out / "data")
            EvaluateConfig(checkpoint=str(out / "train"), episodes=self.eval_episodes, n_envs=self.n_envs,
                           video_episodes=self.video_episodes)
            ExportConfig(checkpoint=str(out / "train"), output=str(out / "bundle")).validate()
        except ValueError as err:
            raise ValueError(f"quickstart: {err}") from None


@dataclass
class PipelineResult:
    output_dir: Path
    demos: int
    checkpoint: Path
    bundle: Path
    checkpoint_success: float
    bundle_success: float
    same_outcomes: int
    episodes: int
    seconds: Dict[str, float]

    def summary(self) -> str:
        stages = ", ".join(f"{name} {s:.0f} s" for name, s in self.seconds.items())
        return (f"quickstart: {self.demos} demos -> checkpoint {self.checkpoint}\n"
                f"  policy in sim: success {self.checkpoint_success:.1%} over {self.episodes} episodes\n"
                f"  ONNX bundle {self.bundle} through ChunkRunner: success {self.bundle_success:.1%} "
                f"(same outcome as the checkpoint in {self.same_outcomes}/{self.episodes} episodes)\n"
                f"  time: {stages}")


def _env_options(cfg: PipelineConfig) -> Dict[str, Any]:
    """The env options every stage shares (recording, training's env config, evaluation of the checkpoint)."""
    options: Dict[str, Any] = {}
    if cfg.camera is not None:
        # state_pixels: the expert needs the object pose to act; the policy is given only joints and the camera.
        options.update(obs_mode="state_pixels", cameras=[cfg.camera], image_size=list(cfg.image_size))
    if cfg.max_episode_steps is not None:
        options["max_episode_steps"] = cfg.max_episode_steps
    return options


def _collect_env_kwargs(cfg: PipelineConfig) -> Dict[str, Any]:
    return {**_env_options(cfg), **dict(cfg.env_kwargs)}


def _collect_config(cfg: PipelineConfig, data: Path) -> CollectConfig:
    return CollectConfig(env_id=cfg.env_id, env_kwargs=_collect_env_kwargs(cfg), n_episodes=cfg.demos,
                         cameras=[cfg.camera] if cfg.camera else [], output_dir=str(data), seed=cfg.seed,
                         progress=True)


def _policy_config(cfg: PipelineConfig, data: Path) -> Dict[str, Any]:
    """cfg.policy; with a camera, its inputs are the joints and that camera (shapes from the recorded dataset, once
    it exists: before recording, the other fields are checked alone)."""
    policy = dict(cfg.policy)
    info = data / "meta" / "info.json"
    if cfg.camera is not None and info.is_file() and not policy.get("input_features"):
        features = json.loads(info.read_text())["features"]
        image_key = f"observation.images.{cfg.camera}"
        if image_key not in features:
            raise ValueError(f"quickstart: camera={cfg.camera!r} but the dataset {data} holds no {image_key!r} (it "
                             f"has {sorted(k for k in features if k.startswith('observation.'))}); use another "
                             "output_dir, or delete that one to record again")
        h, w, c = features[image_key]["shape"]
        policy["input_features"] = {"observation.state": list(features["observation.state"]["shape"]),
                                    image_key: [c, h, w]}
    return policy


def _train_config(cfg: PipelineConfig, data: Path):
    return config_from_dict({
        "env": {"id": cfg.env_id, **_env_options(cfg), "kwargs": dict(cfg.env_kwargs)},
        "policy": _policy_config(cfg, data),
        "dataset": {"root": str(data)},
        "steps": cfg.steps, "batch_size": cfg.batch_size, "seed": cfg.seed, "torch_threads": cfg.torch_threads,
        "optim": {"warmup_steps": min(500, cfg.steps // 10)},
        "eval": {"final_episodes": 0}, "checkpoint": {"every_steps": max(1, cfg.steps // 4), "keep_last": 1},
        "logger": {"mode": "offline", "project": "cerebellum-quickstart"}, "log_every": max(1, cfg.steps // 20),
    })


def _evaluation(path: Path, cfg: PipelineConfig, output: Path, bundle: bool):
    """Evaluate a checkpoint or a bundle (synchronous closed loop) on fixed seeds, reusing results.json when an
    earlier run finished it."""
    # Videos of the checkpoint only: software rendering costs more than the episodes themselves.
    # Rendering dominates camera episodes: sub-envs in worker processes then use every core (same results).
    eval_cfg = EvaluateConfig(checkpoint=str(path), episodes=cfg.eval_episodes, n_envs=cfg.n_envs,
                              video_episodes=0 if bundle else cfg.video_episodes,
                              async_envs=None if cfg.camera else False)
    done = output / "results.json"
    if done.is_file():
        results = json.loads(done.read_text())
        return [bool(e["success"]) for e in results["per_episode"]], float(results["success_rate"])
    result = evaluate_checkpoint(eval_cfg, output)
    return [r.success for r in result.records], result.success_rate


def _refuse_other_run(saved, wanted, run_dir: Path) -> None:
    """A run is only continued with the config it was started with (its schedule depends on it)."""
    def flat(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            elif key not in RESUME_OVERRIDABLE and key != "run_dir":
                yield f"{prefix}{key}", value

    before, now = dict(flat(to_dict(saved))), dict(flat(to_dict(wanted)))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        details = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
        raise ValueError(f"{run_dir} holds a run trained with another config ({details}); use another output_dir "
                         "or delete that directory to start over")


def run_pipeline(cfg: PipelineConfig, log=print) -> PipelineResult:
    cfg.validate()
    out = Path(cfg.output_dir)
    seconds: Dict[str, float] = {}

    start = time.perf_counter()
    data = out / "data"
    collected = collect(_collect_config(cfg, data))
    seconds["collect"] = time.perf_counter() - start
    expert = (f" (the expert succeeded in {collected.successes}/{collected.attempts} rollouts)"
              if collected.attempts else "")
    log(f"[1/5] demos: {collected.episodes} expert episodes of {cfg.env_id} in {data}{expert}")

    start = time.perf_counter()
    train_cfg = _train_config(cfg, data)
    run_dir = out / "train"
    train_cfg.run_dir = str(run_dir)
    done_step = 0
    if latest_checkpoint(run_dir) is not None:
        earlier = latest_of_run(run_dir)
        _refuse_other_run(earlier.config, train_cfg, run_dir)
        done_step = earlier.step
    if done_step < cfg.steps:
        if done_step:
            train_cfg.resume = str(run_dir)  # continue an interrupted run from its latest checkpoint
        done_step = run(train_cfg, default_run_dir=run_dir).step
    checkpoint = checkpoint_to_resume(run_dir)
    seconds["train"] = time.perf_counter() - start
    log(f"[2/5] trained {cfg.policy['type']} to step {done_step}: {checkpoint}")

    start = time.perf_counter()
    torch_outcomes, torch_rate = _evaluation(checkpoint, cfg, out / "eval", bundle=False)
    seconds["evaluate"] = time.perf_counter() - start
    log(f"[3/5] checkpoint in sim: success {torch_rate:.1%} over {cfg.eval_episodes} episodes ({out / 'eval'})")

    start = time.perf_counter()
    bundle = out / "bundle"
    if not (bundle / "manifest.json").is_file():
        exported = export_checkpoint(ExportConfig(checkpoint=str(checkpoint), output=str(bundle)))
        log(f"[4/5] {exported.summary()}")
    else:
        log(f"[4/5] bundle already exported: {bundle}")
    seconds["export"] = time.perf_counter() - start

    start = time.perf_counter()
    bundle_outcomes, bundle_rate = _evaluation(bundle, cfg, out / "eval_bundle", bundle=True)
    seconds["closed_loop"] = time.perf_counter() - start
    same = sum(a == b for a, b in zip(torch_outcomes, bundle_outcomes))
    log(f"[5/5] bundle in closed loop (torch-free ChunkRunner): success {bundle_rate:.1%}, same outcome as the "
        f"checkpoint in {same}/{cfg.eval_episodes} episodes")

    result = PipelineResult(out, collected.episodes, checkpoint, bundle, torch_rate, bundle_rate, same,
                            cfg.eval_episodes, seconds)
    summary = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}
    write_json_atomic(out / "summary.json", {"config": dataclasses.asdict(cfg), **summary})
    return result
