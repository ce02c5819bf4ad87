"""Fuzz: bad observations of every kind into ChunkRunner (sync, async thread, simulated latency; on the first tick and
mid-episode) never raise, are recorded as observation faults, and never move the robot where it was not measured;
bad constructor arguments are a ValueError naming the argument."""

import re
import warnings
from collections.abc import Mapping

import numpy as np
import pytest

from deploy.runtime import ChunkRunner, Fault, SimulatedLatency
from tests.deploy.bundle_factory import IMAGE_KEY, IMAGE_SHAPE, STATE_KEY, ramp_bundle

HZ = 50.0
DIM = 2
LIMIT = 1.0  # action limits [-1, 1] per joint
VMAX = 5.0  # rad/s: 0.1 rad per tick
STATE_RANGE = (-1.5, 1.5)  # the manifest's plausible range of every state element (limits plus a margin)
TRACKING = 0.15  # max_tracking_error of the "tracking" bundle
POSE = np.array([0.3, -0.2], np.float32)  # where the robot is; the ramp model plans POSE + i (far beyond the limits)
EPS = 1e-6


def good(state=POSE, image=None):
    return {STATE_KEY: np.array(state, np.float32),
            IMAGE_KEY: np.zeros(IMAGE_SHAPE, np.uint8) if image is None else image}


def with_state(value):
    obs = good()
    obs[STATE_KEY] = value
    return obs


def with_image(value):
    obs = good()
    obs[IMAGE_KEY] = value
    return obs


def without(key):
    obs = good()
    del obs[key]
    return obs


class RaisingMapping(Mapping):
    """A mapping whose every lookup fails (a driver's broken message type)."""

    def __init__(self, where):
        self.where = where

    def __getitem__(self, key):
        raise RuntimeError(f"broken {self.where}")

    def __iter__(self):
        if self.where == "iter":
            raise RuntimeError("broken iter")
        return iter([STATE_KEY, IMAGE_KEY])

    def __len__(self):
        return 2

    def __contains__(self, key):
        if self.where == "contains":
            raise RuntimeError("broken contains")
        return key in (STATE_KEY, IMAGE_KEY)


class BadArray:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array for you")


def _readonly():
    obs = good()
    obs[STATE_KEY].setflags(write=False)
    return obs


def _strided():
    base = np.zeros(2 * DIM, np.float32)
    base[::2] = POSE
    return with_state(base[::2])  # non-contiguous view


def _strided_image():
    return with_image(np.zeros((3, 4, 8), np.uint8)[:, :, ::2])


def _matrix():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # numpy discourages matrix: robots still send it
        return with_state(np.asmatrix(POSE))


def _masked():
    return with_state(np.ma.array(POSE, mask=[False, True]))


