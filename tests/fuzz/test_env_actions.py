"""Fuzz: bad actions x dtypes x every env end in a ValueError (env untouched) or the documented clip/convert."""

import datetime
import decimal
import fractions
import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registration)
from envs.registration import TASKS

ENV_IDS = sorted(TASKS)


@pytest.fixture(scope="module", params=ENV_IDS)
def env(request):
    """One env per id for the whole module: bad actions must leave it usable, which the cases check."""
    e = gym.make(request.param).unwrapped
    e.reset(seed=0)
    yield e
    e.close()


def _mid(e):
    # The box centre rounded to float16, so every dtype below holds exactly the same numbers as float64.
    mid = (e.action_space.low.astype(np.float64) + e.action_space.high) / 2
    return mid.astype(np.float16).astype(np.float64)


def _with(e, value, dtype=np.float64):
    a = _mid(e).astype(dtype)
    a[0] = value
    return a


# Each maker builds one bad action for an env `e` (n = its action size); the kind name is the test id.
REFUSED_TYPES = {
    "str": lambda e: "0",
    "str_of_numbers": lambda e: " ".join(["0.1"] * _n(e)),
    "empty_str": lambda e: "",
    "bytes": lambda e: b"\x00" * _n(e),
    "bytearray": lambda e: bytearray(_n(e)),
    "memoryview": lambda e: memoryview(np.zeros(_n(e)).tobytes()),
    "none": lambda e: None,
    "dict": lambda e: {name: 0.0 for name in e.action_names},
    "set": lambda e: set(range(_n(e))),
    "frozenset": lambda e: frozenset(range(_n(e))),
    "object_instance": lambda e: object(),
    "function": lambda e: (lambda: 0.0),
    "generator": lambda e: (0.0 for _ in range(_n(e))),
    "list_of_str": lambda e: ["a"] * _n(e),
    "list_of_numeric_str": lambda e: ["0.1"] * _n(e),
    "tuple_of_str": lambda e: tuple("x" * _n(e)),
    "list_with_none": lambda e: [None] + [0.0] * (_n(e) - 1),
    "list_with_dict": lambda e: [{}] + [0.0] * (_n(e) - 1),
    "list_with_str_tail": lambda e: [0.0] * (_n(e) - 1) + ["1"],
    "list_of_bool": lambda e: [True] * _n(e),
    "list_of_complex": lambda e: [1j] * _n(e),
    "list_with_decimal": lambda e: [decimal.Decimal("0.1")] + [0.0] * (_n(e) - 1),
    "list_with_datetime": lambda e: [datetime.datetime(2020, 1, 1)] + [0.0] * (_n(e) - 1),
    "list_of_lists_ragged": lambda e: [[0.0], [0.0, 1.0]] + [[0.0]] * (_n(e) - 2),
    "list_with_nested_list": lambda e: [[0.0, 0.0]] + [0.0] * (_n(e) - 1),
    "array_str_U": lambda e: np.array(["0.1"] * _n(e)),
    "array_bytes_S": lambda e: np.array([b"0.1"] * _n(e)),
    "array_complex64": lambda e: np.zeros(_n(e), np.complex64),
    "array_complex128": lambda e: np.zeros(_n(e), np.complex128),
    "array_complex_real_values": lambda e: _mid(e).astype(np.complex128),
    "array_bool": lambda e: np.ones(_n(e), bool),
    "array_bool_false": lambda e: np.zeros(_n(e), bool),
    "array_datetime64": lambda e: np.array(["2020-01-01"] * _n(e), dtype="datetime64[D]"),
    "array_timedelta64": lambda e: np.arange(_n(e)).astype("timedelta64[s]"),
    "array_structured": lambda e: np.zeros(_n(e), dtype=[("a", "f8"), ("b", "f8")]),
    "array_structured_one_field": lambda e: np.zeros(_n(e), dtype=[("a", "f8")]),
    "array_void": lambda e: np.zeros(_n(e), dtype="V8"),
    "array_object_none": lambda e: np.array([None] * _n(e), dtype=object),
    "array_object_str": lambda e: np.array(["1"] * _n(e), dtype=object),
    "array_object_bool": lambda e: np.array([True] * _n(e), dtype=object),
    "array_object_complex": lambda e: np.array([1 + 0j] * _n(e), dtype=object),
    "array_object_list": lambda e: _object_array([[0.0]] * _n(e)),
    "array_object_array": lambda e: _object_array([np.zeros(2)] * _n(e)),
    "array_object_mixed": lambda e: np.array([0.0] * (_n(e) - 1) + ["x"], dtype=object),
    "array_object_huge_int": lambda e: np.array([10**400] + [0] * (_n(e) - 1), dtype=object),
    "np_str_scalar": lambda e: np.str_("0"),
    "np_bool_scalar": lambda e: np.bool_(True),
    "np_complex_scalar": lambda e: np.complex128(1j),
    "np_datetime_scalar": lambda e: np.datetime64("2020-01-01"),
    "np_void_scalar": lambda e: np.void(b"\x00" * 8),
    "list_of_none": lambda e: [None] * _n(e),
    "nested_empty": lambda e: [[]],
    "tuple_with_list": lambda e: (0.0, [1.0]) + (0.0,) * (_n(e) - 2),
    "list_with_bytes": lambda e: [b"1"] + [0.0] * (_n(e) - 1),
    "list_with_bool": lambda e: [True] + [0.0] * (_n(e) - 1),
    "tuple_with_np_bool": lambda e: (np.bool_(False),) + (0.0,) * (_n(e) - 1),
    "array_from_comparison": lambda e: _mid(e) > 0,
    "array_object_decimal": lambda e: np.array([decimal.Decimal(0)] * _n(e), dtype=object),
    "masked_with_masked_entry": lambda e: np.ma.masked_array(_mid(e), mask=[True] + [False] * (_n(e) - 1)),
    "dict_values": lambda e: {name: 0.0 for name in e.action_names}.values(),
    "dict_keys": lambda e: {name: 0.0 for name in e.action_names}.keys(),
}

