"""export_checkpoint: an imitation checkpoint of any registered policy family, or an RL one (SB3 actor) -> a verified
bundle."""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtime import Manifest, SourceSpec, file_sha256, write_manifest

from envs.config import make_env
from policies import registry
from training.checkpoints import package_versions
from training.datasets.observations import ObservationMapping

from .bundle import TORCHSCRIPT_FILE, action_spec, build_manifest, json_safe, prepare_output, write_atomically
from .config import ExportConfig
from .env_info import EnvInfo, read_env_info
from .graphs import export_onnx, export_torchscript
from .limits import VELOCITY_SCALE, check_max_velocity, default_max_velocity, observation_bounds
from .parity import ParityError, ParityReport, check_parity, env_inputs, random_inputs, tolerances
from .plan import ExportPlan, export_env, plan_from_description, with_reference
from .profile import MotionProfile, imitation_profile, rollout_profile
from .sources import ExportSource, load_source

OBSERVATION_NOTES = ("inputs in the robot's raw units: float32 state vectors as the env observes them "
                     "(agent_pos -> observation.state, environment_state -> observation.environment_state, other keys "
                     "through the env config's obs_key_map), camera frames (pixels/<camera>, or a single pixels array as "
                     "env.pixels_camera) uint8 in [0, 255] in each feature's layout: HWC (H, W, 3) as camera "
                     "drivers deliver them (ACT, MLP, Diffusion), CHW (3, H, W) where a family declares no layout; batch 1, with an n_obs_steps axis when "
                     "n_obs_steps > 1; normalization is inside the graph")


@dataclass
class ExportResult:
    bundle: Path
    manifest: Manifest
    parity: ParityReport | None
    seconds: float

    def summary(self) -> str:
        m = self.manifest
        text = (f"{m.policy_type} bundle {self.bundle}: chunk {m.control.chunk_size} x {m.action.dim} at "
                f"{m.control.frequency_hz:g} Hz, {m.control.n_action_steps} step(s) per chunk "
                f"({self.seconds:.1f} s)")
        if self.parity is not None:
            worst = max(self.parity.max_abs_diff.values())
            if self.parity.worst_ratio:
                text += (f"; parity max |diff| {worst:.2e} ({max(self.parity.worst_ratio.values()):.2f} of the "
                         f"{self.parity.mode} tolerance)")
            else:
                text += f"; parity max |diff| {worst:.2e} <= {self.parity.atol:g}"
        velocity = m.action.max_velocity
        if velocity is not None:
            origin = m.source.extra.get("safety", {}).get("max_velocity", {}).get("from", "")
            text += (f"; velocity limit {min(velocity):.3g}..{max(velocity):.3g} units/s per joint"
                     f"{' (' + origin.split(' in ')[0] + ')' if origin else ''}")
        return text


def make_plan(source: ExportSource, info: EnvInfo, cfg: ExportConfig) -> ExportPlan:
    """The family's export description (policies/<family>/export.py, found through the registry) as a bundle plan."""
    describe = registry.export_description(source.policy_type)
    plan = plan_from_description(source.policy_type, describe(source.policy, export_env(info), cfg), info)
    return with_reference(plan, source.reference)


def source_spec(source: ExportSource, info: EnvInfo, plan: ExportPlan, cfg: ExportConfig,
                extra: dict[str, Any]) -> SourceSpec:
    versions = package_versions()
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            pass
    meta = {
        "kind": source.kind, "step": source.step, "env": json_safe(dataclasses.asdict(info.env)),
        "exporter": "deploy.export", "exported_unix": time.time(), "opset": cfg.opset, "versions": versions,
        "observation_notes": OBSERVATION_NOTES, "export_notes": json_safe(plan.notes),
        # Where the control rate, action names/units/limits and initial_from came from (env, env config, unknown).
        "env_metadata": json_safe(info.origins),
        **json_safe(source.metadata), **extra,
    }
    return SourceSpec(checkpoint=str(source.path.resolve()), config=json_safe(source.config), extra=meta)


def check_output_location(source: ExportSource, output: Path) -> None:
    ckpt, out = source.path.resolve(), output.resolve()
    if out == ckpt or ckpt in out.parents:
        raise ValueError(f"output {output} is inside the checkpoint {source.path}; write the bundle elsewhere (a "
                         "checkpoint directory holds exactly the files its checkpoint.json lists)")


def motion_profile(source: ExportSource, info: EnvInfo, plan: ExportPlan, sim, cfg: ExportConfig) -> MotionProfile:
    """What the training data did: the checkpoint's dataset statistics (imitation; the dataset itself is read only
    when the statistics lack the speeds and the user gave no max_velocity), or rollouts of the policy itself (RL,
    which has no demonstrations: what the policy does in its training env is the behaviour the limits must keep)."""
    if source.kind == "rl":
        return rollout_profile(sim, plan, info.control_hz, seed=cfg.seed,
                               mapping=ObservationMapping.from_env_config(info.env))
    if source.stats_path is None:
        raise ValueError(f"{source.path}: an imitation checkpoint without dataset statistics")
    dataset = source.dataset_root if cfg.max_velocity is None else None
    return imitation_profile(source.stats_path, dataset, info.control_hz)