# kind -> (family, maker, is it a fault?). Valid observations in unusual clothes must be accepted; everything else
# must be a recorded observation fault.
CASES = {
    # not a mapping
    "none": ("not a mapping", lambda: None, True),
    "int": ("not a mapping", lambda: 3, True),
    "float": ("not a mapping", lambda: 0.5, True),
    "str": ("not a mapping", lambda: "observation", True),
    "bytes": ("not a mapping", lambda: b"\x00\x01", True),
    "list": ("not a mapping", lambda: [0.3, -0.2], True),
    "tuple": ("not a mapping", lambda: (STATE_KEY, POSE), True),
    "array": ("not a mapping", lambda: POSE.copy(), True),
    "set": ("not a mapping", lambda: {STATE_KEY}, True),
    "object": ("not a mapping", lambda: object(), True),
    # keys
    "empty dict": ("keys", lambda: {}, True),
    "missing state": ("keys", lambda: without(STATE_KEY), True),
    "missing image": ("keys", lambda: without(IMAGE_KEY), True),
    "renamed key": ("keys", lambda: {"agent_pos": POSE.copy(), IMAGE_KEY: np.zeros(IMAGE_SHAPE, np.uint8)}, True),
    "non-string keys": ("keys", lambda: {1: POSE.copy(), None: 2}, True),
    "extra keys": ("keys", lambda: {**good(), "observation.extra": np.ones(7), "x": None}, False),
    "mapping lookup raises": ("keys", lambda: RaisingMapping("getitem"), True),
    "mapping contains raises": ("keys", lambda: RaisingMapping("contains"), True),
    # the value's type
    "state None": ("value types", lambda: with_state(None), True),
    "state str": ("value types", lambda: with_state("0.3,-0.2"), True),
    "state bytes": ("value types", lambda: with_state(b"ab"), True),
    "state dict": ("value types", lambda: with_state({"a": 1}), True),
    "state object": ("value types", lambda: with_state(object()), True),
    "state set": ("value types", lambda: with_state({0.3, -0.2}), True),
    "state list of str": ("value types", lambda: with_state(["0.3", "-0.2"]), True),
    "state __array__ raises": ("value types", lambda: with_state(BadArray()), True),
    "state python list": ("value types", lambda: with_state([0.3, -0.2]), False),
    "state tuple": ("value types", lambda: with_state((0.3, -0.2)), False),
    # shapes
    "0-d array": ("shapes", lambda: with_state(np.array(0.3, np.float32)), True),
    "python scalar": ("shapes", lambda: with_state(0.3), True),
    "too long": ("shapes", lambda: with_state(np.zeros(DIM + 1, np.float32)), True),
    "too short": ("shapes", lambda: with_state(np.zeros(DIM - 1, np.float32)), True),
    "empty": ("shapes", lambda: with_state(np.zeros(0, np.float32)), True),
    "row vector": ("shapes", lambda: with_state(POSE[None]), True),
    "column vector": ("shapes", lambda: with_state(POSE[:, None]), True),
    "ragged list": ("shapes", lambda: with_state([[0.3], [0.1, -0.2]]), True),
    "nested list": ("shapes", lambda: with_state([[0.3, -0.2]]), True),
    "matrix": ("shapes", _matrix, True),
    # dtypes
    "bool array": ("dtypes", lambda: with_state(np.array([True, False])), True),
    "python bools": ("dtypes", lambda: with_state([True, False]), True),
    "complex": ("dtypes", lambda: with_state(POSE.astype(np.complex64)), True),
    "object array": ("dtypes", lambda: with_state(np.array([0.3, -0.2], object)), True),
    "unicode array": ("dtypes", lambda: with_state(np.array(["a", "b"])), True),
    "bytes array": ("dtypes", lambda: with_state(np.array([b"a", b"b"])), True),
    "datetime64": ("dtypes", lambda: with_state(np.array(["2020-01-01", "2020-01-02"], "datetime64[D]")), True),
    "timedelta64": ("dtypes", lambda: with_state(np.array([1, 2], "timedelta64[s]")), True),
    "structured": ("dtypes", lambda: with_state(np.zeros(DIM, [("a", "f4")])), True),
    "void bytes": ("dtypes", lambda: with_state(np.zeros(DIM, "V4")), True),
    "float16": ("dtypes", lambda: with_state(POSE.astype(np.float16)), False),
    "float64": ("dtypes", lambda: with_state(POSE.astype(np.float64)), False),
    "big-endian float32": ("dtypes", lambda: with_state(POSE.astype(">f4")), False),
    "int8": ("dtypes", lambda: with_state(np.array([0, -1], np.int8)), False),
    "uint64": ("dtypes", lambda: with_state(np.array([1, 0], np.uint64)), False),
    # not finite
    "nan": ("non-finite", lambda: with_state(np.array([np.nan, 0.0], np.float32)), True),
    "all nan": ("non-finite", lambda: with_state(np.full(DIM, np.nan, np.float32)), True),
    "+inf": ("non-finite", lambda: with_state(np.array([0.0, np.inf], np.float32)), True),
    "-inf": ("non-finite", lambda: with_state(np.array([-np.inf, 0.0], np.float32)), True),
    "nan float64": ("non-finite", lambda: with_state(np.array([0.0, np.nan])), True),
    "float64 overflowing float32": ("non-finite", lambda: with_state(np.array([3.5e38, 0.0])), True),
    "1e300": ("non-finite", lambda: with_state(np.array([1e300, 0.0])), True),
    # finite but implausible
    "1e30": ("implausible", lambda: with_state(np.array([1e30, 0.0], np.float32)), True),
    "-1e30": ("implausible", lambda: with_state(np.array([0.0, -1e30], np.float32)), True),
    "float32 max": ("implausible", lambda: with_state(np.array([np.finfo(np.float32).max, 0.0], np.float32)), True),
    "just outside the range": ("implausible", lambda: with_state(np.array([0.0, 1.5001], np.float32)), True),
    "1e10 float64": ("implausible", lambda: with_state(np.array([1e10, 0.0])), True),
    "huge int64": ("implausible", lambda: with_state(np.array([2 ** 62, 0], np.int64)), True),
    "min int64": ("implausible", lambda: with_state(np.array([0, -2 ** 63], np.int64)), True),
    "huge uint64": ("implausible", lambda: with_state(np.array([2 ** 64 - 1, 0], np.uint64)), True),
    "huge python int": ("implausible", lambda: with_state([10 ** 30, 0]), True),
    "at the range bounds": ("implausible", lambda: with_state(np.array([1.5, -1.5], np.float32)), False),
    # images
    "image float": ("images", lambda: with_image(np.zeros(IMAGE_SHAPE, np.float32)), True),
    "image channels last": ("images", lambda: with_image(np.zeros((4, 4, 3), np.uint8)), True),
    "image int64": ("images", lambda: with_image(np.zeros(IMAGE_SHAPE, np.int64)), True),
    "image bool": ("images", lambda: with_image(np.zeros(IMAGE_SHAPE, bool)), True),
    "image None": ("images", lambda: with_image(None), True),
    "image list": ("images", lambda: with_image(np.zeros(IMAGE_SHAPE, np.uint8).tolist()), True),
    "image batch axis": ("images", lambda: with_image(np.zeros((1, *IMAGE_SHAPE), np.uint8)), True),
    # memory layout (valid values)
    "read-only": ("memory layout", _readonly, False),
    "non-contiguous": ("memory layout", _strided, False),
    "non-contiguous image": ("memory layout", _strided_image, False),
    "fortran image": ("memory layout", lambda: with_image(np.asfortranarray(np.zeros(IMAGE_SHAPE, np.uint8))),
                      False),
    "masked array": ("memory layout", _masked, False),
}

