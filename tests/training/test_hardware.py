"""CPU thread choice for training: as requested, else one per core idle right now (measured, not the lagging load
average)."""

import os

import pytest

from training.imitation import hardware


def test_requested_threads_are_taken_as_given():
    assert hardware.choose_threads(3) == 3


def test_busy_cores_is_measured_now_within_the_machine(monkeypatch):
    busy = hardware.busy_cores(0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1)
    # A load average that still counts work finished a minute ago does not decide it.
    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count() or 1) * 4, 0.0, 0.0))
    assert hardware.busy_cores(0.05) <= (os.cpu_count() or 1)


def test_idle_cores_give_threads_and_a_busy_machine_one(monkeypatch):
    monkeypatch.setattr(hardware, "available_cores", lambda: 4)
    monkeypatch.setattr(hardware, "busy_cores", lambda interval_s=0.5: 0.2)
    assert hardware.choose_threads(None) == 4
    monkeypatch.setattr(hardware, "busy_cores", lambda interval_s=0.5: 3.9)
    assert hardware.choose_threads(None) == 1


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only: elsewhere the load average is used")
def test_without_proc_stat_the_load_average_is_used(monkeypatch):
    real_read = hardware.Path.read_text

    def no_proc(self, *args, **kwargs):
        if str(self) == "/proc/stat":
            raise OSError("no /proc")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(hardware.Path, "read_text", no_proc)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert hardware.busy_cores(0.01) == 1.5
