"""Killing a run midway, as the fault tests do: its whole process group, by PID, once it has done some work."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable


def kill_group_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, poll: float = 0.05) -> None:
    """SIGKILL `proc`'s process group (it was started with start_new_session=True) as soon as `ready()` holds;
    fails the test if the run ends, or `timeout` passes, first."""
    try:
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(poll)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and Python workers: all in the group started there
        proc.wait()
