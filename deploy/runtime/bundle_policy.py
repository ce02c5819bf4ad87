"""A loaded policy bundle: onnxruntime sessions that map one batched observation window to one action chunk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .ddim import ddim_sample
from .manifest import BundleError, DdimSampler, InGraphSampler, Manifest, ModelFile, load_manifest

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64,
}


def _session(path: Path, intra_op_threads: int, providers: Sequence[str] | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # onnxruntime's thread pool spins between runs by default; on a shared controller computer that steals the
    # core the control loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # onnxruntime raises its own exception types for an unreadable graph
        raise BundleError(f"onnxruntime cannot load {path}: {e}") from e


def _check_io(session: ort.InferenceSession, mf: ModelFile, expected: Mapping[str, tuple[tuple[int, ...], type]],
              output_size: int | None) -> None:
    """Compare the graph's inputs/outputs with what the manifest promises, so a mismatch fails at load time."""
    graph_inputs = {i.name: i for i in session.get_inputs()}
    if set(graph_inputs) != set(expected):
        raise BundleError(f"{mf.file}: graph inputs {sorted(graph_inputs)} differ from the inputs the manifest feeds "
                          f"{sorted(expected)}")
    for name, (shape, dtype) in expected.items():
        node = graph_inputs[name]
        graph_dtype = _ORT_TO_NUMPY.get(node.type)
        if graph_dtype is not dtype:
            raise BundleError(f"{mf.file}: input {name!r} has type {node.type}, the manifest implies "
                              f"{np.dtype(dtype).name}")
        dims = node.shape
        if len(dims) != len(shape) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape)):
            raise BundleError(f"{mf.file}: input {name!r} has shape {dims}, the manifest implies {list(shape)}")
    outputs = {o.name: o for o in session.get_outputs()}
    if mf.output not in outputs:
        raise BundleError(f"{mf.file}: no output named {mf.output!r} (outputs: {sorted(outputs)})")
    if output_size is not None:
        dims = outputs[mf.output].shape
        if all(isinstance(d, int) for d in dims) and int(np.prod(dims)) != output_size:
            raise BundleError(f"{mf.file}: output {mf.output!r} has shape {dims}, expected {output_size} values "
                              "(1, chunk_size, action_dim)")


