"""Checkpoint directories shared by every trainer: atomic writes, a `latest` pointer, metadata, validated reads.

Layout of a run directory (the trainer owns everything else in it):

    <run_dir>/checkpoints/
        step_000000012000/          one checkpoint, written as a temp dir in the same parent then os.replace'd
            checkpoint.json         metadata (schema below), written last inside the temp dir
            config.yaml             the resolved training config
            ...                     the trainer's own files (weights, normalization, trainer state)
        latest                      text file naming the newest complete checkpoint dir, replaced atomically

checkpoint.json (format_version 1):
    {"format_version": 1, "kind": "rl" | "imitation" | ..., "type": "<algorithm or policy type>",
     "step": int, "created_unix": float, "versions": {package: version},
     "files": {relative path: sha256 hex}, "extra": {...trainer-specific metadata...}}

Every file listed in "files" is hashed when reading, so a truncated or tampered checkpoint is refused with a message
naming the file; checkpoint.json itself carries "meta_sha256", the sha256 of its other fields (canonical JSON), so a
flipped byte in it is refused too (checkpoints written before that field existed are read without it).
Nothing here unpickles anything: metadata is JSON and the config is YAML.

A trainer holds `lock_run_dir(run_dir)` while it writes a run directory, so a second training into the same
directory stops at once naming the first one's pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from fileio.atomic import fsync_tree, publish_directory, write_text_atomic
from fileio.digest import json_sha256, sha256_file
from fileio.locks import DirectoryLock, pid_alive

FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
CONFIG_FILE = "config.yaml"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TEMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
# Temp and trash dirs carry their writer's pid: only a dead writer's are garbage.
_LEFTOVER = re.compile(r"^\.(?:tmp|trash)-step_\d+-(\d+)-[0-9a-f]{8}$")
SELF_DIGEST = "meta_sha256"


def lock_run_dir(run_dir: str | os.PathLike) -> DirectoryLock:
    """Take the exclusive lock of a run directory (created if needed); LockHeldError naming the holder's pid if another
    live process has it. Release it with .release() (or use it as a context manager)."""
    return DirectoryLock(run_dir, "run directory").acquire()


def _meta_digest(meta: Mapping[str, Any]) -> str:
    return json_sha256({k: v for k, v in meta.items() if k != SELF_DIGEST})


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint directory."""

    path: Path
    kind: str
    type: str
    step: int
    config: dict[str, Any]
    meta: dict[str, Any]

    def file(self, name: str) -> Path:
        """Path of a file the checkpoint lists; FileNotFoundError naming the checkpoint when it does not list it."""
        if name not in self.meta["files"]:
            raise FileNotFoundError(
                f"checkpoint {self.path} has no file {name!r}; it holds {sorted(self.meta['files'])}"
            )
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.meta["files"]

    @property
    def extra(self) -> dict[str, Any]:
        return self.meta.get("extra", {})


