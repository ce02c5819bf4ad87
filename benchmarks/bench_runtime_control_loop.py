"""Benchmark: a simulated 500 Hz control loop with async ChunkRunner inference (targets: p99 tick <= 1 ms, 0 held).

Until the real ACT export exists, the model is a STAND-IN: a state-only ACT-shaped transformer built with
onnx.helper at LeRobot's ACT default sizes (dim 512, 8 heads, 4 encoder layers, 1 decoder layer, feed-forward
3200, chunk 100) with random weights -- no ResNet-18 image backbone and no VAE encoder (unused at inference).
Pass --bundle to run an exported bundle instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from deploy.runtime import (ActionSpec, BundlePolicy, ChunkRunner, ControlSpec, Manifest, ModelFile,
                            ObservationFeature, ObservationSlice, SourceSpec, file_sha256, write_manifest)

STATE, ENV = "observation.state", "observation.environment_state"


class _Graph:
    """Accumulates onnx nodes and random initializers for the stand-in transformer."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.n = rng, [], [], 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def linear(self, x: str, d_in: int, d_out: int) -> str:
        w = (self.rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)
        return self.op("Add", [self.op("MatMul", [x, self.const(w, "w")]),
                               self.const(np.zeros(d_out, np.float32), "b")])

    def layer_norm(self, x: str, d: int) -> str:
        return self.op("LayerNormalization", [x, self.const(np.ones(d, np.float32)),
                                              self.const(np.zeros(d, np.float32))], axis=-1)

    def attention(self, q_in: str, kv_in: str, t_q: int, t_kv: int, d: int, heads: int) -> str:
        hd = d // heads
        q = self.op("Reshape", [self.linear(q_in, d, d), self.const(np.array([1, t_q, heads, hd], np.int64))])
        k = self.op("Reshape", [self.linear(kv_in, d, d), self.const(np.array([1, t_kv, heads, hd], np.int64))])
        v = self.op("Reshape", [self.linear(kv_in, d, d), self.const(np.array([1, t_kv, heads, hd], np.int64))])
        q = self.op("Transpose", [q], perm=[0, 2, 1, 3])
        k = self.op("Transpose", [k], perm=[0, 2, 3, 1])
        v = self.op("Transpose", [v], perm=[0, 2, 1, 3])
        scores = self.op("Mul", [self.op("MatMul", [q, k]), self.const(np.array(1 / np.sqrt(hd), np.float32))])
        ctx = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])
        ctx = self.op("Reshape", [self.op("Transpose", [ctx], perm=[0, 2, 1, 3]),
                                  self.const(np.array([1, t_q, d], np.int64))])
        return self.linear(ctx, d, d)

    def feed_forward(self, x: str, d: int, ff: int) -> str:
        return self.linear(self.op("Relu", [self.linear(x, d, ff)]), ff, d)


