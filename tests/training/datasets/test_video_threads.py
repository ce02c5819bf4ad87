"""Recording never leaves the process at real-time priority: run as root, SVT-AV1 starts its encoder threads (and
leaves the calling thread) at SCHED_FIFO 99, which would starve every other process, a control loop included."""

import os
import threading

import numpy as np
import pytest

from training.datasets.video import VideoConfig, VideoStreamWriter, encoder_available, realtime_threads

needs_rt = pytest.mark.skipif(
    not hasattr(os, "sched_setscheduler") or os.geteuid() != 0 or not encoder_available("libsvtav1"),
    reason="real-time policies need Linux, root (as SVT-AV1 acts only then) and the SVT-AV1 encoder",
)


@needs_rt
def test_the_writer_leaves_no_thread_at_real_time_priority(tmp_path):
    writer = VideoStreamWriter(tmp_path / "a.mp4", 30, 32, 32, VideoConfig(codec="libsvtav1"))
    writer.write(np.zeros((12, 32, 32, 3), np.uint8))
    assert realtime_threads() == set() and os.sched_getscheduler(0) == os.SCHED_OTHER
    writer.close()
    assert realtime_threads() == set()


@needs_rt
def test_a_thread_the_user_made_real_time_stays_so(tmp_path):
    ready, done, tid = threading.Event(), threading.Event(), []

    def control_loop():
        tid.append(threading.get_native_id())
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=control_loop)
    thread.start()
    try:
        ready.wait(10)
        writer = VideoStreamWriter(tmp_path / "a.mp4", 30, 32, 32, VideoConfig(codec="libsvtav1"))
        writer.write(np.zeros((12, 32, 32, 3), np.uint8))
        writer.close()
        assert realtime_threads() == {tid[0]}
    finally:
        done.set()
        thread.join()
