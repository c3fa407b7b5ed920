"""Personal data at rest: what the project writes is private to its user by default.

Outputs hold names and faces. `apply_umask()` (called once by the `idia` command, before any stage starts an
engine, so Spark's local executors, img2dataset's download processes and Dask's local workers inherit it) sets the
process umask to 077: folders are created 0700 and files 0600. `IDIA_UMASK` (octal, e.g. 027 for a group that
shares the runs) changes it. Atomic writes (idia.core.atomic) give their files the same mode, since the temporary
files they rename into place are created 0600 whatever the umask.
"""

from __future__ import annotations

import os

DEFAULT_UMASK = 0o077
_CURRENT: int | None = None


def apply_umask() -> int:
    """Set this process's umask from IDIA_UMASK (default 077); returns it."""
    global _CURRENT
    raw = os.environ.get("IDIA_UMASK", "").strip()
    try:
        value = int(raw, 8) if raw else DEFAULT_UMASK
    except ValueError:
        from idia.core.errors import ConfigError

        raise ConfigError(f"IDIA_UMASK={raw!r}: expected an octal umask such as 077 or 027") from None
    if not 0 <= value <= 0o777:
        from idia.core.errors import ConfigError

        raise ConfigError(f"IDIA_UMASK={raw!r}: expected an octal umask between 000 and 777")
    os.umask(value)
    _CURRENT = value
    return value


def current_umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    if _CURRENT is not None:
        return _CURRENT
    old = os.umask(0o077)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a new file gets under the current umask (0600 under 077)."""
    return 0o666 & ~current_umask()
