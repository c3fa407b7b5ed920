"""One writer per output folder: a lock file beside it (`.OUT.idia-lock.json` in OUT's parent folder) names the
process that holds the folder (host, pid, start time). Beside, not inside: stages whose folder appears whole only
at their end (train, world) must not create it early.

A stage takes its folder's lock when it checks the folder (`StageFolder.check`) and gives it back when it finishes
(`StageFolder.mark_done` of the whole stage, or `release`), or when its process exits. A second process on the same
folder stops with a message naming the holder. A lock left by a process that is gone (same host, its pid no longer
running, or running but started at another time: a reused pid) is taken over with a warning. A lock held by the
same process is re-entered (a stage rerun in one Python session). A lock from another host cannot be checked: the
message says so and how to clear it.

Locally the lock file is created with O_EXCL (two processes racing for it: exactly one wins). On an object store
there is no exclusive create: the lock is written after a check, so two runs started within the same second may
both pass; it still stops the common mistake (a second run started on a folder in use).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
from pathlib import Path

from idia.core import storage
from idia.core.errors import UserError
from schemas import files

_HELD: dict[str, Path] = {}


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, ticks: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_ticks(pid)
    return ticks is None or now is None or now == ticks


def me() -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start_ticks": _start_ticks(pid),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv)[:300],
    }


def _mine(holder: dict) -> bool:
    ours = me()
    return holder.get("host") == ours["host"] and holder.get("pid") == ours["pid"]


def lock_path(folder) -> Path:
    """The lock file of `folder`: in its parent, named after it."""
    folder = storage.location(storage.absolute(folder))
    return folder.parent / f".{folder.name}{files.LOCK_SUFFIX}"


def acquire(folder) -> None:
    """Take `folder`'s lock (see the module docstring); UserError when another live process holds it."""
    path = lock_path(folder)
    folder = storage.location(folder)
    key = str(path)
    if key in _HELD:
        return
    storage.makedirs(path.parent)
    text = json.dumps(me(), indent=2, sort_keys=True) + "\n"
    for _ in range(3):
        if not storage.remote(folder):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                _HELD[key] = path
                return
        elif not path.exists():
            path.write_text(text)
            _HELD[key] = path
            return
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            holder = {}
        if _mine(holder):
            _HELD[key] = path
            return
        same_host = holder.get("host") == socket.gethostname()
        if holder and not same_host:
            raise UserError(
                f"{folder}: in use by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
                f"({holder.get('command', '?')}); this host cannot see whether that run is alive: wait for it, or, "
                f"if it is gone, delete {path}"
            )
        if holder and _alive(int(holder.get("pid", -1)), holder.get("start_ticks")):
            raise UserError(
                f"{folder}: in use by pid {holder['pid']} on this host since {holder.get('started')} "
                f"({holder.get('command', '?')}); one run per output folder: wait for it, stop it, or choose "
                "another output folder"
            )
        what = f"pid {holder.get('pid')} is gone" if holder else "the lock file is unreadable"
        print(f"warning: {folder}: taking over a stale lock ({what})", file=sys.stderr, flush=True)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    raise UserError(f"{folder}: could not take the folder's lock {path} (another run keeps taking it)")


def _drop(key: str) -> None:
    """Delete a held lock file (if it still names this process) and forget it."""
    path = _HELD.pop(key, None)
    if path is None:
        return
    try:
        if _mine(json.loads(path.read_text())):
            path.unlink()
    except (OSError, ValueError):
        pass


def release(folder) -> None:
    """Give `folder`'s lock back if this process holds it."""
    _drop(str(lock_path(folder)))


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        _drop(key)