def act_standin(state_dim: int, env_dim: int, action_dim: int, chunk: int, d: int = 512, heads: int = 8,
                enc_layers: int = 4, dec_layers: int = 1, ff: int = 3200, seed: int = 0) -> onnx.ModelProto:
    g = _Graph(np.random.default_rng(seed))
    axis1 = g.const(np.array([1], np.int64))
    tokens = [g.const(g.rng.standard_normal((1, 1, d)).astype(np.float32), "latent"),
              g.op("Unsqueeze", [g.linear("state", state_dim, d), axis1]),
              g.op("Unsqueeze", [g.linear("env", env_dim, d), axis1])]
    n_tok = len(tokens)
    x = g.op("Add", [g.op("Concat", tokens, axis=1), g.const(g.rng.standard_normal((1, n_tok, d)).astype(np.float32))])
    for _ in range(enc_layers):  # post-norm, as ACT
        x = g.layer_norm(g.op("Add", [x, g.attention(x, x, n_tok, n_tok, d, heads)]), d)
        x = g.layer_norm(g.op("Add", [x, g.feed_forward(x, d, ff)]), d)
    memory = x
    y = g.const(np.zeros((1, chunk, d), np.float32), "queries")
    pos = g.const((0.1 * g.rng.standard_normal((1, chunk, d))).astype(np.float32), "query_pos")
    for _ in range(dec_layers):
        q = g.op("Add", [y, pos])
        y = g.layer_norm(g.op("Add", [y, g.attention(q, q, chunk, chunk, d, heads)]), d)
        y = g.layer_norm(g.op("Add", [y, g.attention(g.op("Add", [y, pos]), memory, chunk, n_tok, d, heads)]), d)
        y = g.layer_norm(g.op("Add", [y, g.feed_forward(y, d, ff)]), d)
    g.nodes.append(helper.make_node("Identity", [g.linear(y, d, action_dim)], ["actions"]))
    graph = helper.make_graph(
        g.nodes, "act_standin",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, state_dim]),
         helper.make_tensor_value_info("env", TensorProto.FLOAT, [1, env_dim])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, chunk, action_dim])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def build_standin_bundle(directory: Path, hz: float, chunk: int, n_action_steps: int, dim: int = 14) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(act_standin(dim, dim, dim, chunk), str(directory / "policy.onnx"))
    names = tuple(f"joint{j}" for j in range(dim))
    manifest = Manifest(
        policy_type="act",
        control=ControlSpec(frequency_hz=hz, chunk_size=chunk, n_action_steps=n_action_steps),
        observation=(ObservationFeature(STATE, (dim,), "float32", "rad", names),
                     ObservationFeature(ENV, (dim,), "float32", "m")),
        action=ActionSpec(names=names, units=tuple("rad" for _ in names), lower=tuple(-10.0 for _ in names),
                          upper=tuple(10.0 for _ in names), max_velocity=tuple(1e3 for _ in names),
                          initial_from=ObservationSlice(STATE, tuple(range(dim)))),
        model=ModelFile("policy.onnx", file_sha256(directory / "policy.onnx"), {STATE: "state", ENV: "env"},
                        "actions"),
        source=SourceSpec(checkpoint="STAND-IN (random weights, benchmarks/bench_runtime_control_loop.py)",
                          config={"stand_in": "state-only ACT default sizes: dim 512, 8 heads, 4 enc, 1 dec, ff 3200"}))
    write_manifest(directory, manifest)
    return directory


def observation_maker(runner: ChunkRunner, rng: np.random.Generator):
    features = runner.manifest.observation
    state = {f.key: np.zeros(f.shape, np.dtype(f.dtype)) for f in features}

    def make() -> dict[str, np.ndarray]:
        for f in features:  # a slow random walk, fresh arrays every tick like a robot driver
            if np.dtype(f.dtype).kind == "f":
                state[f.key] = (state[f.key] + 0.01 * rng.standard_normal(f.shape)).astype(f.dtype)
            else:
                state[f.key] = rng.integers(0, 255, f.shape, dtype=np.uint8)
        return dict(state)

    return make


def control_loop(runner: ChunkRunner, seconds: float, seed: int = 0) -> dict:
    """Tick at the runner's frequency in real time; returns tick durations and deadline overruns."""
    period = 1.0 / runner.control_hz
    make_obs = observation_maker(runner, np.random.default_rng(seed))
    cameras = [f.key for f in runner.manifest.observation if np.dtype(f.dtype) == np.uint8]
    durations, overruns = [], 0
    next_deadline = time.perf_counter()
    for _ in range(int(seconds * runner.control_hz)):
        obs = make_obs()
        captured = {key: runner.clock() for key in cameras}  # frames are fresh: made just now
        start = time.perf_counter()
        runner.tick(obs, frame_times=captured)
        end = time.perf_counter()
        durations.append(end - start)
        next_deadline += period
        if end > next_deadline:
            overruns += 1
            next_deadline = end  # a real loop drops the missed period instead of bursting to catch up
        else:
            time.sleep(next_deadline - end)
    return {"tick_us": np.asarray(durations) * 1e6, "overruns": overruns}


