"""Synthetic episodes and feature specs shared by the dataset tests."""

from __future__ import annotations

import numpy as np

H, W = 32, 48

FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [3], "names": ["j0", "j1", "j2"]},
    "observation.environment_state": {"dtype": "float32", "shape": [2], "names": None},
    "observation.images.top": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]},
    "action": {"dtype": "float32", "shape": [2], "names": ["a0", "a1"]},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
}
STATE_FEATURES = {k: v for k, v in FEATURES.items() if v["dtype"] != "video"}


def smooth_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """Frames with smooth gradients and a moving block: realistic for a lossy codec, varied per frame."""
    yy, xx = np.mgrid[0:H, 0:W]
    base = rng.uniform(40, 200, size=3)
    frames = np.empty((n, H, W, 3), np.uint8)
    for t in range(n):
        img = np.empty((H, W, 3))
        img[..., 0] = base[0] + 30 * np.sin(xx / 9 + t / 5)
        img[..., 1] = base[1] + 30 * np.cos(yy / 7 - t / 7)
        img[..., 2] = base[2] + 0.5 * xx
        r, c = 4 + (2 * t) % (H - 12), 6 + (3 * t) % (W - 14)
        img[r : r + 8, c : c + 8] = (230, 220, 40)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def make_episode(rng: np.random.Generator, n: int, video: bool = True) -> dict[str, np.ndarray]:
    ep = {
        "observation.state": rng.normal(size=(n, 3)).astype(np.float32),
        "observation.environment_state": rng.normal(size=(n, 2)).astype(np.float32),
        "action": rng.normal(size=(n, 2)).astype(np.float32),
        "next.reward": rng.normal(size=n).astype(np.float32),
        "next.done": np.arange(n) == n - 1,
    }
    if video:
        ep["observation.images.top"] = smooth_frames(rng, n)
    return ep


def concat(episodes: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return np.concatenate([e[key] for e in episodes])


def value_bytes_offset(path, column: str, row_group: int = 0) -> int:
    """Offset of the last 8 value bytes of a parquet column chunk: flipping them changes values, not structure.

    Our writer's columns are dictionary-encoded, so the values live at the end of the dictionary page (just before
    the data page); without a dictionary page they end the column chunk.
    """
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata.row_group(row_group)
    names = [md.column(i).path_in_schema for i in range(md.num_columns)]
    chunk = md.column(next(i for i, n in enumerate(names) if n == column or n.startswith(column + ".")))
    if chunk.dictionary_page_offset is not None:
        return chunk.data_page_offset - 8
    start = chunk.data_page_offset
    return start + chunk.total_compressed_size - 8


def flip(path, offset: int, count: int = 1, mask: int = 0xFF) -> None:
    """XOR ``count`` bytes of a file at ``offset`` (negative offsets count from the end) with ``mask``."""
    blob = bytearray(path.read_bytes())
    offset = offset % len(blob)
    for i in range(offset, min(offset + count, len(blob))):
        blob[i] ^= mask
    path.write_bytes(bytes(blob))


def write_small_dataset(root, seed: int, lengths=(5, 6, 4)):
    """A small camera dataset (FEATURES, 10 fps, committed every 2 episodes) with episodes of `lengths` frames."""
    from training.datasets import DatasetWriter

    rng = np.random.default_rng(seed)
    with DatasetWriter.create(root, 10, FEATURES, commit_every=2) as writer:
        for n in lengths:
            writer.add_episode(make_episode(rng, n), "t")
    return root
