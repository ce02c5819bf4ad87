"""The decode-once image cache: in the user's cache dir (never the dataset's), keyed by checksums, atomic."""

import os
import shutil
import stat
from pathlib import Path

import numpy as np
from dataset_test_utils import make_episode

from training.datasets import DatasetMeta, DatasetWriter, WindowDataset, image_cache

CAMERA = "observation.images.top"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("CEREBELLUM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache.cache_root() == tmp_path / "xdg" / "cerebellum"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says relative paths are invalid
    assert image_cache.cache_root() == Path.home() / ".cache" / "cerebellum"
    monkeypatch.setenv("CEREBELLUM_CACHE_DIR", str(tmp_path / "env"))
    assert image_cache.cache_root() == tmp_path / "env"
    assert image_cache.cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_read_only_dataset_gets_nothing_written_into_it(dataset, tmp_path):
    for path in [dataset, *dataset.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        before = snapshot(dataset)
        ds = WindowDataset(dataset, {CAMERA: [0], "action": [0]}, image_cache_dir=tmp_path / "cache")
        assert isinstance(ds._arrays[CAMERA], np.memmap)
        # Tests run as root, where chmod does not stop writes: what counts is that nothing was written.
        assert snapshot(dataset) == before
        entries = list((tmp_path / "cache" / "decoded").glob("*.npy"))
        assert len(entries) == 1 and Path(ds._arrays[CAMERA].filename) == entries[0]
    finally:
        for path in [dataset, *dataset.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_copies_share_an_entry_and_a_changed_dataset_never_reuses_it(dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = image_cache.load_images(DatasetMeta(dataset), CAMERA, cache_dir=cache)
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the checksums are the same")

    with monkeypatch.context() as m:
        m.setattr(image_cache, "decode_video", no_decoding)
        again = image_cache.load_images(DatasetMeta(copy), CAMERA, cache_dir=cache)
    assert np.array_equal(first, again) and Path(again.filename) == Path(first.filename)

    rng = np.random.default_rng(6)
    with DatasetWriter.open(copy) as writer:
        writer.add_episode(make_episode(rng, 4), "t")
    grown = image_cache.load_images(DatasetMeta(copy), CAMERA, cache_dir=cache)
    assert grown.shape[0] == first.shape[0] + 4 and Path(grown.filename) != Path(first.filename)
    np.testing.assert_array_equal(grown[: first.shape[0]], first)
    assert len(list((cache / "decoded").glob("*.npy"))) == 2
    assert not list((cache / "decoded").glob(".*.tmp"))  # written by rename, no scratch left


def test_cache_entry_changes_with_the_recorded_digests(dataset):
    meta = DatasetMeta(dataset)
    entry = image_cache.cache_entry(meta, CAMERA)
    rel = next(r for r in meta.checksums if r.endswith(".mp4"))
    meta.checksums[rel] = {**meta.checksums[rel], "sha256": "0" * 64}
    assert image_cache.cache_entry(meta, CAMERA) != entry


def test_unwritable_cache_dir_decodes_in_memory(dataset, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    frames = image_cache.load_images(DatasetMeta(dataset), CAMERA, cache_dir=blocker / "cache")
    assert not isinstance(frames, np.memmap) and frames.shape == (15, 3, 32, 48)
    assert "not writable" in caplog.text


def test_dead_builders_scratch_is_removed(dataset, tmp_path):
    cache = tmp_path / "cache"
    entry = image_cache.cache_entry(DatasetMeta(dataset), CAMERA, cache)
    entry.parent.mkdir(parents=True)
    dead = entry.with_name(f".{entry.name}.999999999-{'0' * 32}.tmp")
    live = entry.with_name(f".other.npy.{os.getpid()}-{'1' * 32}.tmp")
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    image_cache.load_images(DatasetMeta(dataset), CAMERA, cache_dir=cache)
    assert not dead.exists() and live.exists()
