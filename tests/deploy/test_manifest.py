"""Manifest schema: round trip, atomic writing, and load-time refusal of broken or tampered bundles."""

import dataclasses
import json
import os

import pytest

from deploy.runtime import (
    MANIFEST_FILE,
    BundleError,
    BundleIntegrityError,
    ChunkRunner,
    ManifestError,
    UnsupportedFormatVersion,
    file_sha256,
    load_manifest,
    write_manifest,
)
from deploy.runtime.manifest import SELF_DIGEST_KEY
from tests.deploy.bundle_factory import make_manifest, ramp_bundle, ramp_model, write_bundle


@pytest.fixture
def bundle(tmp_path):
    return ramp_bundle(tmp_path / "bundle", action_dim=2, chunk_size=5)


def _edit(bundle, mutate):
    path = bundle / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.pop(SELF_DIGEST_KEY)  # edited by hand: a manifest without its self-digest, so the schema checks speak
    mutate(data)
    path.write_text(json.dumps(data))


def test_round_trip_keeps_every_field(bundle):
    manifest = load_manifest(bundle)
    assert manifest.model.sha256 == file_sha256(bundle / "policy.onnx")
    assert manifest.control.chunk_size == 5 and manifest.action.dim == 2
    assert manifest.observation[0].units == ("rad", "rad")
    assert manifest.source.extra == {"exporter": "tests/deploy/bundle_factory.py"}
    again = type(manifest).from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert again == manifest


def test_safety_fields_round_trip_and_stay_optional(tmp_path):
    manifest = make_manifest(state_range=(-2.0, (3.0, 4.0)), max_tracking_error=(0.1, 0.2), max_velocity=(1.0, 2.0),
                             initial_from=True)
    bundle = write_bundle(tmp_path / "b", ramp_model(2, 5), manifest)
    loaded = load_manifest(bundle)
    state = loaded.feature("observation.state")
    assert (state.low, state.high) == ((-2.0, -2.0), (3.0, 4.0))
    assert loaded.action.max_tracking_error == (0.1, 0.2) and loaded.action.max_velocity == (1.0, 2.0)
    # A manifest written before these fields existed still loads, with every one of them off.
    plain = write_bundle(tmp_path / "plain", ramp_model(2, 5), make_manifest(max_velocity=None, initial_from=False))
    data = json.loads((plain / MANIFEST_FILE).read_text())
    assert "low" not in data["observation"][0] and "max_velocity" not in data["action"]
    old = load_manifest(plain)
    assert old.observation[0].low is None and old.action.max_tracking_error is None


def test_missing_bundle_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_manifest(tmp_path / "nowhere")


def test_missing_manifest(bundle):
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        load_manifest(bundle)


def test_missing_model_file(bundle):
    (bundle / "policy.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="'policy.onnx'.*missing"):
        load_manifest(bundle)
    with pytest.raises(FileNotFoundError):
        ChunkRunner(bundle)


def test_tampered_model_is_refused(bundle):
    path = bundle / "policy.onnx"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="sha256 of policy.onnx .* modified or corrupted"):
        load_manifest(bundle)
    with pytest.raises(BundleIntegrityError):
        ChunkRunner(bundle)