WRONG_SHAPES = {
    "python_float": lambda e: 0.0,
    "python_int": lambda e: 0,
    "array_0d": lambda e: np.array(0.0),
    "array_0d_float32": lambda e: np.float32(0.0),
    "empty_list": lambda e: [],
    "empty_array": lambda e: np.zeros(0),
    "one_short": lambda e: _mid(e)[:-1],
    "one_long": lambda e: np.append(_mid(e), 0.0),
    "double_length": lambda e: np.tile(_mid(e), 2),
    "row_vector": lambda e: _mid(e)[None, :],
    "column_vector": lambda e: _mid(e)[:, None],
    "batch_of_two": lambda e: np.stack([_mid(e)] * 2),
    "list_one_long": lambda e: _mid(e).tolist() + [0.0],
    "nested_list": lambda e: [_mid(e).tolist()],
    "matrix": lambda e: _matrix(_mid(e)),
    "float32_one_short": lambda e: _mid(e)[:-1].astype(np.float32),
    "int_one_long": lambda e: np.zeros(_n(e) + 1, int),
    "3d": lambda e: _mid(e).reshape(1, 1, -1),
}

NON_FINITE = {
    "nan_first": lambda e: _with(e, np.nan),
    "nan_last": lambda e: np.append(_mid(e)[:-1], np.nan),
    "all_nan": lambda e: np.full(_n(e), np.nan),
    "pos_inf": lambda e: _with(e, np.inf),
    "neg_inf": lambda e: _with(e, -np.inf),
    "nan_float32": lambda e: _with(e, np.nan, np.float32),
    "inf_float32": lambda e: _with(e, np.inf, np.float32),
    "nan_float16": lambda e: _with(e, np.nan, np.float16),
    "inf_float16": lambda e: _with(e, np.inf, np.float16),
    "nan_list": lambda e: [float("nan")] + _mid(e).tolist()[1:],
    "inf_tuple": lambda e: tuple([float("inf")] + _mid(e).tolist()[1:]),
    "nan_object_array": lambda e: np.array([float("nan")] + _mid(e).tolist()[1:], dtype=object),
    "nan_big_endian": lambda e: _with(e, np.nan, ">f8"),
    "nan_non_contiguous": lambda e: np.repeat(_with(e, np.nan), 2)[::2],
    "longdouble_beyond_float64": lambda e: _with(e, np.longdouble(np.finfo(np.float64).max) * 16, np.longdouble),
    "nan_and_inf": lambda e: np.array([np.nan, np.inf] + _mid(e).tolist()[2:]),
}

