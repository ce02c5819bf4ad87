"""Rollouts of a bundle in simulation, as files a robot controller can replay: Parquet + CSV, atomically written.

Two tables per export, each as <name>.parquet and <name>.csv, plus rollouts.json describing them (format_version 2):
    actions  one row per control tick that was executed: episode, seed, tick, timestamp_s, <one column per joint>,
             held (the runner output its held action because of a fault), no_command (the runner had nothing safe
             to command, and the simulated driver held the measured joint position: the row's joint values)
    chunks   one row per predicted action: episode, seed, chunk (index in the episode, in the order computed),
             origin_tick (the tick whose observation the chunk was computed from), used, arrival_tick, start_tick,
             step (index from the action for that observation on, i.e. after chunk_offset), tick, timestamp_s,
             <one column per joint>
In the chunks table the runner's schedule, not the observation tick, places an action: step k of a chunk is
scheduled for tick = start_tick + k. start_tick is origin_tick when the chunk continues a running plan (sync mode,
or async with the actions whose time passed during inference skipped), and later when the chunk ends a hold (an
episode's first chunk, or one that lands after the previous plan ran out: deploy.runtime.ChunkRunner).
arrival_tick is the tick the runner accepted the chunk: rows with tick < arrival_tick were skipped, and a later
chunk's arrival supersedes the rest. used is false, and arrival_tick, start_tick, tick and timestamp_s are null,
for a chunk that was computed but never executed (stale, dropped at a reset, or still in flight when its episode
ended). timestamp_s = tick / control_hz from the episode start. Joint columns are named by the manifest's action
names, in its units (Parquet field metadata "unit"; rollouts.json "units"), float32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fileio.atomic import write_atomic, write_text_atomic

ACTIONS, CHUNKS, META_FILE = "actions", "chunks", "rollouts.json"
# 2: chunks.tick follows the runner's schedule (start_tick); used / arrival_tick / start_tick. 3: actions.no_command
FORMAT_VERSION = 3

COLUMNS = {
    ACTIONS: {
        "episode": "evaluation episode index",
        "seed": "the episode's environment reset seed",
        "tick": "control tick from the episode start",
        "timestamp_s": "tick / control_hz",
        "held": "the runner output its held action because of a fault",
        "no_command": "the runner had nothing safe to command (before the episode's first valid observation); the "
                      "joint values are the measured position the simulated driver held",
    },
    CHUNKS: {
        "episode": "evaluation episode index",
        "seed": "the episode's environment reset seed",
        "chunk": "index of the chunk in its episode, in the order computed",
        "origin_tick": "the tick whose observation the chunk was computed from",
        "used": "the runner accepted the chunk into its plan (false: stale, dropped, or in flight at the end)",
        "arrival_tick": "the tick the runner accepted the chunk (null if unused); rows with tick < arrival_tick "
                        "were skipped",
        "start_tick": "the tick step 0 is scheduled for (null if unused): origin_tick, or later for a chunk that "
                      "ends a hold (first chunk of an episode, or after the previous plan ran out)",
        "step": "action index in the chunk, from chunk_offset on",
        "tick": "start_tick + step: the tick this action is scheduled for (null if unused)",
        "timestamp_s": "tick / control_hz (null if unused)",
    },
}


@dataclass
class _Chunk:
    origin: int  # tick of the observation it was computed from
    actions: np.ndarray  # from chunk_offset on
    arrival: int | None = None  # None: never accepted by the runner
    start: int | None = None


@dataclass
class _Episode:
    episode: int
    seed: int | None
    ticks: list[int] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    held: list[bool] = field(default_factory=list)
    no_command: list[bool] = field(default_factory=list)
    chunks: list[_Chunk] = field(default_factory=list)
    by_origin: dict[int, _Chunk] = field(default_factory=dict)  # the runner requests at most one chunk per tick


class RolloutRecorder:
    """Collects executed actions and predicted chunks (with the ticks the runner scheduled them for) per episode
    while a bundle runs in simulation."""

    def __init__(self, action_names: tuple[str, ...], action_units: tuple[str, ...], control_hz: float,
                 chunk_offset: int = 0, metadata: dict | None = None):
        self.action_names, self.action_units = tuple(action_names), tuple(action_units)
        self.control_hz, self.chunk_offset = float(control_hz), int(chunk_offset)
        self.metadata = dict(metadata or {})
        self.episodes: dict[int, _Episode] = {}

    def start(self, episode: int, seed: int | None) -> None:
        self.episodes[episode] = _Episode(episode, seed)

    def tick(self, episode: int, tick: int, action: np.ndarray, held: bool, no_command: bool = False) -> None:
        e = self.episodes[episode]
        e.ticks.append(int(tick))
        e.actions.append(np.asarray(action, np.float32).copy())
        e.held.append(bool(held))
        e.no_command.append(bool(no_command))

    def chunk(self, episode: int, origin_tick: int, chunk: np.ndarray) -> None:
        """A chunk computed from `origin_tick`'s observation (not yet in the runner's plan)."""
        record = _Chunk(int(origin_tick), np.asarray(chunk, np.float32)[self.chunk_offset:])
        e = self.episodes[episode]
        e.chunks.append(record)
        e.by_origin[record.origin] = record

    def accepted(self, episode: int, origin_tick: int, start_tick: int, arrival_tick: int) -> None:
        """The runner took the chunk computed at `origin_tick` into its plan at `arrival_tick`, its step k
        scheduled for tick start_tick + k (ChunkRunner's on_chunk)."""
        e = self.episodes.get(episode)
        record = e.by_origin.get(int(origin_tick)) if e is not None else None
        if record is None:
            raise ValueError(f"the runner accepted a chunk computed at tick {origin_tick} of episode {episode}, but "
                             "no chunk computed then was recorded (chunks must be computed inside tick(): sync or "
                             "simulated-latency mode)")
        if not origin_tick <= start_tick <= arrival_tick:
            raise ValueError(f"chunk of episode {episode} from tick {origin_tick}: start tick {start_tick} must lie "
                             f"between its observation tick and its arrival tick {arrival_tick}")
        record.arrival, record.start = int(arrival_tick), int(start_tick)

    def truncate(self, lengths: dict[int, int]) -> None:
        """Drop what was recorded after each episode ended (the vector env keeps stepping finished sub-envs); a chunk
        computed in time but accepted only after the end was never executed in the episode: unused."""
        for ep, n in lengths.items():
            e = self.episodes.get(ep)
            if e is None:
                continue
            keep = [i for i, t in enumerate(e.ticks) if t < n]
            e.ticks = [e.ticks[i] for i in keep]
            e.actions = [e.actions[i] for i in keep]
            e.held = [e.held[i] for i in keep]
            e.no_command = [e.no_command[i] for i in keep]
            e.chunks = [c for c in e.chunks if c.origin < n]
            e.by_origin = {c.origin: c for c in e.chunks}
            for c in e.chunks:
                if c.arrival is not None and c.arrival >= n:
                    c.arrival = c.start = None

    # ------------------------------------------------------------------------------------------------ tables
    def tables(self):
        import pyarrow as pa

        a_rows: dict[str, list] = {name: [] for name in COLUMNS[ACTIONS]}
        a_joints: list[np.ndarray] = []
        c_rows: dict[str, list] = {name: [] for name in COLUMNS[CHUNKS]}
        c_joints: list[np.ndarray] = []
        for ep in sorted(self.episodes):
            e = self.episodes[ep]
            n = len(e.ticks)
            a_rows["episode"] += [ep] * n
            a_rows["seed"] += [e.seed] * n
            a_rows["tick"] += e.ticks
            a_rows["timestamp_s"] += [t / self.control_hz for t in e.ticks]
            a_rows["held"] += e.held
            a_rows["no_command"] += e.no_command
            a_joints += e.actions
            for index, c in enumerate(e.chunks):
                k = len(c.actions)
                ticks = [None] * k if c.start is None else [c.start + s for s in range(k)]
                c_rows["episode"] += [ep] * k
                c_rows["seed"] += [e.seed] * k
                c_rows["chunk"] += [index] * k
                c_rows["origin_tick"] += [c.origin] * k
                c_rows["used"] += [c.start is not None] * k
                c_rows["arrival_tick"] += [c.arrival] * k
                c_rows["start_tick"] += [c.start] * k
                c_rows["step"] += list(range(k))
                c_rows["tick"] += ticks
                c_rows["timestamp_s"] += [None if t is None else t / self.control_hz for t in ticks]
                c_joints.append(c.actions)
        dim = len(self.action_names)
        a_mat = np.stack(a_joints) if a_joints else np.zeros((0, dim), np.float32)
        c_mat = np.concatenate(c_joints) if c_joints else np.zeros((0, dim), np.float32)
        nullable = {"seed", "arrival_tick", "start_tick", "tick", "timestamp_s"}  # chunks: null when unused

        def build(table: str, rows: dict, mat: np.ndarray) -> pa.Table:
            fields, arrays = [], []
            for name, values in rows.items():
                kind = (pa.float64() if name == "timestamp_s" else pa.bool_() if name in ("held", "no_command", "used")
                        else pa.int64())
                meta = {"unit": "s"} if name == "timestamp_s" else None
                fields.append(pa.field(name, kind, nullable=name in nullable, metadata=meta))
                arrays.append(pa.array(values, kind))
            for j, (name, unit) in enumerate(zip(self.action_names, self.action_units)):
                fields.append(pa.field(name, pa.float32(), nullable=False, metadata={"unit": unit}))
                arrays.append(pa.array(mat[:, j], pa.float32()))
            meta = {"control_hz": str(self.control_hz), "format_version": str(FORMAT_VERSION),
                    "columns": json.dumps(COLUMNS[table])}
            return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))

        return {ACTIONS: build(ACTIONS, a_rows, a_mat), CHUNKS: build(CHUNKS, c_rows, c_mat)}

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write actions/chunks as Parquet and CSV and rollouts.json into `directory`; each file atomically."""
        import pyarrow.csv as csv
        import pyarrow.parquet as pq

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, table in self.tables().items():
            for file, write in ((f"{name}.parquet", pq.write_table), (f"{name}.csv", csv.write_csv)):
                written[file] = write_atomic(directory / file, lambda p, t=table, w=write: w(t, str(p)))
        meta = {
            "format_version": FORMAT_VERSION, "control_hz": self.control_hz, "action_names": list(self.action_names),
            "units": dict(zip(self.action_names, self.action_units)), "chunk_offset_dropped": self.chunk_offset,
            "episodes": len(self.episodes), "tables": {ACTIONS: "one row per executed control tick",
                                                        CHUNKS: "one row per predicted action"},
            "columns": COLUMNS,
            "timestamps": "timestamp_s = tick / control_hz, from the episode start",
            "schedule": "chunks: step k is scheduled for tick = start_tick + k (start_tick = origin_tick, or later "
                        "for a chunk that ends a hold); rows with tick < arrival_tick were skipped; unused chunks "
                        "have null arrival_tick / start_tick / tick / timestamp_s",
            **self.metadata,
        }
        text = json.dumps(meta, indent=2)
        written[META_FILE] = write_text_atomic(directory / META_FILE, text)
        return written