def report(label: str, loop: dict, runner: ChunkRunner) -> None:
    s = runner.summary()
    p50, p99, top = np.percentile(loop["tick_us"], [50, 99, 100])
    lat = s["inference_latency_ms"]
    print(f"{label}: {s['ticks']} ticks; tick time median {p50:.0f} us, p99 {p99:.0f} us, max {top:.0f} us; "
          f"held ticks {s['held_ticks']}, no-command ticks {s['no_command_ticks']}, late chunks {s['late_chunks']}, "
          f"deadline overruns {loop['overruns']}, faults {s['faults']}")
    print(f"    inference latency ms p50 {lat['p50']:.2f} p90 {lat['p90']:.2f} p99 {lat['p99']:.2f} "
          f"(n={lat['count']}); chunk delivered after ticks p50 {s['delivery_ticks']['p50']} "
          f"max {s['delivery_ticks']['max']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="an exported bundle; default: build the ACT stand-in")
    parser.add_argument("--hz", type=float, default=500.0, help="stand-in control frequency")
    parser.add_argument("--n-action-steps", type=int, default=50, help="stand-in: actions executed per chunk")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sync-seconds", type=float, default=3.0, help="same loop in sync mode, the reference")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle is None:
            print("MODEL: STAND-IN for the exported default ACT (state-only transformer at ACT default sizes, random "
                  "weights, no ResNet-18 backbone); replace with --bundle <exported ACT bundle>")
            bundle = build_standin_bundle(Path(tmp) / "act_standin", args.hz, chunk=100,
                                          n_action_steps=args.n_action_steps)
        else:
            bundle = args.bundle
            print(f"MODEL: bundle {bundle}")
        policy = BundlePolicy(bundle, intra_op_threads=args.threads)
        m = policy.manifest
        print(f"    {m.policy_type}, {m.control.frequency_hz:g} Hz, chunk {m.control.chunk_size}, n_action_steps "
              f"{m.control.n_action_steps}, ensembling {m.control.temporal_ensemble_coeff}; onnxruntime "
              f"{ort.__version__}, {args.threads} intra-op thread(s)")
        rng = np.random.default_rng(1)
        inputs = {f.key: rng.standard_normal(policy.input_shape(f.shape)).astype(f.dtype) for f in m.observation}
        times = []
        for i in range(60):
            start = time.perf_counter()
            policy.predict_chunk(inputs, rng=rng)
            if i >= 10:
                times.append(time.perf_counter() - start)
        times = np.asarray(times) * 1e3
        print(f"reference: one chunk inference in the control thread (what sync mode blocks on): median "
              f"{np.median(times):.2f} ms, p99 {np.percentile(times, 99):.2f} ms; control period "
              f"{1e3 / m.control.frequency_hz:.2f} ms")

        with ChunkRunner(bundle, mode="async", intra_op_threads=args.threads) as runner:
            async_loop = control_loop(runner, args.seconds)
            report("ASYNC", async_loop, runner)
            held = runner.statistics.held_ticks
        with ChunkRunner(bundle, mode="sync", intra_op_threads=args.threads, sync_deadline_s=None) as runner:
            report("reference SYNC (same loop, inference inside tick, no deadline)",
                   control_loop(runner, args.sync_seconds), runner)
        with ChunkRunner(bundle, mode="sync", intra_op_threads=args.threads) as runner:
            report(f"SYNC with its default deadline ({runner.sync_deadline_s * 1e3:.1f} ms, one period): a slower "
                   "inference is a late_chunk", control_loop(runner, args.sync_seconds), runner)
    p99 = np.percentile(async_loop["tick_us"], 99)
    print(f"targets (async): p99 tick <= 1000 us -> {'MET' if p99 <= 1000 else 'NOT MET'} ({p99:.0f} us); "
          f"held ticks 0 -> {'MET' if held == 0 else 'NOT MET'} ({held})")


if __name__ == "__main__":
    main()