MODES = {
    "sync": dict(mode="sync"),
    "sync inline": dict(mode="sync", sync_deadline_s=None),
    "async thread": dict(mode="async"),
    "async latency": dict(mode="async", latency=SimulatedLatency(0.03, 0.02, seed=1)),
}

# Where the bad observation comes: on the very first tick, or mid-episode after commands started (twice in a row).
SCHEDULES = {
    "first tick": ["bad", "good", "good", "good", "bad", "good", "good"],
    "mid-episode": ["good", "good", "good", "good", "bad", "bad", "good", "good"],
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_runtime")
    common = dict(action_dim=DIM, chunk_size=8, n_action_steps=4, frequency_hz=HZ, limit=LIMIT, max_velocity=VMAX,
                  state_range=STATE_RANGE, with_image=True)
    return {"plain": ramp_bundle(root / "plain", **common),
            "tracking": ramp_bundle(root / "tracking", max_tracking_error=TRACKING, **common),
            "unmeasured": ramp_bundle(root / "unmeasured", **{**common, "state_range": None}, initial_from=False)}


def measured(observation):
    """The robot's pose as the runner must read it, or None where the observation is not valid."""
    try:
        value = np.asarray(observation[STATE_KEY], np.float64)
    except Exception:
        return None
    return value.astype(np.float32)


def drive(runner, observations, faulty):
    """Tick through `observations` (flagged bad or not) and check every output against the safety invariants."""
    step = np.float32(VMAX / HZ)
    previous, first_command_seen = None, False
    seen_valid = False
    for obs, bad in zip(observations, faulty):
        faults_before = sum(runner.statistics.faults.values())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a bad value must not even produce a numpy warning on the robot
            out = runner.tick(obs)
        seen_valid |= not bad
        if out is None:
            assert not first_command_seen, "None after the episode's first command: holds must hold it"
        else:
            assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (DIM,), out
            assert np.isfinite(out).all(), out
            assert (out >= -LIMIT - EPS).all() and (out <= LIMIT + EPS).all(), out
            assert seen_valid, "a command before the episode's first valid observation"
            if previous is None:
                # The first command of the episode: within one rate-limit step of the pose measured on its tick.
                assert not bad
                pose = np.clip(measured(obs), -LIMIT, LIMIT)
                assert (np.abs(out - pose) <= step + EPS).all(), (out, pose)
            else:
                assert (np.abs(out - previous) <= step + EPS).all(), (out, previous)
            if runner.max_tracking_error is not None and not bad:
                # Within the measured pose +- the bound (as far as the limits allow), or, after a jump of the
                # measurement (a push), a full rate-limit step closer to it: the rate limit wins a conflict.
                m = measured(obs)
                band_low, band_high = np.clip(m - TRACKING, -LIMIT, LIMIT), np.clip(m + TRACKING, -LIMIT, LIMIT)
                gap = lambda a: np.maximum(band_low - a, 0) + np.maximum(a - band_high, 0)  # noqa: E731
                before = gap(previous if previous is not None else np.clip(m, -LIMIT, LIMIT))
                assert (gap(out) <= np.maximum(before - step, 0) + EPS).all(), (out, m, previous)
            previous, first_command_seen = out, True
        new_faults = sum(runner.statistics.faults.values()) - faults_before
        if bad:
            assert new_faults >= 1, f"a bad observation recorded no fault: {obs!r}"
    return runner.statistics


def run_case(bundle, kind, schedule, mode_kwargs):
    family, make, is_fault = CASES[kind]
    plan = SCHEDULES[schedule]
    observations = [make() if step == "bad" else good() for step in plan]
    faulty = [step == "bad" and is_fault for step in plan]
    with ChunkRunner(bundle, **mode_kwargs) as runner:
        stats = drive(runner, observations, faulty)
        runner.reset()
        # The same bad input opens the next episode: nothing commanded until a valid one.
        assert runner.tick(make()) is None or not is_fault
    observation_faults = {k: v for k, v in stats.faults.items() if k in Fault.OBSERVATION_KINDS}
    assert sum(observation_faults.values()) == sum(faulty) + (1 if is_fault else 0), stats.summary()
    assert Fault.INTERNAL_ERROR not in stats.faults, stats.summary()
    # Everything but observation faults is scheduling (an async chunk may be late on a loaded machine).
    assert set(stats.faults) - set(Fault.OBSERVATION_KINDS) <= {Fault.NO_FRESH_CHUNK, Fault.LATE_CHUNK,
                                                                Fault.STALE_CHUNK}, stats.summary()


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", list(CASES))
def test_bad_observation(bundles, kind, mode, schedule):
    run_case(bundles["plain"], kind, schedule, MODES[mode])


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_observation_with_a_tracking_bound(bundles, kind):
    run_case(bundles["tracking"], kind, "mid-episode", MODES["sync inline"])


@pytest.mark.parametrize("mode", list(MODES))
def test_reused_buffer_mutated_between_ticks(bundles, mode):
    state, image = POSE.copy(), np.zeros(IMAGE_SHAPE, np.uint8)
    obs = {STATE_KEY: state, IMAGE_KEY: image}  # one dict and one buffer, rewritten in place like a driver's
    outputs, values = [], [POSE, POSE, [np.nan, 0.0], POSE, [1e30, 0.0], [0.25, -0.25], [0.2, -0.3]]
    with ChunkRunner(bundles["plain"], **MODES[mode]) as runner:
        for value in values:
            state[:] = value
            out = runner.tick(obs)
            outputs.append(None if out is None else out.copy())
            if out is not None:
                out[:] = 99.0  # the caller scribbling on the returned array must not reach the runner
            state[:] = -7.0  # overwritten after the tick: nothing the runner keeps may follow it
        stats = runner.statistics
    commands = [o for o in outputs if o is not None]
    step = VMAX / HZ
    for a, b in zip(commands, commands[1:]):
        assert (np.abs(b - a) <= step + EPS).all(), (a, b)
    assert all((np.abs(c) <= LIMIT + EPS).all() for c in commands)
    assert stats.faults.get(Fault.NON_FINITE_OBSERVATION) == 1
    assert stats.faults.get(Fault.OUT_OF_RANGE_OBSERVATION) == 1
    assert Fault.INTERNAL_ERROR not in stats.faults


# Constructor arguments: every bad one is a ValueError naming the argument (a missing bundle: FileNotFoundError).
BAD_ARGUMENTS = {
    "bundle_dir None": ({"bundle_dir": None}, "bundle_dir must be a path"),
    "bundle_dir int": ({"bundle_dir": 3}, "bundle_dir must be a path"),
    "mode typo": ({"mode": "Sync"}, "mode must be 'sync' or 'async'"),
    "mode None": ({"mode": None}, "mode must be"),
    "latency float": ({"mode": "async", "latency": 0.1}, "latency must be a SimulatedLatency"),
    "latency in sync": ({"latency": SimulatedLatency(0.1)}, "use mode='async'"),
    "intra_op_threads 0": ({"intra_op_threads": 0}, "intra_op_threads must be an integer >= 1"),
    "intra_op_threads float": ({"intra_op_threads": 1.5}, "intra_op_threads"),
    "intra_op_threads bool": ({"intra_op_threads": True}, "intra_op_threads"),
    "n_action_steps 0": ({"n_action_steps": 0}, "n_action_steps must be an integer in"),
    "n_action_steps too many": ({"n_action_steps": 9}, "n_action_steps must be an integer in"),
    "n_action_steps float": ({"n_action_steps": 2.0}, "n_action_steps"),
    "n_action_steps bool": ({"n_action_steps": True}, "n_action_steps"),
    "ensemble coeff nan": ({"temporal_ensemble_coeff": float("nan")}, "temporal_ensemble_coeff must be a finite"),
    "ensemble coeff str": ({"temporal_ensemble_coeff": "0.01"}, "temporal_ensemble_coeff"),
    "ensemble coeff bool": ({"temporal_ensemble_coeff": True}, "temporal_ensemble_coeff"),
    "ensemble with n_action_steps": ({"temporal_ensemble_coeff": 0.01, "n_action_steps": 2}, "must be 1 or None"),
    "blend_ticks negative": ({"blend_ticks": -1}, "blend_ticks must be an integer >= 0"),
    "blend_ticks float": ({"blend_ticks": 0.5}, "blend_ticks"),
    "max_velocity None": ({"max_velocity": None}, "max_velocity=None was passed"),
    "max_velocity zero": ({"max_velocity": 0.0}, "max_velocity must be one positive finite number"),
    "max_velocity negative joint": ({"max_velocity": [1.0, -1.0]}, "max_velocity must be one positive"),
    "max_velocity inf": ({"max_velocity": float("inf")}, "max_velocity must be one positive"),
    "max_velocity nan": ({"max_velocity": [float("nan"), 1.0]}, "max_velocity must be one positive"),
    "max_velocity wrong length": ({"max_velocity": [1.0, 1.0, 1.0]}, "or 2 of them"),
    "max_velocity str": ({"max_velocity": "1.5"}, "max_velocity must be one positive"),
    "max_velocity bool": ({"max_velocity": True}, "max_velocity must be one positive"),
    "max_velocity nested": ({"max_velocity": [[1.0, 1.0]]}, "max_velocity must be one positive"),
    "max_velocity dict": ({"max_velocity": {"joint0": 1.0}}, "max_velocity must be one positive"),
    "allow_unlimited_velocity str": ({"allow_unlimited_velocity": "yes"}, "allow_unlimited_velocity must be True"),
    "allow_unlimited_velocity int": ({"allow_unlimited_velocity": 1}, "allow_unlimited_velocity must be True"),
    "max_tracking_error zero": ({"max_tracking_error": 0.0}, "max_tracking_error must be one positive"),
    "max_tracking_error list of str": ({"max_tracking_error": ["a", "b"]}, "max_tracking_error must be one positive"),
    "sync_deadline_s zero": ({"sync_deadline_s": 0.0}, "sync_deadline_s must be a positive number"),
    "sync_deadline_s negative": ({"sync_deadline_s": -1.0}, "sync_deadline_s must be a positive number"),
    "sync_deadline_s inf": ({"sync_deadline_s": float("inf")}, "sync_deadline_s must be a positive number"),
    "sync_deadline_s str": ({"sync_deadline_s": "0.02"}, "sync_deadline_s must be a positive number"),
    "sync_deadline_s bool": ({"sync_deadline_s": True}, "sync_deadline_s must be a positive number"),
    "sync_deadline_s in async": ({"mode": "async", "sync_deadline_s": 0.02}, "applies to mode='sync'"),
    "initial_action with initial_from": ({"initial_action": [0.0, 0.0]}, "measures the robot's pose itself"),
    "seed negative": ({"seed": -1}, "seed must be an integer >= 0"),
    "seed float": ({"seed": 1.5}, "seed must be an integer"),
    "seed str": ({"seed": "1"}, "seed must be an integer"),
    "clock not callable": ({"clock": 0.0}, "clock must be a callable"),
    "providers str": ({"providers": "CPUExecutionProvider"}, "providers must be a non-empty list"),
    "providers empty": ({"providers": []}, "providers must be a non-empty list"),
    "providers unknown": ({"providers": ["NoSuchExecutionProvider"]}, "are not available in this install"),
    "verify_hash str": ({"verify_hash": "no"}, "verify_hash must be True or False"),
    "on_chunk not callable": ({"on_chunk": 42}, "on_chunk must be a callable"),
}

BAD_INITIAL_ACTIONS = {
    "short": [0.0], "long": [0.0, 0.0, 0.0], "nan": [float("nan"), 0.0], "inf": [0.0, float("inf")],
    "str": "0 0", "list of str": ["0", "0"], "bools": [True, False], "nested": [[0.0, 0.0]], "None inside": [None, 0.0],
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_constructor_argument(bundles, case):
    kwargs, message = BAD_ARGUMENTS[case]
    kwargs = {"bundle_dir": bundles["plain"], **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        ChunkRunner(**kwargs)


@pytest.mark.parametrize("case", list(BAD_INITIAL_ACTIONS))
def test_bad_initial_action(bundles, case):
    with pytest.raises(ValueError, match="initial_action must be 2 finite numbers"):
        ChunkRunner(bundles["unmeasured"], initial_action=BAD_INITIAL_ACTIONS[case])
    with ChunkRunner(bundles["unmeasured"], initial_action=[0.0, 0.0]) as runner:
        with pytest.raises(ValueError, match="initial_action must be 2 finite numbers"):
            runner.reset(initial_action=BAD_INITIAL_ACTIONS[case])


def test_missing_bundle_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ChunkRunner(tmp_path / "nowhere")
