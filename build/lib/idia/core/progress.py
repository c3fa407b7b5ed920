"""Progress that survives a cluster's log files: a tqdm bar on a terminal, periodic log lines everywhere else.

YARN, Slurm and Kubernetes capture stdout/stderr into files, where a tqdm bar is either hidden (tqdm's
`disable=None` turns it off without a terminal) or a wall of carriage returns. Without a terminal, `progress`
prints one line every `every_s` seconds instead (units done of the total, rate, ETA) and one when it finishes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class LogProgress:
    """The tqdm calls the stages use (`update`, `n`, `close`, a context manager), as periodic log lines."""

    def __init__(self, total: int, desc: str, unit: str = "unit", every_s: float = 30.0, stream: TextIO | None = None):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.stream = stream or sys.stderr
        self.n = 0
        self.t0 = self.t_last = time.monotonic()
        self.closed = False

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.n / elapsed
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = f", ETA {_eta((self.total - self.n) / rate)}" if rate > 0 and self.total and self.n < self.total else ""
        return f"{self.desc}: {self.n}/{self.total} {self.unit}s{pct}, {rate:.2f} {self.unit}s/s, {_eta(elapsed)} elapsed{eta}"

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.t_last >= self.every_s:
            self.t_last = now
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(self.line() + " - done" * (self.n >= self.total), file=self.stream, flush=True)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "unit", enabled: bool = True, every_s: float = 30.0, stream=None):
    """A tqdm bar on a terminal; periodic log lines (LogProgress) when stderr is not one; nothing when not enabled."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    if not enabled:
        return tqdm(total=total, desc=desc, unit=unit, disable=True)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    return LogProgress(total, desc, unit, every_s, stream)
