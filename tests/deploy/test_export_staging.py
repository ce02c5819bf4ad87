"""What a killed export leaves beside its bundle is cleaned by the next export of that output, never a live
writer's folder; a kill between the swap's two renames gets the previous bundle back; one exporter per output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.export import ExportConfig, export_checkpoint
from deploy.export.staging import LEGACY_STALE_S, OutputLock, clean_leftovers

from tests.deploy.export_factory import imitation_checkpoint

pytestmark = pytest.mark.slow  # exports killed in child processes

FAST = dict(optimize=False, parity_samples=1)
REPO = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def leftover(parent, name, kind, pid, tag="0123abcd", files=()):
    path = parent / (f".{name}.{kind}-{pid}-{tag}" if pid is not None else f".{name}.{kind}-{tag}")
    path.mkdir()
    for f in files:
        (path / f).write_text("partial")
    return path


def test_next_export_removes_dead_writers_folders_and_keeps_live_ones(tmp_path, live_pid):
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp")
    out = tmp_path / "bundles"
    out.mkdir()
    dead_tmp = leftover(out, "act", "tmp", dead_pid(), files=["policy.onnx"])
    dead_empty = leftover(out, "act", "tmp", dead_pid(), tag="89abcdef")
    live_tmp = leftover(out, "act", "tmp", live_pid)
    old_legacy = leftover(out, "act", "tmp", None)  # written before pids were in the names
    stale = time.time() - LEGACY_STALE_S - 60
    os.utime(old_legacy, (stale, stale))
    fresh_legacy = leftover(out, "act", "tmp", None, tag="fedcba98")
    other_bundle = leftover(out, "other", "tmp", dead_pid())  # another output's: not this export's business

    export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(out / "act"), **FAST))
    assert (out / "act" / "manifest.json").is_file()
    assert not dead_tmp.exists() and not dead_empty.exists() and not old_legacy.exists()
    assert live_tmp.exists() and fresh_legacy.exists() and other_bundle.exists()


def test_a_kill_mid_swap_gets_the_previous_bundle_back(tmp_path):
    out = tmp_path / "act"
    previous = leftover(tmp_path, "act", "old", dead_pid(), files=["manifest.json", "policy.onnx"])
    half_new = leftover(tmp_path, "act", "tmp", dead_pid(), tag="11112222", files=["policy.onnx"])
    with OutputLock(out):
        removed = clean_leftovers(out)
    assert (out / "manifest.json").read_text() == "partial" and (out / "policy.onnx").is_file()
    assert not previous.exists() and not half_new.exists() and removed == [half_new]
    # With the bundle in place, an abandoned .old folder is garbage from a kill after the swap.
    garbage = leftover(tmp_path, "act", "old", dead_pid(), tag="33334444", files=["manifest.json"])
    with OutputLock(out):
        assert clean_leftovers(out) == [garbage]
    assert (out / "manifest.json").is_file() and not garbage.exists()


def test_a_second_exporter_of_the_same_output_stops_at_once(tmp_path):
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp")
    with OutputLock(tmp_path / "act"):
        with pytest.raises(FileExistsError, match=rf"another export is writing .*act \(pid {os.getpid()}"):
            export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / "act"), **FAST))
    assert not (tmp_path / "act").exists()
    assert [p.name for p in tmp_path.iterdir() if ".act.tmp" in p.name] == []
    export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / "act"), **FAST))  # lock released
    assert (tmp_path / "act" / "manifest.json").is_file()


def test_a_killed_export_process_leaves_nothing_the_next_one_keeps(tmp_path):
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp")
    out = tmp_path / "act"
    # An export killed -9 while it writes its temp folder (inside fill: after the ONNX file, before the manifest).
    code = f"""
import os, signal
import deploy.export.exporter as exporter
from deploy.export import ExportConfig, export_checkpoint
def killed(directory, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
exporter.build_manifest = killed
export_checkpoint(ExportConfig(checkpoint={str(ckpt)!r}, output={str(out)!r}, optimize=False, parity_samples=1))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr[-2000:]
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".act.tmp-")]
    assert len(left) == 1 and (left[0] / "policy.onnx").is_file()  # what the issue saw
    export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(out), optimize=False, parity_samples=1))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".act.")] == []  # the lock file goes at release
