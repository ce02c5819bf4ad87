"""Atomic writes: a file is written in full under a temp name beside its target, fsynced, then renamed into place."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from .locks import pid_alive

# Temp names carry their writer's pid, so a cleanup can tell a dead writer's leftovers from a live one's work.
_TMP_FILE = re.compile(r"^\..+\.(\d+)-[0-9a-f]{32}\.tmp$")


def temp_path(path: Path) -> Path:
    """A scratch file beside ``path`` for write-then-rename, named after this process."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")


def is_temp_name(name: str) -> bool:
    return _TMP_FILE.match(name) is not None


def temp_owner(name: str) -> int | None:
    """The writer pid in a name made by temp_path, or None for any other name."""
    match = _TMP_FILE.match(name)
    return int(match.group(1)) if match else None


def is_dead_temp(name: str) -> bool:
    """A scratch file named by temp_path whose writer is gone."""
    pid = temp_owner(name)
    return pid is not None and not pid_alive(pid)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    # Directory fsync makes the rename itself durable; some filesystems refuse it, which is harmless.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then ``root`` itself."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            fsync_file(path)
    fsync_dir(root)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temp)`` to write the whole file at a temp path beside ``path``, then rename it into place.

    For writers that need a file name (parquet, video, numpy); a crash leaves the old file or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike, obj: object) -> Path:
    return write_bytes_atomic(path, json.dumps(obj, indent=4, ensure_ascii=False).encode())


def publish_directory(tmp: Path, final: Path, trash: Path) -> None:
    """Rename the complete directory ``tmp`` to ``final``, replacing what is there; fsyncs the parent.

    os.replace cannot overwrite a non-empty directory, so an existing ``final`` is first moved aside to ``trash``
    (a name the caller's cleanup recognises) and removed after the swap.
    """
    if final.exists():
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)
