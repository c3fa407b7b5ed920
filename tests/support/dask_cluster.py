"""A real Dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))
ROOT = Path(__file__).resolve().parents[2]


#: `python -c` program: a Dask worker whose Python lacks the project (test-only: the editable install's finder is
#: dropped from sys.meta_path before `dask worker` runs, as on a node where idia was never installed).
HIDE_PROJECT = (
    "import runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(getattr(f, '__module__', ''))]; "
    "sys.argv[0] = 'dask-worker'; "
    "runpy.run_module('distributed.cli.dask_worker', run_name='__main__')"
)


class DaskTestCluster:
    """Scheduler + workers as subprocesses (workers without nanny, so a worker's PID is the worker itself)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = self.folder / "scheduler.json"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._logs: list = []

    def _spawn(self, args: list[str], name: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        self._logs.append(log)
        e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        e = {k: v for k, v in e.items() if v is not None}  # env {"X": None}: X unset for this process
        if cwd is not None:
            Path(cwd).mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=e, cwd=str(cwd or ROOT))

    def start_scheduler(self) -> str:
        self.scheduler = self._spawn(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            "scheduler",
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.scheduler_file.exists():
                try:
                    return json.loads(self.scheduler_file.read_text())["address"]
                except (ValueError, KeyError):
                    pass
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited: {(self.folder / 'scheduler.log').read_text()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError("dask scheduler did not start in 60 s")

    def add_worker(
        self, name: str, env: dict | None = None, cwd: Path | None = None, without_idia: bool = False
    ) -> subprocess.Popen:
        """A worker process, in `cwd` (default: the repository). `without_idia`: the worker's Python cannot import
        the project (its editable-install finder removed before the worker starts; run it outside the repository)."""
        launch = [sys.executable, "-c", HIDE_PROJECT] if without_idia else [DASK, "worker"]
        if without_idia:
            env = {**(env or {}), "PYTHONPATH": None}  # nothing on the path may lead back to the project
        w = self._spawn(
            [
                *launch,
                "--scheduler-file",
                str(self.scheduler_file),
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                name,
                "--memory-limit",
                "0",
            ],
            f"worker-{name}",
            env,
            cwd,
        )
        self.workers.append(w)
        return w

    def wait_workers(self, n: int, timeout: float = 90) -> None:
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout="30s") as c:
            c.wait_for_workers(n, timeout=timeout)

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop(self) -> None:
        # Workers hold nothing worth a graceful close (seconds each); the scheduler gets SIGTERM.
        for p in self.workers:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
        if self.scheduler is not None and self.scheduler.poll() is None:
            os.kill(self.scheduler.pid, signal.SIGTERM)
        for p in [*self.workers, self.scheduler]:
            if p is not None:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)
        for log in self._logs:
            log.close()


class SlowTasks:
    """Test-only fault injection, as a Dask worker plugin: each task waits `seconds` before it runs, which widens
    the window in which a kill test strikes. Registered through a client (`register_slow_tasks`), never in idia."""

    name = "idia-test-slow-tasks"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def setup(self, worker) -> None:  # noqa: D401 - WorkerPlugin hook
        pass

    def teardown(self, worker) -> None:
        pass

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing":
            time.sleep(self.seconds)


def register_slow_tasks(address: str, seconds: float) -> None:
    """Install SlowTasks on every worker of the cluster at `address` (and on workers that join later)."""
    from distributed import Client
    from distributed.diagnostics.plugin import WorkerPlugin

    plugin = type("SlowTasksPlugin", (SlowTasks, WorkerPlugin), {})(seconds)
    with Client(address, timeout="30s") as c:
        c.register_plugin(plugin)
