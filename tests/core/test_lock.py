"""One writer per output folder: a second process is refused naming the holder; a dead holder's lock is taken over;
the same process re-enters; a finished stage gives the lock back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from idia.core import lock
from idia.core.errors import UserError
from idia.core.resume import StageFolder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _try_in_another_process(folder) -> subprocess.CompletedProcess:
    code = "import sys; from idia.core import lock; lock.acquire(sys.argv[1])"
    return subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True, text=True)


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "out"
    st = StageFolder(folder, "mine", {"a": 1})
    st.check()  # takes the lock
    assert not folder.exists()  # the lock lives beside the folder: nothing is created inside it early
    held = json.loads((tmp_path / ".out.idia-lock.json").read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    st.check()  # the same process: re-entered
    r = _try_in_another_process(folder)
    assert r.returncode != 0 and f"in use by pid {os.getpid()} on this host" in r.stderr
    st.mark_done()  # the finished stage gives it back
    assert not (tmp_path / ".out.idia-lock.json").exists()
    assert _try_in_another_process(folder).returncode == 0  # free again (that process exited: its lock went too)
    assert not (tmp_path / ".out.idia-lock.json").exists()


def test_a_dead_holders_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = {"host": socket.gethostname(), "pid": gone.pid, "start_ticks": "1", "started": "then", "command": "x"}
    (tmp_path / ".out.idia-lock.json").write_text(json.dumps(stale))
    lock.acquire(folder)
    assert f"taking over a stale lock (pid {gone.pid} is gone)" in capsys.readouterr().err
    assert json.loads((tmp_path / ".out.idia-lock.json").read_text())["pid"] == os.getpid()
    lock.release(folder)
    assert not (tmp_path / ".out.idia-lock.json").exists()


def test_another_hosts_lock_says_how_to_clear_it(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / ".out.idia-lock.json").write_text(json.dumps({"host": "node-17", "pid": 4242, "started": "then"}))
    with pytest.raises(UserError, match=r"in use by pid 4242 on node-17 .* delete .*\.out\.idia-lock\.json"):
        lock.acquire(folder)


def test_a_mining_run_on_a_folder_in_use_stops_before_any_work(tmp_path):
    from idia.mine.sample import SampleConfig, generate

    generate(SampleConfig(out=str(tmp_path / "s"), shards=1, rows_per_shard=200, names=5, seed=1))
    out = tmp_path / "out"
    lock.acquire(out)
    try:
        args = ["mine", "--shards", str(tmp_path / "s" / "shards"), "--names", str(tmp_path / "s" / "names.csv")]
        r = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args, "--out", str(out)], cwd=ROOT, capture_output=True, text=True
        )
    finally:
        lock.release(out)
    assert r.returncode == 2 and "one run per output folder" in r.stderr
    assert not (out / "counts.parquet").exists()


@pytest.mark.slow
def test_a_second_mine_on_the_same_out_while_the_first_runs_stops_at_once_naming_it(tmp_path):
    """Two real `idia mine` processes on one --out: the second stops within seconds, naming the first's pid; the
    first finishes undisturbed."""
    import time

    from idia.mine.sample import SampleConfig, generate

    generate(SampleConfig(out=str(tmp_path / "s"), shards=4, rows_per_shard=100_000, names=30, seed=2))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "pipelines.cli", "mine", "--shards", str(tmp_path / "s" / "shards")]
    args += ["--names", str(tmp_path / "s" / "names.csv"), "--out", str(out), "--master", "local[1]"]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock_file = out.parent / ".out.idia-lock.json"
    deadline = time.time() + 120
    while not lock_file.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert lock_file.exists(), "the first run never took its lock"
    t0 = time.time()
    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    took = time.time() - t0
    assert second.returncode == 2 and f"in use by pid {first.pid}" in second.stderr, second.stderr[-2000:]
    assert first.poll() is None, "the first run ended before the second was refused: make its input larger"
    assert took < 30
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert (out / "counts.parquet").is_file() and not lock_file.exists()
