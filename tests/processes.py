"""Child processes in tests: wait until they have done something, kill them -9, and never leave one running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator


def _stderr_tail(proc: subprocess.Popen) -> str:
    if proc.stderr is None:
        return ""
    text = proc.stderr.read()
    return (text.decode("utf-8", "replace") if isinstance(text, bytes) else text)[-3000:]


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if the child exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the child exited ({proc.returncode}) before {what}: {_stderr_tail(proc)}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def kill_9(proc: subprocess.Popen, timeout: float = 30) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout)


@contextlib.contextmanager
def reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The child, killed and waited for on the way out if still running, so a failing test leaves none behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
