"""Bad input: unknown versions, missing or corrupt files, wrong episode contents -> errors naming the culprit."""

import json

import numpy as np
import pytest
from dataset_test_utils import FEATURES, make_episode

from training.datasets import (
    CorruptFileError,
    DatasetFormatError,
    DatasetMeta,
    DatasetWriter,
    SchemaMismatchError,
    WindowDataset,
    load_images,
)

DATA0 = "data/chunk-000/file-000.parquet"
VIDEO0 = "videos/observation.images.top/chunk-000/file-000.mp4"


@pytest.fixture
def dataset(dataset):
    """The copy without meta/checksums.json: these tests reach the structural checks that datasets without
    checksums (LeRobot's) rely on; with checksums every edit below is caught earlier (test_dataset_checksums.py)."""
    (dataset / "meta/checksums.json").unlink()
    return dataset


def test_unknown_codebase_version(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    info["codebase_version"] = "v9.1"
    (dataset / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match=r"unsupported codebase_version 'v9.1'.*info.json|info.json.*'v9.1'"):
        DatasetMeta(dataset)
    info["codebase_version"] = "v2.1"
    (dataset / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match="convert"):
        DatasetMeta(dataset)


def test_missing_dataset_and_info(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DatasetMeta(tmp_path / "nowhere")
    (dataset / "meta/info.json").unlink()
    with pytest.raises(FileNotFoundError, match="info.json"):
        DatasetMeta(dataset)


# file, what the error must name, how a reader meets it, how much of the file a truncation keeps
READERS = {
    "parquet": (DATA0, r"file-000\.parquet.*episodes 0\.\.1", lambda root: WindowDataset(root, {"action": [0]}), 2),
    "video": (VIDEO0, r"file-000\.mp4.*observation\.images\.top.*episodes 0\.\.1",
              lambda root: load_images(DatasetMeta(root), "observation.images.top", in_memory=True), 3),
}


@pytest.mark.parametrize("kind", sorted(READERS))
def test_missing_and_corrupt_data_files_are_named_with_their_episodes(dataset, kind):
    relative, named, read, keep = READERS[kind]
    path = dataset / relative
    blob = path.read_bytes()
    path.unlink()
    with pytest.raises(FileNotFoundError, match=named):
        read(dataset)
    path.write_bytes(blob[: len(blob) // keep])
    with pytest.raises(CorruptFileError, match=named):
        read(dataset)


def test_corrupt_episode_metadata_is_named(dataset):
    (dataset / "meta/episodes/chunk-000/file-001.parquet").write_bytes(b"not parquet")
    with pytest.raises(CorruptFileError, match=r"meta/episodes/chunk-000/file-001\.parquet"):
        DatasetMeta(dataset)


def test_episode_rows_missing_from_data_file(dataset):
    import pyarrow.parquet as pq

    table = pq.read_table(dataset / DATA0)
    pq.write_table(table.slice(0, table.num_rows - 2), dataset / DATA0)
    with pytest.raises(CorruptFileError, match=r"episode 1 should hold frames with index 5\.\.10"):
        WindowDataset(dataset, {"action": [0]})


def test_info_and_episode_metadata_disagree(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    info["total_episodes"] = 4
    (dataset / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match="total_episodes=4"):
        DatasetMeta(dataset)


def test_column_with_wrong_width(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    info["features"]["action"]["shape"] = [5]
    (dataset / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(SchemaMismatchError, match=r"'action'.*2 values per frame.*\(5,\)"):
        WindowDataset(dataset, {"action": [0]})


def test_bad_episodes_are_rejected_before_anything_is_written(tmp_path):
    rng = np.random.default_rng(0)
    writer = DatasetWriter.create(tmp_path / "ds", 10, FEATURES)
    ep = make_episode(rng, 4)
    with pytest.raises(SchemaMismatchError, match=r"'observation.state': expected shape \(4, 3\), got \(4, 5\)"):
        writer.add_episode({**ep, "observation.state": np.zeros((4, 5), np.float32)}, "t")
    with pytest.raises(SchemaMismatchError, match=r"camera 'observation.images.top'.*\(4, 32, 48, 3\)"):
        writer.add_episode({**ep, "observation.images.top": np.zeros((4, 32, 48, 3), np.float32)}, "t")
    with pytest.raises(SchemaMismatchError, match=r"missing \['action'\]"):
        writer.add_episode({k: v for k, v in ep.items() if k != "action"}, "t")
    bad = ep["action"].copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="'action' holds NaN/inf at frame 2"):
        writer.add_episode({**ep, "action": bad}, "t")
    with pytest.raises(ValueError, match="same number of frames"):
        writer.add_episode({**ep, "action": ep["action"][:3]}, "t")
    writer.close()
    assert DatasetMeta(tmp_path / "ds").total_episodes == 0
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        DatasetWriter.create(tmp_path / "ds", 10, FEATURES)
    with pytest.raises(ValueError, match="even image sizes"):
        odd = {"observation.images.top": {"dtype": "video", "shape": [31, 48, 3], "names": None}}
        with DatasetWriter.create(tmp_path / "odd", 10, odd) as w:
            w.add_episode({"observation.images.top": np.zeros((2, 31, 48, 3), np.uint8)}, "t")


@pytest.mark.parametrize("edit, message", [
    (lambda info: info.update(fps=0), "fps must be a positive integer, got 0"),
    (lambda info: info.update(total_frames=-3), "total_frames must be a non-negative integer, got -3"),
    (lambda info: info.update(total_episodes="3"), "total_episodes must be a non-negative integer, got '3'"),
    (lambda info: info.update(features=[1, 2]), "'features' must map feature names to objects"),
    (lambda info: info["features"]["action"].update(shape=[2.5]), r"feature 'action' needs a list of positive"),
])
def test_malformed_info_values_name_file_and_field(dataset, edit, message):
    info = json.loads((dataset / "meta/info.json").read_text())
    edit(info)
    (dataset / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match=rf"info\.json: {message}"):
        DatasetMeta(dataset)


def test_unfinished_commit_on_a_read_only_dataset_is_named(dataset, monkeypatch):
    from training.datasets import atomic

    (dataset / atomic.JOURNAL_NAME).write_text(json.dumps({"staging": ".staging/1-" + "0" * 32, "files": []}))

    def read_only(root, clean_staging=True):
        raise PermissionError(13, "Permission denied", str(root / "meta/info.json"))

    monkeypatch.setattr(atomic, "recover", read_only)
    with pytest.raises(DatasetFormatError, match=r"unfinished commit \(\.commit-journal\.json\).*Permission denied"):
        DatasetMeta(dataset)