class BundlePolicy:
    """Runs a bundle's model(s) on one observation window; no scheduling, no safety (see ChunkRunner).

    Model inputs are batched with batch size 1: (1, *shape) for n_obs_steps == 1, (1, n_obs_steps, *shape) otherwise.
    The main model returns (1, chunk_size, action_dim) in action units (or, for a DDIM bundle, the denoiser's output).
    """

    def __init__(self, bundle_dir: str | os.PathLike, *, intra_op_threads: int = 1,
                 providers: Sequence[str] | None = None, verify_hash: bool = True, manifest: Manifest | None = None):
        if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int) or intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be an integer >= 1, got {intra_op_threads!r}")
        if providers is not None:
            available = ort.get_available_providers()
            if not isinstance(providers, (list, tuple)) or not providers or not all(isinstance(p, str)
                                                                                        for p in providers):
                raise ValueError(f"providers must be a non-empty list of onnxruntime execution provider names, got "
                                 f"{providers!r} (available here: {available})")
            missing = [p for p in providers if p not in available]
            if missing:
                raise ValueError(f"onnxruntime execution provider(s) {missing} are not available in this install "
                                 f"(available: {available})")
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest if manifest is not None else load_manifest(self.bundle_dir, verify_hash=verify_hash)
        m = self.manifest
        self.chunk_size, self.action_dim = m.control.chunk_size, m.action.dim
        self._sampler = m.sampler if isinstance(m.sampler, DdimSampler) else None
        self._noise_input = m.sampler.noise_input if isinstance(m.sampler, InGraphSampler) else None
        obs_shapes = {f.key: (self.input_shape(f.shape), np.dtype(f.dtype).type) for f in m.observation}

        self._session = _session(self.bundle_dir / m.model.file, intra_op_threads, providers)
        self._cond_session = None
        main_inputs = {m.model.inputs[k]: v for k, v in obs_shapes.items() if k in m.model.inputs}
        if self._noise_input is not None:
            main_inputs[self._noise_input] = ((1, self.chunk_size, self.action_dim), np.float32)
        s = self._sampler
        if s is not None:
            sample_shape = (1, self.chunk_size, self.action_dim)
            main_inputs[s.sample_input] = (sample_shape, np.float32)
            main_inputs[s.timestep_input] = ((1,), np.dtype(s.timestep_dtype).type)
            if s.condition_model is not None:
                self._cond_session = _session(self.bundle_dir / s.condition_model.file, intra_op_threads, providers)
                cond_inputs = {s.condition_model.inputs[k]: v for k, v in obs_shapes.items()}
                _check_io(self._cond_session, s.condition_model, cond_inputs, None)
                graph_inputs = {i.name: i for i in self._session.get_inputs()}
                if s.condition_input not in graph_inputs:
                    raise BundleError(f"{m.model.file}: no input named {s.condition_input!r} for the condition")
                main_inputs[s.condition_input] = (tuple(graph_inputs[s.condition_input].shape), np.float32)
        _check_io(self._session, m.model, main_inputs, self.chunk_size * self.action_dim)

    def input_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = self.manifest.control.n_obs_steps
        return (1, *shape) if n == 1 else (1, n, *shape)

    def predict_chunk(self, inputs: Mapping[str, np.ndarray], noise: np.ndarray | None = None,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        """Return the whole chunk, (chunk_size, action_dim) float32, for batched inputs keyed by observation key.

        For a diffusion bundle (DDIM, or in-graph with a noise input), `noise` (1, chunk_size, action_dim) fixes
        the initial sample (parity checks); otherwise it is drawn from `rng`.
        """
        m = self.manifest
        if self._sampler is None:
            feed = {m.model.inputs[k]: v for k, v in inputs.items()}
            if self._noise_input is not None:
                feed[self._noise_input] = self._initial_noise(noise, rng)
            out = self._session.run([m.model.output], feed)[0]
            return self._as_chunk(out)
        s = self._sampler
        noise = self._initial_noise(noise, rng)
        if s.condition_model is not None:
            cond_feed = {s.condition_model.inputs[k]: v for k, v in inputs.items()}
            fixed = {s.condition_input: self._cond_session.run([s.condition_model.output], cond_feed)[0]}
        else:
            fixed = {m.model.inputs[k]: v for k, v in inputs.items()}
        timestep_dtype = np.dtype(s.timestep_dtype)

        def denoise(sample: np.ndarray, t: int) -> np.ndarray:
            feed = dict(fixed)
            feed[s.sample_input] = sample
            feed[s.timestep_input] = np.array([t], dtype=timestep_dtype)
            return self._session.run([m.model.output], feed)[0]

        sample = ddim_sample(denoise, noise.reshape(1, self.chunk_size, self.action_dim), s, rng)
        chunk = self._as_chunk(sample)
        return chunk * np.asarray(s.action_scale, np.float32) + np.asarray(s.action_offset, np.float32)

    def _initial_noise(self, noise: np.ndarray | None, rng: np.random.Generator | None) -> np.ndarray:
        shape = (1, self.chunk_size, self.action_dim)
        if noise is not None:
            return np.asarray(noise, np.float32).reshape(shape)
        if rng is None:
            raise ValueError("predict_chunk: a diffusion bundle needs `noise` or `rng` for the initial sample")
        return rng.standard_normal(shape).astype(np.float32)

    def _as_chunk(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out)
        if out.size != self.chunk_size * self.action_dim:
            raise BundleError(f"model output has shape {out.shape}, expected (1, {self.chunk_size}, {self.action_dim})")
        return out.reshape(self.chunk_size, self.action_dim).astype(np.float32, copy=False)