def package_versions() -> dict[str, str]:
    """Versions of the packages a checkpoint depends on (recorded for debugging, checked by nobody)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("cerebellum", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "mujoco", "numpy",
                 "safetensors", "diffusers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def step_dir_name(step: int) -> str:
    return f"step_{int(step):012d}"


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    step: int,
    kind: str,
    type: str,
    config: Mapping[str, Any],
    write_files: Callable[[Path], None],
    extra: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write one checkpoint atomically and point `latest` at it; returns its directory.

    `write_files(tmp_dir)` writes the trainer's files into a fresh temp dir; this function adds config.yaml and
    checkpoint.json (with the sha256 of every file), fsyncs, renames the dir into place and updates `latest`.
    A crash at any point leaves either the previous checkpoint or the new one, never half of one.
    `keep_last` prunes older step_* dirs (never the one `latest` names).
    """
    if not kind or not type:
        raise ValueError(f"save_checkpoint needs a non-empty kind and type, got kind={kind!r} type={type!r}")
    if int(step) < 0:
        raise ValueError(f"save_checkpoint: step must be >= 0, got {step}")
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root)
    tmp = root / f"{_TEMP_PREFIX}{step_dir_name(step)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write_files(tmp)
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(_plain(config), sort_keys=False))
        files = {
            str(p.relative_to(tmp)): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and p.name != META_FILE
        }
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "type": type,
            "step": int(step),
            "created_unix": time.time(),
            "versions": package_versions(),
            "files": files,
            "extra": _plain(dict(extra or {})),
        }
        meta[SELF_DIGEST] = _meta_digest(meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        fsync_tree(tmp)
        final = root / step_dir_name(step)
        # A crash mid-swap leaves `latest` naming a missing dir: latest_checkpoint() falls back to an older one.
        trash = root / f"{_TRASH_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        publish_directory(tmp, final, trash)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(root / LATEST_FILE, final.name + "\n")
    if keep_last is not None:
        prune_checkpoints(root, keep_last)
    return final


def _remove_leftovers(root: Path) -> None:
    """Temp and trash dirs of a dead writer are garbage from an interrupted save; a live writer's are its work."""
    for path in root.iterdir():
        if path.is_dir() and path.name.startswith((_TEMP_PREFIX, _TRASH_PREFIX)):
            match = _LEFTOVER.match(path.name)
            if match is None or not pid_alive(int(match.group(1))):  # no pid: written by an older version
                shutil.rmtree(path, ignore_errors=True)


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    out = []
    for path in root.iterdir() if root.is_dir() else ():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and (path / META_FILE).is_file():
            out.append((int(match.group(1)), path))
    return sorted(out)


def prune_checkpoints(checkpoints_dir: Path, keep_last: int) -> None:
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    latest = latest_checkpoint(checkpoints_dir.parent)
    for _, path in _step_dirs(checkpoints_dir)[:-keep_last]:
        if latest is None or path.resolve() != latest.resolve():
            shutil.rmtree(path, ignore_errors=True)


def checkpoint_to_resume(run_dir: str | os.PathLike) -> Path:
    """The latest checkpoint of a run directory for `resume=`, with a clear error when there is none."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume={str(run_dir)!r}: no such run directory")
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise FileNotFoundError(f"resume={str(run_dir)!r}: the run has no complete checkpoint under checkpoints/ "
                                "(it stopped before its first checkpoint; start it again instead)")
    return latest


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint `latest` names in <run_dir>/checkpoints, else the newest complete step_* dir, else None."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    pointer = root / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text().strip()
        candidate = root / name
        if _STEP_DIR.match(name) and (candidate / META_FILE).is_file():
            return candidate
    dirs = _step_dirs(root)
    return dirs[-1][1] if dirs else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Accept a checkpoint dir, a run dir or its checkpoints/ dir; return the checkpoint dir or raise clearly."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {str(path)!r} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"checkpoint path {str(path)!r} is a file; a checkpoint is a directory")
    if (path / META_FILE).is_file():
        return path
    for run_dir in (path, path.parent if path.name == CHECKPOINTS_DIR else None):
        if run_dir is not None:
            found = latest_checkpoint(run_dir)
            if found is not None:
                return found
    raise FileNotFoundError(
        f"{str(path)!r} is neither a checkpoint (no {META_FILE}) nor a run directory with a complete checkpoint "
        f"under {CHECKPOINTS_DIR}/"
    )


def read_checkpoint(path: str | os.PathLike, *, kind: str | None = None, verify_files: bool = True) -> Checkpoint:
    """Read and validate a checkpoint (metadata, config, hashes of every file). Accepts what resolve_checkpoint does."""
    ckpt_dir = resolve_checkpoint(path)
    meta_path = ckpt_dir / META_FILE
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path} is not valid JSON ({err}); the checkpoint is corrupted") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path} must hold a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: unsupported checkpoint format_version {version!r}; this code reads version {FORMAT_VERSION}"
        )
    if SELF_DIGEST in meta and meta[SELF_DIGEST] != _meta_digest(meta):
        raise ValueError(f"{meta_path} does not match its own digest ({SELF_DIGEST}); the checkpoint metadata is "
                         "corrupted or was modified")
    for key, expected in (("kind", str), ("type", str), ("step", int), ("files", dict)):
        if not isinstance(meta.get(key), expected):
            raise ValueError(f"{meta_path}: field {key!r} must be a {expected.__name__}, got {meta.get(key)!r}")
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{ckpt_dir} is a {meta['kind']!r} checkpoint, expected a {kind!r} checkpoint")
    if verify_files:
        for name, digest in meta["files"].items():
            file = ckpt_dir / name
            if not file.is_file():
                raise FileNotFoundError(f"checkpoint {ckpt_dir} is missing {name!r}, which {META_FILE} lists")
            if sha256_file(file) != digest:
                raise ValueError(f"checkpoint {ckpt_dir}: {name!r} does not match its sha256 in {META_FILE} "
                                 "(file corrupted or modified)")
    config_path = ckpt_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_dir} has no {CONFIG_FILE}")
    try:
        config = yaml.safe_load(config_path.read_bytes().decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid YAML ({' '.join(str(err).split())}); the checkpoint is "
                         "corrupted") from err
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} must hold a mapping, got {type(config).__name__}")
    return Checkpoint(path=ckpt_dir, kind=meta["kind"], type=meta["type"], step=meta["step"], config=config, meta=meta)


def _plain(value: Any) -> Any:
    """Config objects (dataclasses, DictConfig, tuples) -> plain YAML/JSON types."""
    import dataclasses

    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
