"""Benchmark: ChunkRunner.tick overhead without inference (target: median <= 50 us), vs bare numpy reference."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from deploy.runtime import (ONE_PERIOD, ActionSpec, ChunkRunner, ControlSpec, Manifest, ModelFile,
                            ObservationFeature, ObservationSlice, SourceSpec, file_sha256, write_manifest)

STATE, ENV = "observation.state", "observation.environment_state"


def build_bundle(directory: Path, state_dim: int, env_dim: int, chunk: int, coeff: float | None) -> Path:
    """A bundle with ACT's I/O (chunk of `chunk` actions) and a trivial graph: actions[i] = state + i."""
    ramp = np.ascontiguousarray(np.broadcast_to(np.arange(chunk, dtype=np.float32)[None, :, None],
                                                (1, chunk, state_dim)))
    nodes = [helper.make_node("ReduceSum", ["env", "axes"], ["env_sum"], keepdims=1),
             helper.make_node("Mul", ["env_sum", "zero"], ["env_zero"]),
             helper.make_node("Add", ["state", "env_zero"], ["state2"]),
             helper.make_node("Unsqueeze", ["state2", "axes"], ["state3"]),
             helper.make_node("Add", ["state3", "ramp"], ["actions"])]
    graph = helper.make_graph(
        nodes, "tick_bench",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, state_dim]),
         helper.make_tensor_value_info("env", TensorProto.FLOAT, [1, env_dim])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, chunk, state_dim])],
        [numpy_helper.from_array(ramp, "ramp"), numpy_helper.from_array(np.array([1], np.int64), "axes"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "policy.onnx"))
    names = tuple(f"joint{j}" for j in range(state_dim))
    manifest = Manifest(
        policy_type="act",
        control=ControlSpec(frequency_hz=50.0, chunk_size=chunk, n_action_steps=1 if coeff is not None else chunk,
                            temporal_ensemble_coeff=coeff),
        # Range checks on both features, as exported bundles carry them: they are part of every tick's cost.
        observation=(ObservationFeature(STATE, (state_dim,), "float32", "rad", names, low=(-1e3,) * state_dim,
                                        high=(1e3,) * state_dim),
                     ObservationFeature(ENV, (env_dim,), "float32", "m", low=(-1e3,) * env_dim,
                                        high=(1e3,) * env_dim)),
        action=ActionSpec(names=names, units=tuple("rad" for _ in names), lower=tuple(-1e6 for _ in names),
                          upper=tuple(1e6 for _ in names), max_velocity=tuple(1e3 for _ in names),
                          initial_from=ObservationSlice(STATE, tuple(range(state_dim)))),
        model=ModelFile("policy.onnx", file_sha256(directory / "policy.onnx"), {STATE: "state", ENV: "env"},
                        "actions"),
        source=SourceSpec(checkpoint="benchmarks/bench_runtime_tick.py (synthetic)", config={}))
    write_manifest(directory, manifest)
    return directory


def measure_overhead(runner: ChunkRunner, observations: list[dict], warmup: int) -> np.ndarray:
    """Per-tick wall time minus the inference time recorded during that tick, in microseconds."""
    latencies = runner.statistics.inference_latency_s
    overhead = []
    for i, obs in enumerate(observations):
        before = len(latencies)
        start = time.perf_counter()
        runner.tick(obs)
        elapsed = time.perf_counter() - start
        inference = sum(list(latencies)[before:]) if len(latencies) != before else 0.0
        if i >= warmup:
            overhead.append(elapsed - inference)
    return np.asarray(overhead) * 1e6


def describe(label: str, us: np.ndarray) -> str:
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return f"{label:<58} median {p50:7.1f} us   p90 {p90:7.1f} us   p99 {p99:7.1f} us   (n={us.size})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=20000)
    parser.add_argument("--state-dim", type=int, default=14)
    parser.add_argument("--env-dim", type=int, default=14)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    observations = [{STATE: rng.standard_normal(args.state_dim).astype(np.float32),
                     ENV: rng.standard_normal(args.env_dim).astype(np.float32)} for _ in range(args.ticks)]
    warmup = min(1000, args.ticks // 10)
    print(f"ChunkRunner.tick overhead without inference; state {args.state_dim}, env {args.env_dim}, "
          f"chunk {args.chunk}, rate limit and range checks on; onnxruntime {ort.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        # Inline sync (no deadline) is the bare runner; the default deadline adds a hand-off to the inference
        # thread on each tick that requests a chunk (every tick with ensembling).
        for label, coeff, deadline in (
                ("chunk scheduling (n_action_steps = chunk)", None, None),
                ("temporal ensembling (k = 0.01, a chunk every tick)", 0.01, None),
                ("chunk scheduling, sync deadline (default)", None, ONE_PERIOD),
                ("temporal ensembling, sync deadline (default)", 0.01, ONE_PERIOD)):
            bundle = Path(tmp) / f"b{coeff}"
            if not bundle.exists():
                build_bundle(bundle, args.state_dim, args.env_dim, args.chunk, coeff)
            with ChunkRunner(bundle, mode="sync", sync_deadline_s=deadline) as runner:
                results[label] = measure_overhead(runner, observations, warmup)
                summary = runner.summary()
            # A loaded machine can make an inference miss the 20 ms deadline: report it rather than fail.
            late = summary["faults"].get("late_chunk", 0)
            assert set(summary["faults"]) <= {"late_chunk", "no_fresh_chunk"}, summary
            print(describe(label, results[label]) + (f"   late chunks {late}" if late else ""))
        # Same-run references: the floor of any per-tick Python/numpy work, and one tiny-model inference.
        action, lo, hi = observations[0][STATE], np.full(args.state_dim, -1.0, np.float32), np.ones(args.state_dim,
                                                                                                      np.float32)
        floor = []
        for _ in range(args.ticks):
            start = time.perf_counter()
            np.clip(action, lo, hi).copy()
            floor.append(time.perf_counter() - start)
        print(describe("reference: bare np.clip + copy of one action", np.asarray(floor[warmup:]) * 1e6))
        session = ort.InferenceSession(str(Path(tmp) / "bNone" / "policy.onnx"), providers=["CPUExecutionProvider"])
        feed = {"state": observations[0][STATE][None], "env": observations[0][ENV][None]}
        runs = []
        for _ in range(2000):
            start = time.perf_counter()
            session.run(["actions"], feed)
            runs.append(time.perf_counter() - start)
        print(describe("reference: one onnxruntime run of the trivial graph", np.asarray(runs[200:]) * 1e6))
    median = np.median(results["chunk scheduling (n_action_steps = chunk)"])
    print(f"target: median <= 50 us -> {'MET' if median <= 50 else 'NOT MET'} ({median:.1f} us, chunk scheduling)")


if __name__ == "__main__":
    main()