# Accepted: numbers of any real dtype are converted; values beyond the bounds act as the bound (clipped).
ACCEPTED_AS_MID = {
    "float32": lambda e: _mid(e).astype(np.float32),
    "float16": lambda e: _mid(e).astype(np.float16),
    "longdouble": lambda e: _mid(e).astype(np.longdouble),
    "big_endian_float64": lambda e: _mid(e).astype(">f8"),
    "big_endian_float32": lambda e: _mid(e).astype(">f4"),
    "non_contiguous": lambda e: np.repeat(_mid(e), 2)[::2],
    "read_only": lambda e: _read_only(_mid(e)),
    "list": lambda e: _mid(e).tolist(),
    "tuple": lambda e: tuple(_mid(e).tolist()),
    "list_of_np_float32": lambda e: [np.float32(v) for v in _mid(e)],
    "object_array_of_floats": lambda e: np.array(_mid(e).tolist(), dtype=object),
    "list_with_fraction": lambda e: [fractions.Fraction(v) for v in _mid(e).tolist()],
    "masked_without_masked_entries": lambda e: np.ma.masked_array(_mid(e), mask=False),
    "list_of_np_float64": lambda e: list(_mid(e)),
}

ACCEPTED_INTS = {f"int_{np.dtype(t).name}": t for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                                        np.uint32, np.uint64)}

CLIPPED_TO_HIGH = {
    "high_plus_ten": lambda e: e.action_space.high.astype(np.float64) + 10.0,
    "1e6": lambda e: np.full(_n(e), 1e6),
    "1e11": lambda e: np.full(_n(e), 1e11),
    "1e300": lambda e: np.full(_n(e), 1e300),
    "float64_max": lambda e: np.full(_n(e), np.finfo(np.float64).max),
    "float32_max": lambda e: np.full(_n(e), np.finfo(np.float32).max, np.float32),
    "float16_max": lambda e: np.full(_n(e), np.finfo(np.float16).max, np.float16),
    "int64_max": lambda e: np.full(_n(e), np.iinfo(np.int64).max),
    "uint64_max": lambda e: np.full(_n(e), np.iinfo(np.uint64).max),
    "python_int_1e30": lambda e: [10**30] * _n(e),
}

CLIPPED_TO_LOW = {
    "low_minus_ten": lambda e: e.action_space.low.astype(np.float64) - 10.0,
    "minus_1e300": lambda e: np.full(_n(e), -1e300),
    "float64_lowest": lambda e: np.full(_n(e), np.finfo(np.float64).min),
    "int64_min": lambda e: np.full(_n(e), np.iinfo(np.int64).min),
    "float32_lowest": lambda e: np.full(_n(e), np.finfo(np.float32).min, np.float32),
}


def _n(e):
    return e.action_space.shape[0]


def _object_array(items):
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _matrix(a):
    with warnings.catch_warnings():  # np.matrix is pending deprecation, yet callers still hand it over
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


def _read_only(a):
    a.flags.writeable = False
    return a