def test_invalid_json(bundle):
    (bundle / MANIFEST_FILE).write_text("{ not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(bundle)


def _set(path, value):
    def mutate(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _sets(*changes):
    def mutate(data):
        for path, value in changes:
            _set(path, value)(data)
    return mutate


def _delete(path):
    def mutate(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


@pytest.mark.parametrize("mutate, error, message", [
    (_set(["format_version"], 3), UnsupportedFormatVersion, r"format_version 3 is not supported .* reads \[1, 2\]"),
    (_set(["format_version"], "1"), UnsupportedFormatVersion, "format_version '1' is not supported"),
    (_delete(["format_version"]), UnsupportedFormatVersion, "missing 'format_version'"),
    (_set(["format"], "something-else"), ManifestError, "not a policy bundle manifest"),
    (_delete(["control", "chunk_size"]), ManifestError, "missing required key 'control.chunk_size'"),
    (_set(["control", "chunk_size"], "5"), ManifestError, "control.chunk_size: expected an integer, got str"),
    (_set(["control", "frequency_hz"], 0), ManifestError, "control.frequency_hz: must be > 0"),
    (_set(["control", "chunk_sise"], 5), ManifestError, r"unknown key\(s\) \['chunk_sise'\] in control"),
    (_set(["control", "n_action_steps"], 6), ManifestError, "exceeds chunk_size 5"),
    (_set(["control", "temporal_ensemble_coeff"], 0.01), ManifestError, "n_action_steps must be 1"),
    (_delete(["control", "temporal_ensemble_coeff"]), ManifestError, "temporal_ensemble_coeff"),
    (_set(["action", "lower"], [0.0]), ManifestError, r"action.lower: expected 2 entries, got 1"),
    (_set(["action", "upper"], [-1e4, 1e4]), ManifestError, r"lower must be < upper .*joint0"),
    (_set(["action", "max_velocity"], [1.0, -1.0]), ManifestError, "max_velocity: every entry must be > 0"),
    (_set(["action", "units"], ["rad", 3]), ManifestError, r"action.units\[1\]: expected a non-empty string"),
    (_set(["observation", 0, "dtype"], "float16"), ManifestError, "'float16' is not one of"),
    (_set(["observation", 0, "shape"], [0]), ManifestError, "every dimension must be >= 1"),
    (_set(["model", "file"], "../policy.onnx"), ManifestError, "plain file name inside the bundle"),
    (_set(["model", "sha256"], "abc"), ManifestError, "64 lowercase hex digits"),
    (_set(["model", "inputs"], {"observation.wrist": "state_in"}), ManifestError,
     r"unmapped observation keys: \['observation.state'\]"),
    (_set(["policy_type"], "my policy"), ManifestError, "policy_type: expected a plain identifier"),
    (_set(["policy_type"], 3), ManifestError, "policy_type: expected a non-empty string"),
    (_set(["action", "initial_from"], {"key": "observation.state", "indices": [0, 5]}), ManifestError,
     "initial_from.indices"),
    (_delete(["source", "config"]), ManifestError, "missing required key 'source.config'"),
    (_set(["observation", 0, "low"], [-1.0, -1.0]), ManifestError, "low and high go together"),
    (_set(["observation", 0, "high"], [1.0, 1.0]), ManifestError, r"observation\[0\].low: low and high go together"),
    (_sets((["observation", 0, "low"], [-1.0]), (["observation", 0, "high"], [1.0])), ManifestError,
     r"observation\[0\].low: expected 2 entries, got 1"),
    (_sets((["observation", 0, "low"], [-1.0, 2.0]), (["observation", 0, "high"], [1.0, 1.0])), ManifestError,
     r"low must be <= high .*flat indices \[1\]"),
    (_sets((["observation", 0, "low"], [-1.0, "x"]), (["observation", 0, "high"], [1.0, 1.0])), ManifestError,
     r"observation\[0\].low\[1\]: expected a number"),
    (_sets((["observation", 0, "low"], [-1.0, -1.0]), (["observation", 0, "high"], [1.0, 1e400])), ManifestError,
     r"observation\[0\].high\[1\]: expected a finite number"),
    (_sets((["observation", 0, "low"], [0, 0]), (["observation", 0, "high"], [1, 1]),
           (["observation", 0, "dtype"], "int64")), ManifestError, "range checks are for float features"),
    (_set(["action", "max_tracking_error"], [0.1]), ManifestError, "max_tracking_error: expected 2 entries"),
    (_set(["action", "max_tracking_error"], [0.1, 0.0]), ManifestError, "max_tracking_error: every entry must be > 0"),
    (_sets((["action", "max_tracking_error"], [0.1, 0.1]), (["action", "initial_from"], None)), ManifestError,
     "max_tracking_error: .*needs action.initial_from"),
])
def test_malformed_manifest_is_refused_with_a_specific_message(bundle, mutate, error, message):
    _edit(bundle, mutate)
    with pytest.raises(error, match=message):
        load_manifest(bundle)


def test_policy_type_is_any_identifier_not_a_closed_list(bundle):
    # A family registered outside this repository exports bundles the runtime runs like any other.
    _edit(bundle, _set(["policy_type"], "my_family_2"))
    assert load_manifest(bundle).policy_type == "my_family_2"


def test_graph_that_disagrees_with_the_manifest_is_refused(tmp_path):
    # The manifest promises 3 state dimensions, the graph takes 2.
    bundle = write_bundle(tmp_path / "b", ramp_model(2, 5), make_manifest(action_dim=3, chunk_size=5))
    with pytest.raises(BundleError, match="input 'state_in' has shape"):
        ChunkRunner(bundle)


def test_graph_without_the_declared_output_is_refused(tmp_path):
    manifest = make_manifest(action_dim=2, chunk_size=5)
    manifest = dataclasses.replace(manifest, model=dataclasses.replace(manifest.model, output="chunk"))
    bundle = write_bundle(tmp_path / "b", ramp_model(2, 5), manifest)
    with pytest.raises(BundleError, match="no output named 'chunk'"):
        ChunkRunner(bundle)


def test_writer_refuses_a_wrong_hash_and_leaves_no_partial_file(tmp_path):
    bundle = tmp_path / "b"
    write_bundle(bundle, ramp_model(2, 5), make_manifest())
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(BundleIntegrityError):
        write_manifest(bundle, make_manifest(model_sha256="1" * 64))
    assert sorted(os.listdir(bundle)) == ["policy.onnx"]


def test_writer_replaces_atomically(tmp_path):
    bundle = write_bundle(tmp_path / "b", ramp_model(2, 5), make_manifest())
    first = load_manifest(bundle)
    write_manifest(bundle, first)
    assert load_manifest(bundle) == first
    assert sorted(os.listdir(bundle)) == [MANIFEST_FILE, "policy.onnx"]
    # Readable by the controller's user, not only by the exporter (mkstemp alone would leave 0600).
    assert (bundle / MANIFEST_FILE).stat().st_mode & 0o777 == 0o644


def test_manifest_carries_its_own_digest_and_a_flipped_digit_is_refused(tmp_path):
    """A one-bit flip in a digit (50 Hz -> 40 Hz) still parses as JSON: the manifest's self-digest catches it."""
    import json

    bundle = ramp_bundle(tmp_path / "b")
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    assert len(data[SELF_DIGEST_KEY]) == 64
    hz = data["control"]["frequency_hz"]
    assert load_manifest(bundle).control.frequency_hz == hz

    text = path.read_text()
    needle = f'"frequency_hz": {json.dumps(hz)}'
    digit = needle[-3]  # a digit of the value; flipping its lowest bit gives another digit
    flipped = needle[:-3] + chr(ord(digit) ^ 1) + needle[-2:]
    assert needle in text and flipped != needle
    path.write_text(text.replace(needle, flipped))
    with pytest.raises(BundleIntegrityError, match=r"manifest.json.*modified or corrupted"):
        load_manifest(bundle)
    assert load_manifest(bundle, verify_hash=False).control.frequency_hz != hz  # the user's explicit opt-out

    # Bundles written before the digest existed still load.
    del data[SELF_DIGEST_KEY]
    path.write_text(json.dumps(data))
    assert load_manifest(bundle).control.frequency_hz == hz
