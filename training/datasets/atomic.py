"""Crash-safe dataset commits: files are staged in full, a journal names them, then they are renamed into place."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

from fileio.atomic import fsync_dir, fsync_file, temp_owner, write_json_atomic
from fileio.locks import pid_alive

JOURNAL_NAME = ".commit-journal.json"
STAGING_DIR = ".staging"
# Staging areas carry their writer's pid, so a cleanup can tell a dead writer's leftovers from a live one's work.
_STAGING = re.compile(r"^(\d+)-[0-9a-f]{32}$")


def _alive(pid: int | None) -> bool:
    """False for leftovers of a dead writer, and for names without a pid (written by an older version)."""
    return pid is not None and pid_alive(pid)


class Commit:
    """One atomic change to a dataset directory.

    Writers put complete files under ``staging`` (same relative layout as the dataset); ``apply`` then
    writes a journal listing them and renames each into the dataset. A crash before the journal exists
    leaves the dataset untouched (the staging directory is garbage); a crash after it is rolled
    forward by ``recover`` because every staged file was complete before the journal was written.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.staging = self.root / STAGING_DIR / f"{os.getpid()}-{uuid.uuid4().hex}"
        self.staging.mkdir(parents=True)

    def path(self, relative: str) -> Path:
        p = self.staging / relative
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def apply(self, order: list[str]) -> None:
        """Rename staged files into the dataset; ``order`` lists relative paths, commit-marking files last."""
        staged = {str(p.relative_to(self.staging)) for p in self.staging.rglob("*") if p.is_file()}
        unknown = staged - set(order)
        if unknown:
            raise RuntimeError(f"staged files missing from the commit order: {sorted(unknown)}")
        for rel in order:
            fsync_file(self.staging / rel)
        write_json_atomic(
            self.root / JOURNAL_NAME,
            {"staging": str(self.staging.relative_to(self.root)), "files": order},
        )
        _roll_forward(self.root)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _roll_forward(root: Path) -> None:
    journal_path = root / JOURNAL_NAME
    journal = json.loads(journal_path.read_text())
    staging = root / journal["staging"]
    for rel in journal["files"]:
        src = staging / rel
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            continue  # already moved by an earlier (interrupted) roll-forward
        fsync_dir(dst.parent)
    journal_path.unlink(missing_ok=True)
    fsync_dir(root)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()  # only succeeds when no other staging area is left
    except OSError:
        pass


def has_pending_commit(root: Path) -> bool:
    return (Path(root) / JOURNAL_NAME).exists()


def recover(root: Path, clean_staging: bool = True) -> bool:
    """Finish a commit interrupted after its journal was written; optionally drop dead writers' leftovers.

    Readers pass ``clean_staging=False``. Writers call it holding the dataset's lock, and even then a staging
    folder or temp file is deleted only when the pid in its name is no longer alive: a live writer's work in
    progress is never touched. Returns True when something was rolled forward or cleaned.
    """
    root = Path(root)
    changed = False
    if (root / JOURNAL_NAME).exists():
        _roll_forward(root)
        changed = True
    if not clean_staging:
        return changed
    staging_root = root / STAGING_DIR
    if staging_root.is_dir():
        for area in staging_root.iterdir():
            match = _STAGING.match(area.name)
            if not _alive(int(match.group(1)) if match else None):
                shutil.rmtree(area, ignore_errors=True)
                changed = True
        try:
            staging_root.rmdir()
        except OSError:
            pass  # a live writer's area is still inside
    for tmp in root.glob("**/.*.tmp"):
        if not _alive(temp_owner(tmp.name)):
            tmp.unlink(missing_ok=True)
            changed = True
    return changed
