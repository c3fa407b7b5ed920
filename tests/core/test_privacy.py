"""Outputs hold personal data: what the `idia` command writes is private to its user unless IDIA_UMASK says
otherwise (run as a real subprocess: the umask is the process's)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _sample(out: Path, umask: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "IDIA_UMASK"}
    if umask is not None:
        env["IDIA_UMASK"] = umask
    cmd = [sys.executable, "-m", "pipelines.cli", "sample-laion", "--out", str(out), "--shards", "2"]
    cmd += ["--rows-per-shard", "200", "--names", "8"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)


def _modes(root: Path) -> tuple[set[int], set[int]]:
    files, dirs = set(), {stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        (dirs if p.is_dir() else files).add(stat.S_IMODE(p.stat().st_mode))
    return files, dirs


def test_outputs_are_private_by_default_and_the_umask_is_configurable(tmp_path):
    r = _sample(tmp_path / "private", None)
    assert r.returncode == 0, r.stderr[-2000:]
    files, dirs = _modes(tmp_path / "private")
    assert files == {0o600} and dirs == {0o700}, (oct(min(files)), oct(min(dirs)))
    r = _sample(tmp_path / "group", "027")
    assert r.returncode == 0, r.stderr[-2000:]
    files, dirs = _modes(tmp_path / "group")
    assert files == {0o640} and dirs == {0o750}
    r = _sample(tmp_path / "bad", "rw-r")
    assert r.returncode != 0 and "IDIA_UMASK='rw-r': expected an octal umask" in r.stderr