def _assert_refused(e, action, match):
    before = (e.data.time, e._step_count, e.data.qpos.copy(), e.data.ctrl.copy())
    with pytest.raises(ValueError, match=match) as info:
        e.step(action)
    message = str(info.value)
    assert "action" in message and type(e).__name__ in message
    after = (e.data.time, e._step_count, e.data.qpos, e.data.ctrl)
    assert after[0] == before[0] and after[1] == before[1], "a refused action must not step the physics"
    np.testing.assert_array_equal(after[2], before[2])
    np.testing.assert_array_equal(after[3], before[3])
    return message


@pytest.mark.parametrize("kind", sorted(REFUSED_TYPES))
def test_non_numeric_action_is_refused(env, kind):
    message = _assert_refused(env, REFUSED_TYPES[kind](env), "action")
    assert f"shape {env.action_space.shape}" in message, message  # says what it expects


@pytest.mark.parametrize("kind", sorted(WRONG_SHAPES))
def test_wrong_shape_is_refused(env, kind):
    message = _assert_refused(env, WRONG_SHAPES[kind](env), "shape")
    assert str(env.action_space.shape) in message and env.action_names[0] in message


@pytest.mark.parametrize("kind", sorted(NON_FINITE))
def test_non_finite_action_is_refused(env, kind):
    message = _assert_refused(env, NON_FINITE[kind](env), "NaN/inf")
    assert any(f"'{name}'" in message for name in env.action_names), message  # names the bad joints


def _obs_after(e, action, steps=2):
    e.reset(seed=11)
    for _ in range(steps):
        obs, *_ = e.step(action() if callable(action) else action)
    return np.concatenate([obs["agent_pos"], obs["environment_state"]])


def _assert_same_as(e, action_maker, reference):
    got = _obs_after(e, lambda: action_maker(e))
    want = _obs_after(e, reference)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("kind", sorted(ACCEPTED_AS_MID))
def test_real_dtypes_are_converted(env, kind):
    _assert_same_as(env, ACCEPTED_AS_MID[kind], _mid(env))


@pytest.mark.parametrize("kind", sorted(ACCEPTED_INTS))
def test_integer_arrays_are_converted(env, kind):
    # 1 (rad or m) lies inside most joints' boxes and beyond Push-T's: converted, and clipped where needed.
    _assert_same_as(env, lambda e: np.ones(_n(e), ACCEPTED_INTS[kind]), np.ones(_n(env)))


# The reference is itself just past the bound: it acts as the bound whichever way the env clips (in step() or
# through MuJoCo's ctrlrange, whose float64 limits the float32 Box only approximates).
@pytest.mark.parametrize("kind", sorted(CLIPPED_TO_HIGH))
def test_huge_values_act_as_the_upper_bound(env, kind):
    _assert_same_as(env, CLIPPED_TO_HIGH[kind], env.action_space.high.astype(np.float64) + 1.0)


@pytest.mark.parametrize("kind", sorted(CLIPPED_TO_LOW))
def test_huge_negative_values_act_as_the_lower_bound(env, kind):
    _assert_same_as(env, CLIPPED_TO_LOW[kind], env.action_space.low.astype(np.float64) - 1.0)


def test_env_still_steps_after_every_refusal(env):
    for maker in (*REFUSED_TYPES.values(), *WRONG_SHAPES.values(), *NON_FINITE.values()):
        with pytest.raises(ValueError):
            env.step(maker(env))
    obs, reward, *_ = env.step(_mid(env).astype(np.float32))
    assert np.isfinite(obs["agent_pos"]).all() and np.isfinite(reward)


def test_the_comparisons_can_tell_actions_apart(env):
    # Guards the equality checks above: two steps of different actions must leave different observations.
    mid, high, low = _mid(env), env.action_space.high + 1.0, env.action_space.low - 1.0
    assert not np.array_equal(_obs_after(env, mid), _obs_after(env, high))
    assert not np.array_equal(_obs_after(env, mid), _obs_after(env, low))
    assert not np.array_equal(_obs_after(env, mid), _obs_after(env, np.ones(_n(env))))