def safety_defaults(info: EnvInfo, plan: ExportPlan, profile: MotionProfile, cfg: ExportConfig):
    """(per-joint max_velocity, observation features with ranges, notes for the manifest's source)."""
    if cfg.max_velocity is not None:
        velocity, origin = check_max_velocity(cfg.max_velocity, info), "export option max_velocity"
    else:
        velocity = default_max_velocity(info, profile)
        origin = f"default: {VELOCITY_SCALE:g} x the fastest joint speed in {profile.source}"
    features, ranges = [], {}
    for f in plan.features:
        bounds = observation_bounds(info, f, profile)
        if bounds is not None:
            f = dataclasses.replace(f, low=bounds[0], high=bounds[1])
        if f.is_image and cfg.camera_max_age_s is not None:
            f = dataclasses.replace(f, max_age_s=float(cfg.camera_max_age_s))
        ranges[f.key] = "unchecked" if bounds is None and f.dtype.startswith("float") else (
            "not a float feature" if bounds is None else "joint limits + margin for joint positions, data range "
                                                         "widened for the rest, from " + profile.source)
        features.append(f)
    notes = {"max_velocity": {"values": list(velocity), "from": origin},
             "camera_max_age_s": cfg.camera_max_age_s,
             "observation_ranges": ranges, "motion_profile": profile.to_dict()}
    return velocity, tuple(features), notes


def export_checkpoint(cfg: ExportConfig) -> ExportResult:
    """Write the bundle for cfg.checkpoint into cfg.output; with cfg.verify it is moved into place only after it
    matched the checkpoint within cfg.parity_rtol / parity_atol (else ParityError, and nothing is written)."""
    cfg.validate()
    start = time.perf_counter()
    output = Path(cfg.output)
    prepare_output(output, cfg.overwrite)  # fail before the slow part
    # One env instance for the RL model's spaces, the env's metadata, RL rollouts and parity observations.
    source = load_source(cfg.checkpoint, sim=make_env)
    sim = source.sim
    try:
        check_output_location(source, output)
        if source.env is None:
            raise ValueError(f"{source.path} was trained without an env (env=null): the manifest takes the joint "
                             "names, units, limits and control rate from the env, so this checkpoint cannot be "
                             "exported yet")
        info = read_env_info(source.env, sim)
        plan = make_plan(source, info, cfg)
        profile = motion_profile(source, info, plan, sim, cfg)
        velocity, features, safety = safety_defaults(info, plan, profile, cfg)
        action = action_spec(info, plan, velocity)

        def fill(directory: Path) -> tuple[Manifest, ParityReport | None]:
            for graph in plan.graphs:
                export_onnx(graph, directory, cfg.opset, cfg.optimize)
            extra: dict[str, Any] = {"safety": json_safe(safety)}
            if cfg.torchscript:
                main = plan.graphs[0]
                export_torchscript(main, directory / TORCHSCRIPT_FILE)
                extra["torchscript"] = {"file": TORCHSCRIPT_FILE,
                                        "sha256": file_sha256(directory / TORCHSCRIPT_FILE),
                                        "inputs": list(main.input_names), "output": main.output}
            manifest = build_manifest(directory, plan, action, source_spec(source, info, plan, cfg, extra), features)
            write_manifest(directory, manifest)
            if not cfg.verify:
                return manifest, None
            n = cfg.parity_samples
            sets = {"random": random_inputs(plan, n, np.random.default_rng(cfg.seed)),
                    "env": env_inputs(source.env, plan, n, seed=cfg.seed, sim=sim)}
            mode, tolerance = tolerances(info.action_low, info.action_high, cfg.parity_rtol, cfg.parity_atol)
            report = check_parity(directory, plan, sets, seed=cfg.seed, tolerance=tolerance, mode=mode,
                                  rtol=None if cfg.parity_atol is not None else cfg.parity_rtol)
            if not report.passed:
                limit = (f"parity_atol={cfg.parity_atol:g} action units" if cfg.parity_atol is not None else
                         f"parity_rtol={cfg.parity_rtol:g} x each action range (tolerance "
                         f"{[float(f'{t:.3g}') for t in tolerance]} in {list(info.action_units)})")
                raise ParityError(f"exported bundle differs from {source.path}: max |bundle - torch| per observation "
                                  f"set {report.max_abs_diff} (worst |diff| / tolerance {report.worst_ratio}) exceeds "
                                  f"{limit} (nothing written)")
            manifest = dataclasses.replace(manifest, source=dataclasses.replace(
                manifest.source, extra={**manifest.source.extra, "parity": report.to_dict()}))
            write_manifest(directory, manifest)
            return manifest, report

        manifest, report = write_atomically(output, cfg.overwrite, fill)
    finally:
        if sim is not None:
            sim.close()
    return ExportResult(bundle=output, manifest=manifest, parity=report, seconds=time.perf_counter() - start)
