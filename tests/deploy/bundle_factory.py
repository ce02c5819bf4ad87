"""Tiny hand-built ONNX models with known outputs, and bundles around them, for the deploy tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploy.runtime import (
    ActionSpec,
    ControlSpec,
    DdimSampler,
    Manifest,
    ModelFile,
    ObservationFeature,
    ObservationSlice,
    SourceSpec,
    file_sha256,
    write_manifest,
)

OPSET = 17
STATE_KEY = "observation.state"
IMAGE_KEY = "observation.images.top"
IMAGE_SHAPE = (3, 4, 4)
FAST = 1e6  # default rate limit of the test bundles, action units / s: far above any ramp they produce


def _save(model: onnx.ModelProto, path: Path) -> None:
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def ramp_model(action_dim: int, chunk_size: int, *, n_obs_steps: int = 1, with_image: bool = False,
               sqrt: bool = False) -> onnx.ModelProto:
    """actions[i, j] = f(state)[j] + i, where f(state) = state for one observation step and
    1000 * state[t-1] + state[t] for two; `sqrt` applies Sqrt to the state first (negative state -> NaN actions)."""
    nodes, inits = [], []
    ramp = np.broadcast_to(np.arange(chunk_size, dtype=np.float32)[None, :, None], (1, chunk_size, action_dim))
    inits.append(numpy_helper.from_array(np.ascontiguousarray(ramp), "ramp"))
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    state_shape = [1, action_dim] if n_obs_steps == 1 else [1, n_obs_steps, action_dim]
    inputs = [helper.make_tensor_value_info("state_in", TensorProto.FLOAT, state_shape)]
    source = "state_in"
    if sqrt:
        nodes.append(helper.make_node("Sqrt", [source], ["state_sqrt"]))
        source = "state_sqrt"
    if n_obs_steps == 2:
        inits += [numpy_helper.from_array(np.array(0, np.int64), "i0"),
                  numpy_helper.from_array(np.array(1, np.int64), "i1"),
                  numpy_helper.from_array(np.array(1000.0, np.float32), "k1000")]
        nodes += [helper.make_node("Gather", [source, "i0"], ["prev"], axis=1),
                  helper.make_node("Gather", [source, "i1"], ["cur"], axis=1),
                  helper.make_node("Mul", ["prev", "k1000"], ["prev_scaled"]),
                  helper.make_node("Add", ["prev_scaled", "cur"], ["combined"])]
        source = "combined"
    elif n_obs_steps != 1:
        raise ValueError("ramp_model supports n_obs_steps 1 or 2")
    nodes.append(helper.make_node("Unsqueeze", [source, "axis1"], ["state_3d"]))
    nodes.append(helper.make_node("Add", ["state_3d", "ramp"], ["actions_raw"]))
    out = "actions_raw"
    if with_image:
        # The image is read (so the input stays in the graph) but contributes 0.
        img_shape = [1, *IMAGE_SHAPE] if n_obs_steps == 1 else [1, n_obs_steps, *IMAGE_SHAPE]
        inputs.append(helper.make_tensor_value_info("image_in", TensorProto.UINT8, img_shape))
        inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
        nodes += [helper.make_node("Cast", ["image_in"], ["image_f"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceMean", ["image_f"], ["image_mean"], keepdims=0),
                  helper.make_node("Mul", ["image_mean", "zero"], ["image_zero"]),
                  helper.make_node("Add", [out, "image_zero"], ["actions_img"])]
        out = "actions_img"
    nodes.append(helper.make_node("Identity", [out], ["actions"]))
    output = helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, chunk_size, action_dim])
    graph = helper.make_graph(nodes, "ramp", inputs, [output], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def linear_denoiser(action_dim: int, chunk_size: int, a: float, b: float, c: float, *,
                    condition: bool = False) -> onnx.ModelProto:
    """out = a * sample + b * state (or cond) broadcast over the chunk + c * timestep."""
    cond_name = "cond_in" if condition else "state_in"
    inputs = [helper.make_tensor_value_info("sample_in", TensorProto.FLOAT, [1, chunk_size, action_dim]),
              helper.make_tensor_value_info("t_in", TensorProto.INT64, [1]),
              helper.make_tensor_value_info(cond_name, TensorProto.FLOAT, [1, action_dim])]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("a", a), ("b", b), ("c", c))]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    nodes = [helper.make_node("Mul", ["sample_in", "a"], ["as"]),
             helper.make_node("Unsqueeze", [cond_name, "axis1"], ["cond3"]),
             helper.make_node("Mul", ["cond3", "b"], ["bs"]),
             helper.make_node("Cast", ["t_in"], ["t_f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["t_f", "c"], ["ct"]),
             helper.make_node("Add", ["as", "bs"], ["ab"]),
             helper.make_node("Add", ["ab", "ct"], ["model_out"])]
    graph = helper.make_graph(nodes, "denoiser", inputs,
                              [helper.make_tensor_value_info("model_out", TensorProto.FLOAT,
                                                             [1, chunk_size, action_dim])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def doubling_encoder(action_dim: int) -> onnx.ModelProto:
    """cond = 2 * state."""
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    graph = helper.make_graph([helper.make_node("Mul", ["state_in", "two"], ["cond"])], "encoder",
                              [helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, action_dim])],
                              [helper.make_tensor_value_info("cond", TensorProto.FLOAT, [1, action_dim])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def make_manifest(action_dim: int = 2, chunk_size: int = 5, n_action_steps: int = 5, *, model_sha256: str = "0" * 64,
                  frequency_hz: float = 50.0, n_obs_steps: int = 1, chunk_offset: int = 0,
                  temporal_ensemble_coeff: float | None = None, limit: float = 1e4,
                  max_velocity: float | tuple[float, ...] | None = FAST, initial_from: bool = True,
                  state_range: tuple[float, float] | None = None,
                  max_tracking_error: float | tuple[float, ...] | None = None,
                  with_image: bool = False, policy_type: str = "act", sampler=None,
                  model_inputs: dict[str, str] | None = None, model_output: str = "actions") -> Manifest:
    """A manifest with the runtime's safety fields: by default the state measures the commanded joints
    (initial_from) and the rate limit is FAST (never binding in these tests); `state_range` = (low, high) for every
    state element, scalars broadcast to one value per joint."""
    def per_joint(value):
        return None if value is None else tuple(float(v) for v in np.broadcast_to(value, (action_dim,)))

    low, high = (None, None) if state_range is None else (per_joint(state_range[0]), per_joint(state_range[1]))
    observation = [ObservationFeature(key=STATE_KEY, shape=(action_dim,), dtype="float32",
                                      units=tuple("rad" for _ in range(action_dim)),
                                      names=tuple(f"joint{j}" for j in range(action_dim)), low=low, high=high)]
    inputs = {STATE_KEY: "state_in"}
    if with_image:
        observation.append(ObservationFeature(key=IMAGE_KEY, shape=IMAGE_SHAPE, dtype="uint8", units="pixel"))
        inputs[IMAGE_KEY] = "image_in"
    return Manifest(
        policy_type=policy_type,
        control=ControlSpec(frequency_hz=frequency_hz, chunk_size=chunk_size, n_action_steps=n_action_steps,
                            n_obs_steps=n_obs_steps, chunk_offset=chunk_offset,
                            temporal_ensemble_coeff=temporal_ensemble_coeff),
        observation=tuple(observation),
        action=ActionSpec(names=tuple(f"joint{j}" for j in range(action_dim)),
                          units=tuple("rad" for _ in range(action_dim)),
                          lower=tuple(-limit for _ in range(action_dim)), upper=tuple(limit for _ in range(action_dim)),
                          max_velocity=per_joint(max_velocity),
                          initial_from=ObservationSlice(STATE_KEY, tuple(range(action_dim))) if initial_from else None,
                          max_tracking_error=per_joint(max_tracking_error)),
        model=ModelFile(file="policy.onnx", sha256=model_sha256,
                        inputs=inputs if model_inputs is None else model_inputs, output=model_output),
        source=SourceSpec(checkpoint="tests/fake_checkpoint", config={"policy": {"name": policy_type}},
                          extra={"exporter": "tests/deploy/bundle_factory.py"}),
        sampler=sampler,
    )


def write_bundle(bundle_dir: Path, model: onnx.ModelProto, manifest: Manifest,
                 extra_models: dict[str, onnx.ModelProto] | None = None) -> Path:
    """Save the model(s), fill in their hashes and write the manifest; returns the bundle directory."""
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    _save(model, bundle_dir / manifest.model.file)
    for name, extra in (extra_models or {}).items():
        _save(extra, bundle_dir / name)
    manifest = dataclasses.replace(manifest, model=dataclasses.replace(
        manifest.model, sha256=file_sha256(bundle_dir / manifest.model.file)))
    sampler = manifest.sampler
    if isinstance(sampler, DdimSampler) and sampler.condition_model is not None:
        cm = dataclasses.replace(sampler.condition_model,
                                 sha256=file_sha256(bundle_dir / sampler.condition_model.file))
        manifest = dataclasses.replace(manifest, sampler=dataclasses.replace(sampler, condition_model=cm))
    write_manifest(bundle_dir, manifest)
    return bundle_dir


def ramp_bundle(bundle_dir: Path, *, action_dim: int = 2, chunk_size: int = 5, n_obs_steps: int = 1,
                with_image: bool = False, sqrt: bool = False, **manifest_kwargs) -> Path:
    manifest_kwargs.setdefault("n_action_steps", chunk_size - manifest_kwargs.get("chunk_offset", 0))
    manifest = make_manifest(action_dim, chunk_size, n_obs_steps=n_obs_steps, with_image=with_image,
                             **manifest_kwargs)
    model = ramp_model(action_dim, chunk_size, n_obs_steps=n_obs_steps, with_image=with_image, sqrt=sqrt)
    return write_bundle(bundle_dir, model, manifest)


def state_obs(value, action_dim: int = 2, image: bool = False) -> dict[str, np.ndarray]:
    """An observation whose state is `value` in every element (or the given vector)."""
    state = np.broadcast_to(np.asarray(value, np.float32), (action_dim,)).copy()
    obs = {STATE_KEY: state}
    if image:
        obs[IMAGE_KEY] = np.zeros(IMAGE_SHAPE, np.uint8)
    return obs
