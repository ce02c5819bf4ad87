"""Staging folders beside a bundle: one exporter per output at a time (a lock), temp names that carry the writer's
pid, and the cleanup of what a killed export left behind, never touching a live writer's folder.

Beside `bundles/act` an export uses
    .act.lock                 flock'ed while the export writes (removed at release); holds the writer's pid
    .act.tmp-<pid>-<hex>      the bundle being written
    .act.old-<pid>-<hex>      the previous bundle, moved aside for the instant of the swap
A kill leaves the last two behind (and a stale .act.lock, which blocks nobody: the flock died with its holder). The next export of the same output removes the temp folders of dead writers and,
if the kill came between the two renames of the swap (no bundle at `output`), puts the previous bundle back first.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

from fileio.locks import DirectoryLock, LockHeldError, pid_alive


class OutputExistsError(FileExistsError, ValueError):
    """The bundle output cannot be written: it exists (and overwrite is off, or it is not a bundle) or another export
    holds it. Both a FileExistsError and a ValueError (the library's error for a bad input)."""


# Written before pids were part of the name: removed only when nobody has touched them for this long.
LEGACY_STALE_S = 3600.0


def tmp_name(output: Path, kind: str) -> Path:
    return output.parent / f".{output.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class OutputLock(DirectoryLock):
    """Exclusive lock on one bundle output, `.NAME.lock` beside it (the output folder itself is swapped by rename);
    a second exporter fails at once, naming the holder's pid."""

    def __init__(self, output: Path):
        super().__init__(output, what="bundle output", lock_file=output.parent / f".{output.name}.lock")
        self.output = output

    def acquire(self) -> "OutputLock":
        try:
            return super().acquire()
        except LockHeldError as e:
            raise OutputExistsError(f"another export is writing {self.output} (pid {e.pid}, lock {self.path}); "
                                    "wait for it or choose another output") from None


_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?:(?P<pid>\d+)-)?(?P<tag>[0-9a-f]{8})$")


def leftovers(output: Path) -> list[tuple[Path, str, int | None]]:
    """(path, "tmp" | "old", writer pid or None for the pid-less legacy names) of the staging folders of `output`."""
    found = []
    if not output.parent.is_dir():
        return found
    for path in output.parent.iterdir():
        m = _NAME.match(path.name)
        if m is None or m["name"] != output.name or not path.is_dir() or path.is_symlink():
            continue
        found.append((path, m["kind"], int(m["pid"]) if m["pid"] else None))
    return found


def _abandoned(path: Path, pid: int | None) -> bool:
    if pid is not None:
        return pid != os.getpid() and not pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > LEGACY_STALE_S
    except FileNotFoundError:
        return False


def clean_leftovers(output: Path) -> list[Path]:
    """Remove the staging folders of `output` whose writer is dead; call with the output's lock held. When `output`
    is missing because a writer died mid-swap, its previous bundle (the newest abandoned .old folder) is restored.
    Returns what was removed."""
    removed = []
    abandoned = [(p, kind) for p, kind, pid in leftovers(output) if _abandoned(p, pid)]
    olds = sorted((p for p, kind in abandoned if kind == "old"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not output.exists() and olds:
        os.replace(olds.pop(0), output)
    for path, _ in abandoned:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
