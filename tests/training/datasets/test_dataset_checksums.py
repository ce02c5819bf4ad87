"""meta/checksums.json: written at every commit, verified by the reader once per file, mismatches name the file."""

import json
import logging
import shutil

import numpy as np
import pytest
from dataset_test_utils import FEATURES, flip, make_episode, value_bytes_offset

from training.datasets import CorruptFileError, DatasetMeta, DatasetWriter, WindowDataset, checksums, load_numeric
from training.datasets.checksums import CHECKSUMS_PATH, ChecksumMismatchError

DATA0 = "data/chunk-000/file-000.parquet"


def write(root, lengths=(5, 6, 4), commit_every=2, seed=9):
    rng = np.random.default_rng(seed)
    with DatasetWriter.create(root, 10, FEATURES, commit_every=commit_every) as writer:
        for n in lengths:
            writer.add_episode(make_episode(rng, n), "t")
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write(tmp_path_factory.mktemp("sum") / "ds")


@pytest.fixture
def dataset(pristine, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    return root


def test_manifest_lists_every_file_with_its_sha256(dataset):
    files = checksums.read_manifest(dataset)
    on_disk = checksums.dataset_files(dataset)
    assert sorted(files) == on_disk and CHECKSUMS_PATH not in files
    assert {DATA0, "meta/info.json", "meta/stats.json", "meta/tasks.parquet",
            "meta/episodes/chunk-000/file-001.parquet",
            "videos/observation.images.top/chunk-000/file-001.mp4"} <= set(files)
    for rel, recorded in files.items():
        assert recorded == {"sha256": checksums.sha256_file(dataset / rel), "size": (dataset / rel).stat().st_size}


def test_reopened_writer_extends_the_manifest(dataset):
    rng = np.random.default_rng(1)
    with DatasetWriter.open(dataset, commit_every=5) as writer:
        writer.add_episode(make_episode(rng, 3), "t")
    files = checksums.read_manifest(dataset)
    assert sorted(files) == checksums.dataset_files(dataset)
    assert "data/chunk-000/file-002.parquet" in files
    assert DatasetMeta(dataset).total_episodes == 4


def test_flipped_value_bytes_in_data_file_name_file_and_digests(dataset):
    path = dataset / DATA0
    before = load_numeric(DatasetMeta(dataset), ["action"])["action"]
    flip(path, value_bytes_offset(path, "action"), count=8)
    expected = checksums.read_manifest(dataset)[DATA0]["sha256"]
    with pytest.raises(ChecksumMismatchError, match=rf"file-000\.parquet: sha256 [0-9a-f]{{64}}, but .*checksums\.json "
                                                    rf"records {expected}"):
        WindowDataset(dataset, {"action": [0]})
    # The case: unverified, the flipped bytes load as plausible wrong values without any error.
    after = load_numeric(DatasetMeta(dataset, verify=False), ["action"])["action"]
    assert after.shape == before.shape and not np.array_equal(after, before)


def test_truncation_reports_sizes(dataset):
    path = dataset / DATA0
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ChecksumMismatchError, match=rf"file-000\.parquet: size {size - 1} bytes, but .* {size} bytes"):
        load_numeric(DatasetMeta(dataset), ["action"])


def test_metadata_edits_are_caught_at_open(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    info["total_frames"] += 1
    (dataset / "meta/info.json").write_text(json.dumps(info, indent=4))
    with pytest.raises(ChecksumMismatchError, match=r"meta/info\.json"):
        DatasetMeta(dataset)
    assert DatasetMeta(dataset, verify=False).total_frames == info["total_frames"]


def test_stray_file_in_metadata_is_refused(dataset):
    shutil.copy(dataset / "meta/episodes/chunk-000/file-000.parquet", dataset / "meta/episodes/chunk-000/file-009.parquet")
    with pytest.raises(ChecksumMismatchError, match=r"file-009\.parquet: this file is not listed"):
        DatasetMeta(dataset)


def test_corrupt_manifest_is_named(dataset):
    path = dataset / CHECKSUMS_PATH
    data = json.loads(path.read_text())
    first = next(iter(data["files"]))
    data["files"][first]["sha256"] = "0" * 64  # a plausible digest: only the manifest's own digest tells
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptFileError, match=r"checksums\.json is corrupt: its own digest"):
        DatasetMeta(dataset)
    path.write_text("{")
    with pytest.raises(CorruptFileError, match=r"checksums\.json is not valid JSON"):
        DatasetMeta(dataset)


def test_each_file_is_hashed_once_per_process(dataset, monkeypatch):
    checksums.clear_cache()
    calls = []
    real = checksums.sha256_file
    monkeypatch.setattr(checksums, "sha256_file", lambda p: calls.append(p.name) or real(p))
    load_numeric(DatasetMeta(dataset), ["action"])
    first = list(calls)
    assert "info.json" in first and "file-000.parquet" in first
    load_numeric(DatasetMeta(dataset), ["action"])
    assert calls == first  # nothing hashed twice
    # A rewritten file (new inode and mtime) is hashed again, whatever the cache holds.
    data = dataset / DATA0
    blob = data.read_bytes()
    data.unlink()
    data.write_bytes(blob)
    load_numeric(DatasetMeta(dataset), ["action"])
    assert calls[len(first):] == ["file-000.parquet"]


def test_dataset_without_checksums_loads_and_warns_once(dataset, caplog):
    (dataset / CHECKSUMS_PATH).unlink()
    with caplog.at_level(logging.WARNING, logger="training.datasets.checksums"):
        DatasetMeta(dataset)
        DatasetMeta(dataset)
        load_numeric(DatasetMeta(dataset), ["action"])
    warnings = [r for r in caplog.records if "carries no checksums" in r.getMessage()]
    assert len(warnings) == 1 and str(dataset) in warnings[0].getMessage()
    # Appending adopts the existing files into a new manifest.
    rng = np.random.default_rng(2)
    with DatasetWriter.open(dataset) as writer:
        writer.add_episode(make_episode(rng, 4), "t")
    assert sorted(checksums.read_manifest(dataset)) == checksums.dataset_files(dataset)
