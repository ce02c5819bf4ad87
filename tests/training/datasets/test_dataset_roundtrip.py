"""Record -> load round trips, the on-disk v3.0 layout, appending and multi-episode video files."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dataset_test_utils import FEATURES, STATE_FEATURES, H, W, concat, make_episode

from training.datasets import DatasetMeta, DatasetWriter, load_images, load_numeric
from training.datasets.format import STATS_STATE_PATH


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt") / "ds"
    rng = np.random.default_rng(0)
    episodes = [make_episode(rng, n) for n in (12, 7, 20, 5, 9)]
    with DatasetWriter.create(root, 20, FEATURES, robot_type="toy", commit_every=2) as writer:
        for i, ep in enumerate(episodes):
            writer.add_episode(ep, "pick" if i % 2 == 0 else "place", extra={"seed": 100 + i, "success": i != 3})
    return root, episodes


def test_numeric_round_trip_is_exact(recorded):
    root, episodes = recorded
    meta = DatasetMeta(root)
    keys = list(STATE_FEATURES)
    loaded = load_numeric(meta, keys + ["timestamp", "frame_index", "episode_index", "index", "task_index"])
    for key in keys:
        np.testing.assert_array_equal(loaded[key], concat(episodes, key), err_msg=key)
    lengths = [len(e["action"]) for e in episodes]
    np.testing.assert_array_equal(loaded["episode_index"], np.repeat(np.arange(5), lengths))
    np.testing.assert_array_equal(loaded["frame_index"], np.concatenate([np.arange(n) for n in lengths]))
    np.testing.assert_array_equal(loaded["index"], np.arange(sum(lengths)))
    np.testing.assert_allclose(loaded["timestamp"], loaded["frame_index"] / 20, atol=1e-6)
    assert meta.tasks == ["pick", "place"]
    np.testing.assert_array_equal(loaded["task_index"], np.repeat([0, 1, 0, 1, 0], lengths))
    assert meta.episode_column("seed").tolist() == [100, 101, 102, 103, 104]
    assert meta.episode_column("success").tolist() == [True, True, True, False, True]


def test_video_round_trip_decodes_close_to_originals(recorded):
    root, episodes = recorded
    images = load_images(DatasetMeta(root), "observation.images.top", in_memory=True)
    original = concat(episodes, "observation.images.top").transpose(0, 3, 1, 2)
    assert images.shape == original.shape and images.dtype == np.uint8
    err = np.abs(images.astype(np.int16) - original)
    assert err.mean() < 4.0, err.mean()  # lossy AV1/yuv420p; chroma edges of the block dominate the rest
    # Frames land at the right index: nearly every decoded frame is closest to its own original.
    distance = np.abs(images[:, None].astype(np.int16) - original[None]).reshape(len(err), len(err), -1).mean(-1)
    assert (distance.argmin(1) == np.arange(len(err))).mean() >= 0.95


def test_layout_matches_lerobot_v3(recorded):
    root, _ = recorded
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["total_episodes"] == 5 and info["total_frames"] == 53 and info["total_tasks"] == 2
    assert info["fps"] == 20 and info["robot_type"] == "toy" and info["splits"] == {"train": "0:5"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    for key in ("chunks_size", "data_files_size_in_mb", "video_files_size_in_mb"):
        assert isinstance(info[key], int)
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert info["features"][key]["shape"] == [1]
    video = info["features"]["observation.images.top"]
    assert video["shape"] == [H, W, 3] and video["names"] == ["height", "width", "channels"]
    assert video["info"]["video.codec"] in ("av1", "h264") and video["info"]["video.pix_fmt"] == "yuv420p"
    # commit_every=2: files 0,1 hold two episodes each, file 2 the fifth.
    for i in range(3):
        assert (root / f"data/chunk-000/file-{i:03d}.parquet").exists()
        assert (root / f"videos/observation.images.top/chunk-000/file-{i:03d}.mp4").exists()
        assert (root / f"meta/episodes/chunk-000/file-{i:03d}.parquet").exists()
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 3)
    assert data.schema.field("next.done").type == pa.bool_()
    assert data.num_rows == 19 and pq.ParquetFile(root / "data/chunk-000/file-000.parquet").num_row_groups == 2
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["pick", "place"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in eps] == [0, 1]
    first, second = eps
    assert first["tasks"] == ["pick"] and first["length"] == 12
    assert (first["dataset_from_index"], first["dataset_to_index"]) == (0, 12)
    assert (second["dataset_from_index"], second["dataset_to_index"]) == (12, 19)
    # Two episodes back to back in one mp4: the second starts where the first ends.
    assert first["videos/observation.images.top/from_timestamp"] == 0.0
    assert first["videos/observation.images.top/to_timestamp"] == pytest.approx(12 / 20)
    assert second["videos/observation.images.top/from_timestamp"] == pytest.approx(12 / 20)
    assert second["videos/observation.images.top/file_index"] == 0
    assert len(first["stats/observation.state/mean"]) == 3
    assert np.asarray(first["stats/observation.images.top/mean"]).shape == (3, 1, 1)
    assert not (root / ".staging").exists() and not (root / ".commit-journal.json").exists()


def test_append_continues_indices_and_stats(recorded, tmp_path):
    root, episodes = recorded
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    rng = np.random.default_rng(1)
    more = [make_episode(rng, 6), make_episode(rng, 4)]
    with DatasetWriter.open(copy, commit_every=5) as writer:
        assert writer.num_episodes == 5
        for ep in more:
            writer.add_episode(ep, "pick", extra={"seed": 7, "success": True})
    meta = DatasetMeta(copy)
    assert meta.total_episodes == 7 and meta.total_frames == 63
    assert meta.episode(5)["data/file_index"] == 3  # a new file after files 0..2
    loaded = load_numeric(meta, ["action"])
    np.testing.assert_array_equal(loaded["action"], concat(episodes + more, "action"))
    everything = concat(episodes + more, "observation.state").astype(np.float64)
    np.testing.assert_allclose(meta.stats["observation.state"]["mean"], everything.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(meta.stats["observation.state"]["q90"], np.quantile(everything, 0.9, axis=0))
    images = load_images(meta, "observation.images.top", in_memory=True)
    assert images.shape[0] == 63

    # Without the running stats state (e.g. a dataset LeRobot recorded) opening rebuilds it from the data.
    (copy / STATS_STATE_PATH).unlink()
    with DatasetWriter.open(copy) as writer:
        writer.add_episode(make_episode(rng, 3), "pick", extra={"seed": 8, "success": True})
    meta = DatasetMeta(copy)
    everything = load_numeric(meta, ["observation.state"])["observation.state"].astype(np.float64)
    np.testing.assert_allclose(meta.stats["observation.state"]["std"], everything.std(0), rtol=1e-9)
    assert meta.stats["observation.images.top"]["count"].tolist() == [66]
