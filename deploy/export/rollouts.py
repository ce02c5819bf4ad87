"""Rollouts of a bundle in simulation, as files a robot controller can replay: Parquet + CSV, atomically written.

Two tables per export, each as <name>.parquet and <name>.csv, plus rollouts.json describing them:
    actions  one row per control tick that was executed: episode, seed, tick, timestamp_s, <one column per joint>,
             held (the runner output its held action because of a fault)
    chunks   one row per predicted action: episode, seed, chunk (index in the episode), origin_tick (the tick whose
             observation the chunk was computed from), step (index from the action for that observation on),
             tick = origin_tick + step, timestamp_s, <one column per joint>
timestamp_s = tick / control_hz from the episode start. Joint columns are named by the manifest's action names, in
its units (Parquet field metadata "unit"; rollouts.json "units"), float32.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ACTIONS, CHUNKS, META_FILE = "actions", "chunks", "rollouts.json"
FORMAT_VERSION = 1


@dataclass
class _Episode:
    episode: int
    seed: int | None
    ticks: list[int] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    held: list[bool] = field(default_factory=list)
    chunks: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (origin tick, actions from chunk_offset)


class RolloutRecorder:
    """Collects executed actions and predicted chunks per episode while a bundle runs in simulation."""

    def __init__(self, action_names: tuple[str, ...], action_units: tuple[str, ...], control_hz: float,
                 chunk_offset: int = 0, metadata: dict | None = None):
        self.action_names, self.action_units = tuple(action_names), tuple(action_units)
        self.control_hz, self.chunk_offset = float(control_hz), int(chunk_offset)
        self.metadata = dict(metadata or {})
        self.episodes: dict[int, _Episode] = {}

    def start(self, episode: int, seed: int | None) -> None:
        self.episodes[episode] = _Episode(episode, seed)

    def tick(self, episode: int, tick: int, action: np.ndarray, held: bool) -> None:
        e = self.episodes[episode]
        e.ticks.append(int(tick))
        e.actions.append(np.asarray(action, np.float32).copy())
        e.held.append(bool(held))

    def chunk(self, episode: int, origin_tick: int, chunk: np.ndarray) -> None:
        self.episodes[episode].chunks.append((int(origin_tick), np.asarray(chunk, np.float32)[self.chunk_offset:]))

    def truncate(self, lengths: dict[int, int]) -> None:
        """Drop what was recorded after each episode ended (the vector env keeps stepping finished sub-envs)."""
        for ep, n in lengths.items():
            e = self.episodes.get(ep)
            if e is None:
                continue
            keep = [i for i, t in enumerate(e.ticks) if t < n]
            e.ticks = [e.ticks[i] for i in keep]
            e.actions = [e.actions[i] for i in keep]
            e.held = [e.held[i] for i in keep]
            e.chunks = [c for c in e.chunks if c[0] < n]

    # ------------------------------------------------------------------------------------------------ tables
    def tables(self):
        import pyarrow as pa

        def joint_fields():
            return [pa.field(name, pa.float32(), metadata={"unit": unit})
                    for name, unit in zip(self.action_names, self.action_units)]

        a_rows = {"episode": [], "seed": [], "tick": [], "timestamp_s": [], "held": []}
        a_joints: list[np.ndarray] = []
        c_rows = {"episode": [], "seed": [], "chunk": [], "origin_tick": [], "step": [], "tick": [], "timestamp_s": []}
        c_joints: list[np.ndarray] = []
        for ep in sorted(self.episodes):
            e = self.episodes[ep]
            n = len(e.ticks)
            a_rows["episode"] += [ep] * n
            a_rows["seed"] += [e.seed] * n
            a_rows["tick"] += e.ticks
            a_rows["timestamp_s"] += [t / self.control_hz for t in e.ticks]
            a_rows["held"] += e.held
            a_joints += e.actions
            for index, (origin, actions) in enumerate(e.chunks):
                steps = range(len(actions))
                c_rows["episode"] += [ep] * len(actions)
                c_rows["seed"] += [e.seed] * len(actions)
                c_rows["chunk"] += [index] * len(actions)
                c_rows["origin_tick"] += [origin] * len(actions)
                c_rows["step"] += list(steps)
                c_rows["tick"] += [origin + s for s in steps]
                c_rows["timestamp_s"] += [(origin + s) / self.control_hz for s in steps]
                c_joints.append(actions)
        dim = len(self.action_names)
        a_mat = np.stack(a_joints) if a_joints else np.zeros((0, dim), np.float32)
        c_mat = np.concatenate(c_joints) if c_joints else np.zeros((0, dim), np.float32)

        def build(rows: dict, mat: np.ndarray) -> pa.Table:
            fields, arrays = [], []
            for name, values in rows.items():
                if name == "seed":
                    fields.append(pa.field(name, pa.int64(), nullable=True))
                    arrays.append(pa.array(values, pa.int64()))
                elif name == "timestamp_s":
                    fields.append(pa.field(name, pa.float64(), metadata={"unit": "s"}))
                    arrays.append(pa.array(values, pa.float64()))
                elif name == "held":
                    fields.append(pa.field(name, pa.bool_()))
                    arrays.append(pa.array(values, pa.bool_()))
                else:
                    fields.append(pa.field(name, pa.int64()))
                    arrays.append(pa.array(values, pa.int64()))
            for j, f in enumerate(joint_fields()):
                fields.append(f)
                arrays.append(pa.array(mat[:, j], pa.float32()))
            meta = {"control_hz": str(self.control_hz), "format_version": str(FORMAT_VERSION)}
            return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))

        return {ACTIONS: build(a_rows, a_mat), CHUNKS: build(c_rows, c_mat)}

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write actions/chunks as Parquet and CSV and rollouts.json into `directory`; each file atomically."""
        import pyarrow.csv as csv
        import pyarrow.parquet as pq

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, table in self.tables().items():
            written[f"{name}.parquet"] = _atomic(directory / f"{name}.parquet", lambda p, t=table: pq.write_table(t, p))
            written[f"{name}.csv"] = _atomic(directory / f"{name}.csv", lambda p, t=table: csv.write_csv(t, p))
        meta = {
            "format_version": FORMAT_VERSION, "control_hz": self.control_hz, "action_names": list(self.action_names),
            "units": dict(zip(self.action_names, self.action_units)), "chunk_offset_dropped": self.chunk_offset,
            "episodes": len(self.episodes), "tables": {ACTIONS: "one row per executed control tick",
                                                        CHUNKS: "one row per predicted action"},
            "timestamps": "timestamp_s = tick / control_hz, from the episode start", **self.metadata,
        }
        text = json.dumps(meta, indent=2)
        written[META_FILE] = _atomic(directory / META_FILE, lambda p: Path(p).write_text(text))
        return written


def _atomic(path: Path, write: Callable[[str], object]) -> Path:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path
