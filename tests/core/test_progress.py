"""Progress in a cluster's log file: periodic lines with done/total, rate and ETA; a bar only on a terminal."""

from __future__ import annotations

import io

from idia.core.progress import LogProgress, progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_without_a_terminal():
    out = io.StringIO()
    p = progress(10, "mine: scan", "task", stream=out, every_s=0.0)
    assert isinstance(p, LogProgress)
    with p:
        p.update(4)
        p.update(6)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("mine: scan: 4/10 tasks (40%)") and "ETA" in lines[0]
    assert lines[-1].startswith("mine: scan: 10/10 tasks (100%)") and lines[-1].endswith("- done")
    assert all("\r" not in line for line in lines)


def test_quiet_between_intervals_and_a_bar_on_a_terminal():
    out = io.StringIO()
    p = LogProgress(100, "attack groups", "task", every_s=3600, stream=out)
    for _ in range(50):
        p.update(1)
    assert out.getvalue() == ""  # nothing until the interval passes...
    p.close()
    assert out.getvalue().startswith("attack groups: 50/100 tasks (50%)") and "done" not in out.getvalue()
    assert not isinstance(progress(3, "x", stream=FakeTTY()), LogProgress)
