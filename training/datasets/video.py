"""MP4 encoding and decoding of camera streams through PyAV (several episodes back to back in one file)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from .format import CorruptFileError

# SVT-AV1 prints its banner to stderr unless told otherwise; keep recording output readable.
os.environ.setdefault("SVT_LOG", "1")
logging.getLogger("libav").setLevel(logging.ERROR)

# info.json names codecs the way ffprobe does (LeRobot copies ffprobe's codec_name).
_CODEC_NAMES = {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "h264": "h264", "libx265": "hevc"}
_FALLBACKS = ("libsvtav1", "libx264", "mpeg4")


@dataclass
class VideoConfig:
    """How camera streams are compressed. LeRobot's defaults: AV1 (SVT), yuv420p, a keyframe every 2 frames."""

    codec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    crf: int = 30
    gop: int = 2  # short GOPs keep LeRobot's random-access decoding cheap; our loader decodes sequentially
    preset: int | None = 12  # SVT-AV1 speed preset (0 slowest .. 13 fastest); ignored by other codecs


def encoder_available(name: str) -> bool:
    try:
        return av.codec.Codec(name, "w") is not None
    except Exception:
        return False


def resolve_codec(requested: str) -> str:
    """The requested encoder if this PyAV build has it, else the first available fallback."""
    if encoder_available(requested):
        return requested
    for name in _FALLBACKS:
        if encoder_available(name):
            logging.getLogger(__name__).warning("video encoder %s unavailable, using %s", requested, name)
            return name
    raise RuntimeError(f"no usable video encoder in this PyAV build (tried {requested!r} and {_FALLBACKS})")


def codec_name(encoder: str) -> str:
    return _CODEC_NAMES.get(encoder, encoder)


def realtime_threads() -> set[int]:
    """Ids of this process's threads that run under a real-time policy (SCHED_FIFO / SCHED_RR); empty off Linux."""
    tasks = Path("/proc/self/task")
    if not hasattr(os, "sched_getscheduler") or not tasks.is_dir():
        return set()
    found = set()
    for task in tasks.iterdir():
        try:
            if os.sched_getscheduler(int(task.name)) in (os.SCHED_FIFO, os.SCHED_RR):
                found.add(int(task.name))
        except (ValueError, ProcessLookupError, PermissionError):
            continue  # a thread that ended meanwhile
    return found


def demote_realtime_threads(keep: set[int] = frozenset()) -> int:
    """Put this process's real-time threads, except those in `keep`, back to the normal time-sharing policy; returns
    how many were demoted.

    Run as root, SVT-AV1 starts its encoder threads (and leaves the calling thread) at SCHED_FIFO priority 99. A
    recorder at that priority starves every other process on the machine, a robot computer's control loop included.
    Threads that were real-time before the encoder started (a user's `chrt`) are kept as they were."""
    demoted = 0
    for tid in realtime_threads() - set(keep):
        try:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            demoted += 1
        except (ProcessLookupError, PermissionError):
            continue
    return demoted


class VideoStreamWriter:
    """Appends uint8 (T, H, W, 3) frames to one mp4 at a constant frame rate (pts = frame number / fps)."""

    def __init__(self, path: Path, fps: int, height: int, width: int, config: VideoConfig):
        if config.pix_fmt in ("yuv420p", "yuv422p") and (height % 2 or width % 2):
            raise ValueError(
                f"{path}: {config.pix_fmt} needs even image sizes, got {height}x{width}; use an even camera size"
            )
        self.path = Path(path)
        self.height, self.width = height, width
        self.encoder = resolve_codec(config.codec)
        options = {"g": str(config.gop), "crf": str(config.crf)}
        if self.encoder == "libsvtav1" and config.preset is not None:
            options["preset"] = str(config.preset)
        if self.encoder == "libx264":
            options["preset"] = "veryfast"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._realtime_before = realtime_threads()
        self.container = av.open(str(self.path), "w", format="mp4")
        self.stream = self.container.add_stream(self.encoder, rate=int(fps), options=options)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = config.pix_fmt
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"{self.path}: expected uint8 frames of shape (T, {self.height}, {self.width}, 3), "
                f"got {frames.dtype} {frames.shape}"
            )
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self.frames
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
            self.frames += 1
        demote_realtime_threads(keep=self._realtime_before)  # the encoder starts its threads on the first frames

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass


def decode_video(path: Path, fps: float, total_frames: int, context: str = "") -> np.ndarray:
    """Decode the first ``total_frames`` frames of an mp4 into uint8 (T, H, W, 3), placed by timestamp.

    Raises FileNotFoundError / CorruptFileError naming the file (and ``context``: episode, key).
    """
    path = Path(path)
    where = f"{path}{' (' + context + ')' if context else ''}"
    if not path.exists():
        raise FileNotFoundError(f"video file missing: {where}")
    out: np.ndarray | None = None
    seen = np.zeros(total_frames, bool)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CorruptFileError(f"video file has no video stream: {where}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for count, frame in enumerate(container.decode(stream)):
                seconds = float(frame.pts * frame.time_base) if frame.pts is not None else count / fps
                i = int(round(seconds * fps))
                if i >= total_frames:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                if out is None:
                    out = np.empty((total_frames, *rgb.shape), np.uint8)
                out[i] = rgb
                seen[i] = True
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:  # PyAV decodes corrupt metadata as text
        if isinstance(err, FileNotFoundError):
            raise
        raise CorruptFileError(f"cannot decode video file {where}: {err}") from err
    if out is None or not seen.all():
        first = int(np.flatnonzero(~seen)[0]) if total_frames else 0
        raise CorruptFileError(
            f"video file {where} lacks {int((~seen).sum())} of {total_frames} expected frames "
            f"(first missing: frame {first}, i.e. t={first / fps:.3f}s)"
        )
    return out
