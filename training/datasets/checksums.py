"""sha256 of every file of a dataset, recorded in meta/checksums.json by the writer and verified by the reader.

meta/checksums.json (a sidecar LeRobot's loader ignores):
    {"format": "cerebellum.checksums/1", "algorithm": "sha256",
     "files": {relative path: {"sha256": hex, "size": bytes}, ...},
     "files_sha256": sha256 of the canonical JSON of "files"}
"files_sha256" protects the manifest itself: a flipped byte in it is reported as a corrupt manifest, not as a
mismatch of some innocent data file. Verification hashes a file at most once per process while its
(size, mtime, inode) stay the same.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from fileio.digest import json_sha256, sha256_file

from .format import CorruptFileError

CHECKSUMS_PATH = "meta/checksums.json"
FORMAT = "cerebellum.checksums/1"

log = logging.getLogger(__name__)


class ChecksumMismatchError(CorruptFileError):
    """A dataset file's bytes differ from the sha256 (or size) recorded when it was written."""


def _files_digest(files: Mapping[str, Mapping[str, object]]) -> str:
    return json_sha256(files)


def entry(path: Path) -> dict[str, object]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def manifest(files: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    ordered = {k: dict(files[k]) for k in sorted(files)}
    return {"format": FORMAT, "algorithm": "sha256", "files": ordered, "files_sha256": _files_digest(ordered)}


def is_covered(relative: str) -> bool:
    """Whether a dataset-relative path belongs in the manifest (everything but the manifest and our scratch files)."""
    parts = relative.split("/")
    return relative != CHECKSUMS_PATH and not any(p.startswith(".") for p in parts)


def dataset_files(root: Path) -> list[str]:
    """Relative paths of every file a manifest of ``root`` should cover."""
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and is_covered(rel):
            out.append(rel)
    return sorted(out)


def compute(root: Path, relatives: Iterable[str]) -> dict[str, dict[str, object]]:
    return {rel: entry(root / rel) for rel in relatives}


def read_manifest(root: Path) -> dict[str, dict[str, object]] | None:
    """The recorded files of a dataset, or None when it carries no checksums (e.g. written by LeRobot)."""
    path = root / CHECKSUMS_PATH
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"checksum manifest {path} is not valid JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("algorithm") != "sha256":
        head = {k: data.get(k) for k in ("format", "algorithm")} if isinstance(data, dict) else type(data).__name__
        raise CorruptFileError(f"checksum manifest {path}: expected format {FORMAT!r} with algorithm 'sha256', "
                               f"got {head}")
    files = data.get("files")
    valid = isinstance(files, dict) and all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and len(v["sha256"]) == 64
        and isinstance(v.get("size"), int) and v["size"] >= 0 for v in files.values())
    if not valid:
        raise CorruptFileError(f"checksum manifest {path}: 'files' must map paths to {{'sha256': 64 hex digits, "
                               "'size': bytes}}")
    if data.get("files_sha256") != _files_digest(files):
        raise CorruptFileError(f"checksum manifest {path} is corrupt: its own digest (files_sha256) does not match "
                               "its contents")
    return files


_verified: dict[tuple[str, int, int, int], str] = {}
_verified_lock = threading.Lock()


def clear_cache() -> None:
    """Forget which files this process has verified (tests; or after rewriting files in place within one tick)."""
    with _verified_lock:
        _verified.clear()


def verify_file(root: Path, relative: str, expected: Mapping[str, object] | None) -> None:
    """Raise ChecksumMismatchError (naming the file and both digests) unless the file matches ``expected``.

    ``expected`` None means the manifest does not list the file: that is a mismatch too, since the writer lists
    every file it publishes.
    """
    path = root / relative
    if expected is None:
        raise ChecksumMismatchError(f"{path}: this file is not listed in {root / CHECKSUMS_PATH}, which lists every "
                                    "file the writer published (foreign or stray file)")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file missing: {path} (listed in {root / CHECKSUMS_PATH})") from None
    if st.st_size != expected["size"]:
        raise ChecksumMismatchError(f"{path}: size {st.st_size} bytes, but {root / CHECKSUMS_PATH} records "
                                    f"{expected['size']} bytes (truncated or overwritten)")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _verified_lock:
        actual = _verified.get(key)
    if actual is None:
        actual = sha256_file(path)
    if actual != expected["sha256"]:
        raise ChecksumMismatchError(f"{path}: sha256 {actual}, but {root / CHECKSUMS_PATH} records "
                                    f"{expected['sha256']} (the file is corrupt or was modified)")
    with _verified_lock:
        _verified[key] = actual


_warned: set[str] = set()


def warn_unverified(root: Path) -> None:
    """Say once per dataset and process that it carries no checksums (LeRobot's own writer records none)."""
    key = str(Path(root).resolve())
    if key in _warned:
        return
    _warned.add(key)
    log.warning("dataset %s carries no checksums (%s missing, e.g. written by LeRobot): its files are read "
                "unverified", root, CHECKSUMS_PATH)


def has_manifest(root: str | os.PathLike) -> bool:
    return (Path(root) / CHECKSUMS_PATH).is_file()
