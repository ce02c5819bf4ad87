"""Experiment logging to Weights & Biases for every trainer: offline by default (no login), metrics and videos."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from fileio.atomic import write_text_atomic

MODES = ("online", "offline", "disabled")


@dataclass
class LoggerConfig:
    """Mirrors configs/logger/wandb.yaml. The WANDB_MODE environment variable, when set, wins over `mode`
    (so CI and tests switch logging off without touching configs)."""

    mode: str = "offline"
    project: str = "cerebellum"
    entity: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    # Where wandb writes its files; None: inside the run directory.
    dir: Optional[str] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"logger.mode must be one of {MODES}, got {self.mode!r}")

    def effective_mode(self) -> str:
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode:
            # wandb also accepts "dryrun" (= offline) and "run" (= online) there.
            env_mode = {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode)
            if env_mode not in MODES:
                raise ValueError(f"environment variable WANDB_MODE={env_mode!r} is not one of {MODES}")
            return env_mode
        return self.mode


class ExperimentLogger:
    """A wandb run, or a no-op when disabled; metrics are floats keyed like "eval/success_rate"."""

    def __init__(
        self,
        config: LoggerConfig,
        run_dir: str | os.PathLike,
        run_config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        job_type: str = "train",
    ) -> None:
        self.config = config
        self.mode = config.effective_mode()
        self._run = None
        self.run_id = run_id
        if self.mode == "disabled":
            return
        import wandb

        wandb_dir = Path(config.dir) if config.dir else Path(run_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        # Our own id (wandb accepts any [a-z0-9] string) so the trainer can store it and resume the same run.
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._run = wandb.init(
            mode=self.mode,
            project=config.project,
            entity=config.entity,
            group=config.group,
            name=config.name,
            tags=list(config.tags) or None,
            dir=str(wandb_dir),
            config=dict(run_config or {}),
            id=self.run_id,
            # A resumed training run continues the same wandb run (same id), offline or online.
            resume="allow",
            job_type=job_type,
        )

    @property
    def enabled(self) -> bool:
        return self._run is not None

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if self._run is None:
            return
        clean = {}
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                clean[key] = number
        if clean:
            self._run.log(clean, step=int(step))

    def log_video(self, key: str, path: str | os.PathLike, step: int) -> None:
        """Log an mp4 that is already on disk (wandb copies the file; no re-encoding, no moviepy needed)."""
        if self._run is None:
            return
        import wandb

        self._run.log({key: wandb.Video(str(path), format="mp4")}, step=int(step))

    def log_videos(self, videos: list, step: int) -> None:
        for i, video in enumerate(videos):
            self.log_video(f"eval/video_{i}", video, step=step)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def evaluation_metrics(result: Any) -> dict[str, float]:
    """The logged row of an evaluation in simulation (a training.evaluation.EvaluationResult), for both trainers."""
    low, high = result.success_ci95
    return {"eval/success_rate": result.success_rate, "eval/success_ci95_low": low, "eval/success_ci95_high": high,
            "eval/mean_return": result.mean_return, "eval/mean_length": result.mean_length}


def truncate_metrics(path: str | os.PathLike, step: int, key: str = "step") -> int:
    """Keep only the rows of a metrics.jsonl logged at or before `step` (a resumed run logs the later ones again).

    Rewritten atomically (temp file + rename). A row that is not a JSON object with a numeric `key` is dropped: a
    process killed mid-write leaves at most a partial last line. Returns the number of rows dropped.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and isinstance(row.get(key), (int, float)) and row[key] <= step
        except json.JSONDecodeError:
            ok = False
        if ok:
            kept.append(line)
        else:
            dropped += int(bool(line.strip()))
    if dropped:
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return dropped


def truncate_csv(path: str | os.PathLike, step: int, column: str) -> int:
    """The same for a CSV log (SB3's progress.csv): rows whose `column` exceeds `step`, or cannot be read, go."""
    path = Path(path)
    if not path.exists():
        return 0
    text = path.read_bytes().decode("utf-8", "replace")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or column not in rows[0]:
        return 0
    at = rows[0].index(column)
    kept = [rows[0]]
    for row in rows[1:]:
        try:
            if len(row) == len(rows[0]) and float(row[at]) <= step:
                kept.append(row)
        except ValueError:
            pass
    dropped = len(rows) - len(kept)
    if dropped:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(kept)
        write_text_atomic(path, out.getvalue())
    return dropped

