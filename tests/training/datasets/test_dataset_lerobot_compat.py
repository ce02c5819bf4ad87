"""A dataset laid out the way LeRobot's own writer does it (not by our writer) trains here and can be appended to."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from dataset_test_utils import concat, make_episode

from training.datasets import DatasetMeta, DatasetWriter, WindowDataset, checksums, load_images, load_numeric
from training.datasets.verify import verify_dataset
from training.datasets.video import VideoConfig, VideoStreamWriter

FPS = 15
LENGTHS = (9, 14, 6)


def write_lerobot_style_dataset(root, episodes):
    """Variations LeRobot produces and our writer does not: one data file for all episodes, variable-length
    list columns, an unnamed pandas task index, nested feature names, an h264 video holding all episodes,
    extra info keys and columns, no cerebellum sidecars."""
    n = sum(LENGTHS)
    starts = np.cumsum((0,) + LENGTHS[:-1])
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    features = {
        "action": {"dtype": "float32", "shape": [2], "names": {"motors": ["m0", "m1"]}},
        "observation.state": {"dtype": "float32", "shape": [3], "names": {"motors": ["a", "b", "c"]}},
        "observation.images.cam_high": {"dtype": "video", "shape": [32, 48, 3],
                                        "names": ["height", "width", "channels"],
                                        "info": {"video.fps": FPS, "video.codec": "h264", "video.pix_fmt": "yuv420p"}},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {"codebase_version": "v3.0", "robot_type": "aloha", "total_episodes": 3, "total_frames": n,
            "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
            "fps": FPS, "splits": {"train": "0:3"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    pq.write_table(pa.table({"task_index": [0], "__index_level_0__": ["transfer the cube"]}), root / "meta/tasks.parquet")
    frame_index = np.concatenate([np.arange(k) for k in LENGTHS])
    data = pa.table({
        "index": np.arange(n),
        "observation.state": pa.array(concat(episodes, "observation.state").tolist(), pa.list_(pa.float32())),
        "action": pa.array(concat(episodes, "action").tolist(), pa.list_(pa.float32())),
        "next.done": concat(episodes, "next.done"),
        "timestamp": (frame_index / FPS).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.repeat(np.arange(3), LENGTHS),
        "task_index": np.zeros(n, np.int64),
        "language": ["transfer the cube"] * n,
    })
    pq.write_table(data, root / "data/chunk-000/file-000.parquet")
    video = VideoStreamWriter(root / "videos/observation.images.cam_high/chunk-000/file-000.mp4", FPS, 32, 48,
                              VideoConfig(codec="libx264", crf=18, gop=FPS))
    for ep in episodes:
        video.write(ep["observation.images.top"])
    video.close()
    pq.write_table(pa.table({
        "episode_index": [0, 1, 2],
        "tasks": [["transfer the cube"]] * 3,
        "length": list(LENGTHS),
        "data/chunk_index": [0, 0, 0], "data/file_index": [0, 0, 0],
        "dataset_from_index": starts.tolist(), "dataset_to_index": (starts + LENGTHS).tolist(),
        "videos/observation.images.cam_high/chunk_index": [0, 0, 0],
        "videos/observation.images.cam_high/file_index": [0, 0, 0],
        "videos/observation.images.cam_high/from_timestamp": (starts / FPS).tolist(),
        "videos/observation.images.cam_high/to_timestamp": ((starts + LENGTHS) / FPS).tolist(),
        "meta/episodes/chunk_index": [0, 0, 0], "meta/episodes/file_index": [0, 0, 0],
        "stats/action/mean": [ep["action"].mean(0).tolist() for ep in episodes],
    }), root / "meta/episodes/chunk-000/file-000.parquet")


def test_lerobot_written_dataset_trains_here_and_accepts_appends(tmp_path):
    rng = np.random.default_rng(21)
    episodes = [make_episode(rng, k) for k in LENGTHS]
    root = tmp_path / "aloha_like"
    write_lerobot_style_dataset(root, episodes)

    report = verify_dataset(root)  # LeRobot's layout variations are no problem; its lack of checksums is a note
    assert report.ok and any("carries no checksums" in n for n in report.notes), report.problems
    meta = DatasetMeta(root)
    assert meta.tasks == ["transfer the cube"] and meta.total_frames == sum(LENGTHS)
    meta.check_features({"observation.state": (3,), "action": (2,), "observation.images.cam_high": (3, 32, 48)})
    ds = WindowDataset(meta, {"observation.state": [-1, 0], "observation.images.cam_high": [0], "action": list(range(8))})
    batch = ds[list(range(len(ds)))]
    np.testing.assert_array_equal(batch["observation.state"][:, 1].numpy(), concat(episodes, "observation.state"))
    np.testing.assert_array_equal(batch["action"][:, 0].numpy(), concat(episodes, "action"))
    first_of_ep1 = LENGTHS[0]
    assert batch["observation.state_is_pad"][first_of_ep1].tolist() == [True, False]
    images = batch["observation.images.cam_high"][:, 0].numpy().astype(np.int16)
    assert np.abs(images - concat(episodes, "observation.images.top").transpose(0, 3, 1, 2)).mean() < 4.0

    more = make_episode(rng, 5)
    with DatasetWriter.open(root) as writer:  # no stats state: rebuilt from data and video in one pass
        writer.add_episode({"action": more["action"], "observation.state": more["observation.state"],
                            "observation.images.cam_high": more["observation.images.top"],
                            "next.done": more["next.done"]}, "transfer the cube")
    meta = DatasetMeta(root)
    assert meta.total_episodes == 4 and meta.features["observation.images.cam_high"]["info"]["video.codec"] == "h264"
    assert meta.episode(3)["data/file_index"] == 1 and meta.episode(3)["videos/observation.images.cam_high/file_index"] == 1
    state = load_numeric(meta, ["observation.state"])["observation.state"].astype(np.float64)
    np.testing.assert_allclose(meta.stats["observation.state"]["mean"], state.mean(0), rtol=1e-9)
    assert load_images(meta, "observation.images.cam_high", in_memory=True).shape[0] == sum(LENGTHS) + 5
    # Appending adopted LeRobot's files into a checksum manifest: every file is covered and verifies.
    assert meta.checksums is not None and sorted(meta.checksums) == checksums.dataset_files(root)
    report = verify_dataset(root)
    assert report.ok and report.notes == [], (report.problems, report.notes)
