"""Exclusive directory locks (fcntl.flock on <dir>/.lock, holding the owner's pid) for datasets and run directories."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class LockHeldError(ValueError):
    """Another live process (named by pid) is writing the directory; raised at once, never after waiting."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid

    def __reduce__(self):  # keeps the pid when the error crosses a process boundary (pickled)
        return type(self), (str(self), self.pid)


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine (a zombie counts as alive until reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _read_owner(fd: int) -> tuple[int | None, str]:
    # The holder writes its pid right after taking the lock; a contender arriving in between sees an empty file.
    for _ in range(50):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if text:
            first = text.split()
            try:
                return int(first[0]), " ".join(first[1:])
            except ValueError:
                return None, text
        time.sleep(0.01)
    return None, ""


class DirectoryLock:
    """An exclusive, non-blocking lock on one directory for as long as one writer works in it.

    The kernel drops a flock when its holder dies (kill -9 included), so a lock file left behind by a dead process
    never blocks the next writer; the pid inside is only there to name the holder in the error. ``what`` says what
    the directory is ("dataset", "run directory") in messages. The lock file exists while the lock is held; a
    directory the lock itself created and left empty is removed at release, so a run refused before any work
    leaves nothing behind.
    """

    def __init__(self, directory: str | os.PathLike, what: str = "directory", lock_file: str | os.PathLike | None = None):
        self.directory = Path(directory)
        self.what = what
        # A directory that is itself swapped by rename (an export's output) keeps its lock file beside it instead.
        self.path = Path(lock_file) if lock_file is not None else self.directory / LOCK_NAME
        self._fd: int | None = None
        self._created = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DirectoryLock:
        if self._fd is not None:
            return self
        created = False
        home = self.path.parent
        for _ in range(100):
            created = created or not home.exists()
            home.mkdir(parents=True, exist_ok=True)
            fd = self._try_lock()
            # A releasing holder may have removed the file (see release) between our open and our flock: then we
            # locked an orphan inode and must start over on the file that now bears the name.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise OSError(f"could not lock {self.path}: the lock file kept being replaced")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd, self._created = fd, created
        return self

    def _try_lock(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the directory vanished with a releasing holder: one more round
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            pid, where = _read_owner(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid is not None else "an unknown process"
            if pid == os.getpid():
                holder += " (this very process: another writer object on it is still open)"
            elif where and where != socket.gethostname():
                holder += f" on host {where}"
            raise LockHeldError(
                f"{self.what} {self.directory} is locked by {holder} that is writing it ({self.path}); "
                "wait for it to finish or use another directory", pid) from None
        return fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Unlinked while still held: a contender that opened the old file notices after its flock (see acquire).
        # Only a holder killed before release leaves the file behind, and a dead holder's flock is gone with it.
        self.path.unlink(missing_ok=True)
        if self._created:
            try:
                self.path.parent.rmdir()  # only when empty: nothing was written
            except OSError:
                pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def is_locked(directory: str | os.PathLike) -> bool:
    """Whether a live process holds the directory's lock right now (tested without taking it or creating anything)."""
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):  # no such directory (or a file in its place): nobody holds it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # closing drops the shared lock if we got it
    return False


def owner_pid(directory: str | os.PathLike) -> int | None:
    """The pid written in a directory's lock file, if any (it may be stale: only a held flock means anything)."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None
