"""A bundle in closed loop in simulation: same episodes as its checkpoint at zero latency, injected latency in async
mode with latency-aware scheduling, results JSON with runner statistics, and rollouts written for replay."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from apps.closed_loop import BundleRunConfig, BundleVectorPolicy, measured_hold
from deploy.export import ExportConfig, export_checkpoint
from deploy.runtime import load_manifest
from apps.evaluation import EvaluateConfig, detect_kind, evaluate_bundle, evaluate_checkpoint

from tests.deploy.export_factory import REACH, imitation_checkpoint

pytestmark = pytest.mark.slow  # trains and exports a checkpoint, then runs it in closed loop

EPISODES, N_ENVS = 4, 2
RESULT_KEYS = {"schema_version", "env_id", "episodes", "seed", "successes", "success_rate", "success_ci95",
               "mean_return", "std_return", "mean_length", "physics_errors", "wall_time_s", "videos", "per_episode",
               "metadata"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("closed_loop")
    # chunk 10, 8 executed per chunk, two observation steps: scheduling and history both matter.
    ckpt = imitation_checkpoint(root / "run", "mlp", seed=2, chunk_size=10, n_action_steps=8)
    export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(root / "bundle"), optimize=False,
                                   parity_samples=2))
    return ckpt, root / "bundle", root


def eval_cfg(path) -> EvaluateConfig:
    return EvaluateConfig(checkpoint=str(path), episodes=EPISODES, n_envs=N_ENVS, video_episodes=0, seed=500)


def test_zero_latency_bundle_replays_the_checkpoint_and_records_what_it_did(exported):
    ckpt, bundle, root = exported
    assert detect_kind(bundle) == "bundle"
    torch_result = evaluate_checkpoint(eval_cfg(ckpt), root / "eval_ckpt")
    # scripts/eval.py's path: kind "bundle" dispatches to apps.closed_loop.load_for_evaluation.
    plain = evaluate_checkpoint(eval_cfg(bundle), root / "eval_plain")
    recorded = evaluate_bundle(eval_cfg(bundle), root / "eval_bundle", BundleRunConfig(rollouts=True))
    for result in (plain, recorded):
        assert [r.success for r in result.records] == [r.success for r in torch_result.records]
        np.testing.assert_allclose([r.episode_return for r in result.records],
                                   [r.episode_return for r in torch_result.records], rtol=1e-4, atol=1e-4)
        assert [r.length for r in result.records] == [r.length for r in torch_result.records]
    assert len({round(r.episode_return, 3) for r in torch_result.records}) > 1  # episodes differ from each other

    data = json.loads((root / "eval_bundle" / "results.json").read_text())
    assert RESULT_KEYS <= set(data) and data["episodes"] == EPISODES
    low, high = data["success_ci95"]
    assert 0.0 <= low <= data["success_rate"] <= high <= 1.0
    meta = data["metadata"]
    assert meta["kind"] == "bundle" and meta["type"] == "mlp" and meta["source_checkpoint"] == str(ckpt.resolve())
    runner = meta["runner"]
    assert runner["held_ticks"] == 0 and runner["stale_chunks"] == 0 and runner["faults"] == {}
    assert runner["ticks"] >= EPISODES * REACH["max_episode_steps"]
    assert runner["inference_latency_ms"]["count"] == runner["requests"] > 0
    assert runner["delivery_ticks"]["max"] == 0

    m = load_manifest(bundle)
    out = root / "eval_bundle" / "rollouts"
    actions = pq.read_table(out / "actions.parquet")
    chunks = pq.read_table(out / "chunks.parquet")
    names = list(m.action.names)
    assert actions.column_names == ["episode", "seed", "tick", "timestamp_s", "held", "no_command", *names]
    assert not np.asarray(actions["no_command"]).any()  # every observation valid: the runner always commanded
    assert chunks.column_names == ["episode", "seed", "chunk", "origin_tick", "used", "arrival_tick", "start_tick",
                                   "step", "tick", "timestamp_s", *names]
    assert [actions.schema.field(n).metadata[b"unit"].decode() for n in names] == list(m.action.units)
    assert actions.num_rows == sum(r.length for r in recorded.records)
    assert pacsv.read_csv(out / "actions.csv").num_rows == actions.num_rows
    assert pacsv.read_csv(out / "chunks.csv").column_names == chunks.column_names
    meta_json = json.loads((out / "rollouts.json").read_text())
    assert meta_json["units"] == dict(zip(names, m.action.units)) and meta_json["control_hz"] == 50.0
    assert meta_json["format_version"] == 3 and "start_tick" in meta_json["columns"]["chunks"]

    ticks = np.asarray(actions["tick"])
    np.testing.assert_allclose(np.asarray(actions["timestamp_s"]), ticks / 50.0)
    assert sorted(set(np.asarray(actions["seed"]))) == [r.seed for r in recorded.records]
    # Sync mode: a chunk is computed every n_action_steps ticks, used in that very tick and its actions are executed
    # as planned (clamped), step k at origin + k.
    n = m.control.n_action_steps
    origins = np.asarray(chunks["origin_tick"])
    assert set(origins % n) == {0}
    assert np.asarray(chunks["used"]).all()
    np.testing.assert_array_equal(np.asarray(chunks["start_tick"]), origins)
    np.testing.assert_array_equal(np.asarray(chunks["arrival_tick"]), origins)
    np.testing.assert_array_equal(np.asarray(chunks["tick"]), origins + np.asarray(chunks["step"]))
    row = {(e, o, t): j for j, (e, o, t) in enumerate(zip(np.asarray(chunks["episode"]), origins,
                                                           np.asarray(chunks["tick"])))}
    executed = np.stack([np.asarray(actions[name]) for name in names], axis=1)
    planned = np.stack([np.asarray(chunks[name]) for name in names], axis=1)
    for i, (e, t) in enumerate(zip(np.asarray(actions["episode"]), ticks)):
        j = row[(e, t - t % n, t)]
        np.testing.assert_allclose(executed[i], np.clip(planned[j], m.action.lower, m.action.upper), atol=1e-6)


def test_async_latency_is_injected_and_scheduling_keeps_the_robot_fed(exported):
    _, bundle, root = exported
    run = BundleRunConfig(mode="async", latency_ms=60, jitter_ms=10, seed=3)
    result = evaluate_bundle(eval_cfg(bundle), root / "eval_async", run)
    runner = json.loads((root / "eval_async" / "results.json").read_text())["metadata"]["runner"]
    # 60 +- 10 ms at 50 Hz: every chunk arrives 3 or 4 ticks after its observation; a 10-action chunk then leaves
    # room for 6 executed steps per chunk (not the manifest's 8), so no tick starves.
    assert {runner["delivery_ticks"]["p50"], runner["delivery_ticks"]["max"]} <= {3.0, 4.0}
    assert runner["delivery_ticks"]["max"] == 4.0
    assert runner["n_action_steps"] == 6 and runner["config"]["latency_ms"] == 60
    assert runner["held_ticks"] == 0 and runner["stale_chunks"] == 0
    # Every chunk but an episode's first lands while the previous one executes and skips the 3-4 ticks that passed;
    # the first starts at its action 0 (the robot held still waiting for it).
    assert 3 * (runner["chunks_received"] - EPISODES) <= runner["skipped_actions"]
    assert runner["skipped_actions"] <= 4 * (runner["chunks_received"] - EPISODES)
    assert runner["startup_ticks"] >= 3 * EPISODES  # the robot holds its pose until the first chunk lands
    assert runner["no_command_ticks"] >= 3 * EPISODES  # ... by its driver: the runner commands nothing before it
    assert result.episodes == EPISODES

    again = evaluate_bundle(eval_cfg(bundle), root / "eval_async_again", run)
    assert [r.episode_return for r in again.records] == [r.episode_return for r in result.records]  # seeded


def _by_episode(table, episode):
    rows = table.filter(pc.equal(table["episode"], episode))
    # Nullable columns as Python objects, so a null reads as None (to_numpy would turn it into NaN).
    return {name: np.array(rows[name].to_pylist(), dtype=object) if rows.schema.field(name).nullable
            else rows[name].to_numpy() for name in rows.column_names}


@pytest.mark.parametrize("n_action_steps, starving", [(5, False), (8, True)])
def test_async_rollouts_place_every_chunk_where_the_runner_scheduled_it(exported, n_action_steps, starving):
    # 60 ms at 50 Hz: every chunk lands exactly 3 ticks after its observation. A chunk that continues a running plan
    # starts at its observation tick (its first 3 actions skipped) and is crossfaded in (n_action_steps=5: it lands
    # 2 ticks before the previous plan ends); one that ends a hold (the episode's first, or one landing after the
    # previous plan ran out, which n_action_steps=8 forces) starts later by the ticks held.
    _, bundle, root = exported
    m = load_manifest(bundle)
    delay, blend, usable = 3, 2, m.control.chunk_size - m.control.chunk_offset
    # A rate limit far above anything the policy does (a run-time override of the manifest's): executed = clamped
    # plan, the scheduling alone is under test.
    run = BundleRunConfig(mode="async", latency_ms=60, blend_ticks=blend, n_action_steps=n_action_steps,
                          rollouts=True, max_velocity=[1000.0])
    out = root / f"eval_async_rollouts_{n_action_steps}"
    result = evaluate_bundle(eval_cfg(bundle), out, run)
    actions = pq.read_table(out / "rollouts" / "actions.parquet")
    chunks = pq.read_table(out / "rollouts" / "chunks.parquet")
    names = list(m.action.names)
    shifted_later = blended = compared = 0
    for record in result.records:
        a, c = _by_episode(actions, record.episode), _by_episode(chunks, record.episode)
        executed = np.stack([a[n] for n in names], axis=1)
        planned = np.clip(np.stack([c[n] for n in names], axis=1), m.action.lower, m.action.upper)
        used = c["used"].astype(bool)
        # Computed but never used: exactly the chunks still in flight when the episode ended; no tick for them.
        np.testing.assert_array_equal(~used, c["origin_tick"] + delay >= record.length)
        for column in ("arrival_tick", "start_tick", "tick", "timestamp_s"):
            assert all(v is None for v in c[column][~used]) and all(v is not None for v in c[column][used])
        order = sorted({int(x) for x in c["chunk"][used]})
        plan, previous_end = [], 0  # previous_end: first tick the previous plan had no action (episode start: 0)
        for index in order:
            rows = np.flatnonzero(c["chunk"] == index)
            origin, arrival, start = (int(c[k][rows[0]]) for k in ("origin_tick", "arrival_tick", "start_tick"))
            assert arrival == origin + delay
            assert start == origin + max(0, arrival - previous_end)  # later by the ticks the robot held still
            shifted_later += start > origin and index != order[0]
            np.testing.assert_array_equal(c["tick"][rows].astype(int), start + c["step"][rows].astype(int))
            np.testing.assert_allclose(c["timestamp_s"][rows].astype(float), (start + c["step"][rows]) / 50.0)
            plan.append((arrival, start, {int(t): planned[r] for t, r in zip(c["tick"][rows], rows)}))
            previous_end = start + usable
        assert plan[0][0] == plan[0][1] == delay  # the first chunk: observed at tick 0, its step 0 runs at tick 3
        for i, (t, held) in enumerate(zip(a["tick"], a["held"])):
            live = [k for k, (arrival, _, _) in enumerate(plan) if arrival <= t]
            if not live:
                # Startup: the runner commands nothing, the simulated driver holds the measured pose; not a fault.
                assert not held and t < delay and a["no_command"][i]
                continue
            assert not a["no_command"][i]
            k = live[-1]
            arrival, _, scheduled = plan[k]
            assert held == (t not in scheduled)  # held exactly when the active chunk had nothing for this tick
            if held:
                continue
            if k > 0 and t - arrival < blend and t in plan[k - 1][2]:
                blended += 1  # crossfaded with the previous chunk's plan
                continue
            np.testing.assert_allclose(executed[i], scheduled[t], atol=1e-6)
            compared += 1
    assert compared > 20 * EPISODES and (blended > 0) == (not starving)
    assert (shifted_later > 0) == starving and (chunks["used"].to_numpy() == False).any()  # noqa: E712


def test_bad_run_settings_are_refused_clearly(exported):
    _, bundle, _ = exported
    with pytest.raises(ValueError, match="mode=async"):
        BundleVectorPolicy(bundle, 1, BundleRunConfig(latency_ms=100))
    with pytest.raises(ValueError, match="covers only 10 ticks"):
        BundleVectorPolicy(bundle, 1, BundleRunConfig(mode="async", latency_ms=200))
    with pytest.raises(ValueError, match="bundle.mode"):
        BundleVectorPolicy(bundle, 1, BundleRunConfig(mode="threaded"))
    with pytest.raises(ValueError, match="temporal_ensemble_coeff must be a finite number"):
        BundleVectorPolicy(bundle, 1, BundleRunConfig(temporal_ensemble_coeff=float("nan")))
    with pytest.raises(ValueError, match="predicts every tick"):
        BundleVectorPolicy(bundle, 1, BundleRunConfig(temporal_ensemble_coeff=0.01, n_action_steps=4))
    run = BundleRunConfig(mode="async", latency_ms=60, temporal_ensemble_coeff=0.01)
    ensembled = BundleVectorPolicy(bundle, 1, run)
    assert (ensembled.runners[0].temporal_ensemble_coeff, ensembled.runners[0].n_action_steps) == (0.01, 1)
    ensembled.close()
    policy = BundleVectorPolicy(bundle, 1)
    with pytest.raises(ValueError, match="does not observe"):
        policy({"agent_pos": np.zeros((1, 6), np.float32)})


def test_temporal_ensembling_bundle_replays_the_checkpoint(tmp_path):
    # The runner's ensembler (deploy.runtime) and the policy's (policies.chunking) must weight predictions alike.
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp", seed=4, n_obs_steps=1, n_action_steps=1,
                                temporal_ensemble_coeff=0.1)
    export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / "bundle"), optimize=False,
                                   parity_samples=1))
    assert load_manifest(tmp_path / "bundle").control.temporal_ensemble_coeff == 0.1
    cfg = EvaluateConfig(checkpoint=str(ckpt), episodes=2, n_envs=2, video_episodes=0, seed=900)
    want = evaluate_checkpoint(cfg, tmp_path / "eval_ckpt")
    got = evaluate_checkpoint(EvaluateConfig(**{**cfg.__dict__, "checkpoint": str(tmp_path / "bundle")}),
                              tmp_path / "eval_bundle")
    np.testing.assert_allclose([r.episode_return for r in got.records], [r.episode_return for r in want.records],
                               rtol=1e-4, atol=1e-4)


def test_no_command_ticks_hold_the_measured_pose_in_simulation(exported):
    # The runner commands nothing before the first valid observation; the simulated driver then holds the joints
    # where they are measured (action.initial_from), the way a robot's driver keeps its own hold.
    _, bundle, _ = exported
    m = load_manifest(bundle)
    policy = BundleVectorPolicy(bundle, 2)
    policy.reset(0)
    policy.reset(1)
    pose = np.array([[0.1, -0.2, 0.3, -0.4, 0.5, 0.6], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]], np.float32)
    good_env = np.zeros((2, 6), np.float32)
    absurd_env = np.array([np.full(6, 1e30), np.zeros(6)], np.float32)  # sub-env 0: implausible, 1: fine
    first = policy({"agent_pos": pose, "environment_state": absurd_env})
    np.testing.assert_array_equal(first[0], pose[0])  # held where measured
    assert policy.runners[0].statistics.no_command_ticks == 1
    assert policy.runners[0].faults == {"out_of_range_observation": 1}
    assert policy.runners[1].statistics.no_command_ticks == 0  # sync: its first chunk was computed in the tick
    step = np.asarray(m.action.max_velocity) / m.control.frequency_hz
    assert np.all(np.abs(first[1] - pose[1]) <= step + 1e-6)  # and rate-limited from its measured pose
    second = policy({"agent_pos": pose, "environment_state": good_env})
    assert np.all(np.abs(second[0] - pose[0]) <= step + 1e-6)  # the first command starts at the measured pose
    policy.close()

    assert np.array_equal(measured_hold(m, {"observation.state": np.full(6, 9.0)}), np.asarray(m.action.upper,
                                                                                                 np.float32))
    last = np.arange(6, dtype=np.float32)
    nan_pose = {"observation.state": np.full(6, np.nan, np.float32)}
    np.testing.assert_array_equal(measured_hold(m, nan_pose, previous=last), last)
    with pytest.raises(ValueError, match="not finite: there is nothing to hold"):
        measured_hold(m, nan_pose)
    with pytest.raises(ValueError, match="has no 'observation.state'"):
        measured_hold(m, {})
    blind = dataclasses.replace(m, action=dataclasses.replace(m.action, initial_from=None))
    with pytest.raises(ValueError, match="names no action.initial_from"):
        measured_hold(blind, {"observation.state": np.zeros(6, np.float32)})
