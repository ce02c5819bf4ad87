"""Directory locks: exclusive, named holder, gone with a dead holder, nothing left behind; writers take them."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dataset_test_utils import STATE_FEATURES, make_episode

from fileio.locks import LOCK_NAME, DirectoryLock, is_locked, owner_pid, pid_alive
from training.datasets import DatasetWriter, LockHeldError

REPO = Path(__file__).resolve().parents[3]


def test_second_lock_in_one_process_names_this_process(tmp_path):
    with DirectoryLock(tmp_path / "d", "dataset") as lock:
        assert lock.held and is_locked(tmp_path / "d") and owner_pid(tmp_path / "d") == os.getpid()
        with pytest.raises(LockHeldError, match=rf"directory .*d is locked by pid {os.getpid()} \(this very process"):
            DirectoryLock(tmp_path / "d").acquire()
    assert not is_locked(tmp_path / "d")


def test_release_removes_the_lock_file_and_a_directory_it_created_empty(tmp_path):
    with DirectoryLock(tmp_path / "fresh"):
        assert (tmp_path / "fresh" / LOCK_NAME).is_file()
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "kept").mkdir()
    with DirectoryLock(tmp_path / "kept"):
        pass
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / LOCK_NAME).exists()
    with DirectoryLock(tmp_path / "used"):
        (tmp_path / "used" / "work.txt").write_text("x")
    assert (tmp_path / "used" / "work.txt").is_file() and not (tmp_path / "used" / LOCK_NAME).exists()


def test_a_killed_holders_stale_lock_file_does_not_block(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from fileio.locks import DirectoryLock; "
         f"held = DirectoryLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert is_locked(tmp_path) and pid_alive(holder.pid)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait()
    assert owner_pid(tmp_path) == holder.pid and not pid_alive(holder.pid)  # the file stayed, naming the dead pid
    assert not is_locked(tmp_path)
    with DirectoryLock(tmp_path):
        assert owner_pid(tmp_path) == os.getpid()


def test_writer_holds_the_dataset_lock_until_close_or_abort(tmp_path):
    rng = np.random.default_rng(0)
    writer = DatasetWriter.create(tmp_path / "ds", 10, STATE_FEATURES)
    assert is_locked(tmp_path / "ds")
    with pytest.raises(LockHeldError, match="this very process"):
        DatasetWriter.open(tmp_path / "ds")
    writer.add_episode(make_episode(rng, 3, video=False), "t")
    writer.close()
    assert not is_locked(tmp_path / "ds")
    with pytest.raises(ValueError, match="closed or aborted and no longer holds the dataset's lock"):
        writer.add_episode(make_episode(rng, 3, video=False), "t")
    appender = DatasetWriter.open(tmp_path / "ds")
    appender.add_episode(make_episode(rng, 2, video=False), "t")
    appender.abort()
    assert not is_locked(tmp_path / "ds")
    with DatasetWriter.open(tmp_path / "ds") as again:
        assert again.num_episodes == 1
