"""Checkpoint directories: atomic save, latest pointer, pruning, validation of metadata and file hashes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from training.checkpoints import (
    CHECKPOINTS_DIR,
    LATEST_FILE,
    META_FILE,
    latest_checkpoint,
    lock_run_dir,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from fileio.locks import LockHeldError


def write_weights(payload: bytes):
    def write(tmp):
        (tmp / "weights.bin").write_bytes(payload)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "state.json").write_text(json.dumps({"n": len(payload)}))

    return write


def save(run_dir, step, payload=b"abc", **kwargs):
    kwargs.setdefault("kind", "imitation")
    kwargs.setdefault("type", "mlp")
    kwargs.setdefault("config", {"lr": 0.1, "nested": {"xs": (1, 2)}})
    return save_checkpoint(run_dir, step=step, write_files=write_weights(payload), **kwargs)


def test_save_then_read_round_trips_metadata_config_and_files(tmp_path):
    path = save(tmp_path, 10, extra={"note": "hi"})
    assert path == tmp_path / CHECKPOINTS_DIR / "step_000000000010"
    ckpt = read_checkpoint(path)
    assert (ckpt.kind, ckpt.type, ckpt.step) == ("imitation", "mlp", 10)
    assert ckpt.config == {"lr": 0.1, "nested": {"xs": [1, 2]}}
    assert ckpt.extra == {"note": "hi"}
    assert set(ckpt.meta["files"]) == {"weights.bin", "sub/state.json", "config.yaml"}
    assert ckpt.file("weights.bin").read_bytes() == b"abc"
    assert "torch" in ckpt.meta["versions"] and "python" in ckpt.meta["versions"]
    with pytest.raises(FileNotFoundError, match="no file 'nope'"):
        ckpt.file("nope")


def test_latest_pointer_follows_newest_save_and_run_dir_resolves_to_it(tmp_path):
    save(tmp_path, 5)
    second = save(tmp_path, 7)
    assert (tmp_path / CHECKPOINTS_DIR / LATEST_FILE).read_text().strip() == second.name
    assert latest_checkpoint(tmp_path) == second
    assert resolve_checkpoint(tmp_path) == second
    assert resolve_checkpoint(tmp_path / CHECKPOINTS_DIR) == second
    assert read_checkpoint(tmp_path).step == 7


def test_keep_last_prunes_older_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        save(tmp_path, step, keep_last=2)
    names = sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir() if p.is_dir())
    assert names == ["step_000000000003", "step_000000000004"]


def test_failed_write_leaves_previous_checkpoint_and_no_partial_dir(tmp_path):
    good = save(tmp_path, 1)

    def crash(tmp):
        (tmp / "weights.bin").write_bytes(b"half")
        raise RuntimeError("killed mid-save")

    with pytest.raises(RuntimeError, match="killed mid-save"):
        save_checkpoint(tmp_path, step=2, kind="rl", type="ppo", config={}, write_files=crash)
    entries = sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir())
    assert entries == [LATEST_FILE, good.name]
    assert latest_checkpoint(tmp_path) == good


def test_leftover_temp_dir_from_a_killed_save_is_ignored_then_cleaned(tmp_path):
    good = save(tmp_path, 1)
    leftover = tmp_path / CHECKPOINTS_DIR / ".tmp-step_000000000002-deadbeef"
    leftover.mkdir()
    (leftover / "weights.bin").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == good
    save(tmp_path, 3)
    assert not leftover.exists()


def test_resaving_the_same_step_replaces_it(tmp_path):
    save(tmp_path, 4, payload=b"old")
    path = save(tmp_path, 4, payload=b"new")
    assert read_checkpoint(path).file("weights.bin").read_bytes() == b"new"
    assert not [p for p in (tmp_path / CHECKPOINTS_DIR).iterdir() if p.name.startswith(".")]


def test_pointer_to_missing_dir_falls_back_to_newest_complete_checkpoint(tmp_path):
    first = save(tmp_path, 1)
    (tmp_path / CHECKPOINTS_DIR / LATEST_FILE).write_text("step_000000000009\n")
    assert latest_checkpoint(tmp_path) == first


def test_tampered_or_missing_file_is_refused(tmp_path):
    path = save(tmp_path, 1)
    (path / "weights.bin").write_bytes(b"abd")
    with pytest.raises(ValueError, match="'weights.bin' does not match its sha256"):
        read_checkpoint(path)
    os.unlink(path / "weights.bin")
    with pytest.raises(FileNotFoundError, match="missing 'weights.bin'"):
        read_checkpoint(path)


def test_wrong_kind_version_or_corrupt_metadata_is_refused(tmp_path):
    path = save(tmp_path, 1)
    with pytest.raises(ValueError, match="is a 'imitation' checkpoint, expected a 'rl' checkpoint"):
        read_checkpoint(path, kind="rl")
    meta = json.loads((path / META_FILE).read_text())
    (path / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="unsupported checkpoint format_version 99"):
        read_checkpoint(path)
    (path / META_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_checkpoint(path)


def test_missing_or_empty_paths_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        resolve_checkpoint(tmp_path / "file.txt")


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="non-empty kind and type"):
        save_checkpoint(tmp_path, step=1, kind="", type="x", config={}, write_files=lambda p: None)
    with pytest.raises(ValueError, match="step must be >= 0"):
        save_checkpoint(tmp_path, step=-1, kind="rl", type="x", config={}, write_files=lambda p: None)


def test_edited_metadata_fails_its_own_digest(tmp_path):
    path = save(tmp_path, 1)
    meta = json.loads((path / META_FILE).read_text())
    (path / META_FILE).write_text(json.dumps({**meta, "step": 2}))  # consistent with nothing else: a bit flip
    with pytest.raises(ValueError, match=r"checkpoint\.json does not match its own digest"):
        read_checkpoint(path)
    (path / META_FILE).write_bytes(b'{"format_version": 1, "kind": "\xff"}')
    with pytest.raises(ValueError, match=r"checkpoint\.json is not valid JSON"):
        read_checkpoint(path)


def test_unreadable_config_names_the_file(tmp_path):
    path = save(tmp_path, 1)
    (path / "config.yaml").write_text("lr: [0.1\n")
    with pytest.raises(ValueError, match=r"config\.yaml is not valid YAML"):
        read_checkpoint(path, verify_files=False)


def test_only_dead_writers_temp_dirs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / CHECKPOINTS_DIR
    root.mkdir()
    live_tmp = root / f".tmp-step_000000000009-{os.getpid()}-0123abcd"
    dead_tmp = root / f".tmp-step_000000000009-{dead.pid}-0123abcd"
    old_style = root / ".tmp-step_000000000009-0123abcd"
    for d in (live_tmp, dead_tmp, old_style):
        (d / "x").mkdir(parents=True)
    save(tmp_path, 10)
    assert live_tmp.exists() and not dead_tmp.exists() and not old_style.exists()


def test_run_dir_lock_names_the_holder_and_dies_with_it(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from training.checkpoints import lock_run_dir; "
         f"held = lock_run_dir({str(tmp_path / 'run')!r}); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(LockHeldError, match=rf"run directory .*run is locked by pid {holder.pid}") as err:
            lock_run_dir(tmp_path / "run")
        assert err.value.pid == holder.pid
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        lock_run_dir(tmp_path / "run").release()  # the kernel dropped the dead holder's lock
    finally:
        holder.kill()
        holder.wait()
