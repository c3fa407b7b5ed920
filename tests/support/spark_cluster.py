"""Test fixtures: a real Spark standalone cluster (master + 2 workers on 127.0.0.1, stopped by PID) and a local session."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneCluster:
    """Master + N workers started with pyspark's bin/spark-class; every process is stopped by its PID."""

    def __init__(
        self,
        workers: int = 2,
        cores: int = 1,
        memory: str = "1g",
        log_dir: Path | None = None,
        share_python: bool = True,
    ):
        """share_python False: the workers run in their own working directories with an environment that holds no
        trace of the project's virtualenv (no PYSPARK_PYTHON, no .venv on PATH): executors get Python only from
        what the job ships, as on a real cluster."""
        self.n_workers, self.cores, self.memory = workers, cores, memory
        self.share_python = share_python
        self.log_dir = Path(log_dir or "/tmp")
        self.procs: list[subprocess.Popen] = []
        self.port = free_port()
        self.ui_port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        if self.share_python:
            env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
            cwd = None
        else:
            venv = Path(sys.prefix)
            path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not Path(p).is_relative_to(venv)]
            env = {k: os.environ[k] for k in ("JAVA_HOME", "HOME", "LANG", "TMPDIR") if k in os.environ}
            env["PATH"] = os.pathsep.join(path)
            cwd = self.log_dir / f"{name}-home"
            cwd.mkdir(parents=True, exist_ok=True)
            env["SPARK_WORKER_DIR"] = str(cwd / "work")  # executors run (and unpack archives) under here
        env.update(SPARK_LOCAL_IP="127.0.0.1", SPARK_HOME=str(_spark_home()))
        log = open(self.log_dir / f"{name}.log", "wb")
        p = subprocess.Popen(
            [str(_spark_home() / "bin" / "spark-class"), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: stopping it never touches the test runner
        )
        self.procs.append(p)
        return p

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as r:
                data = json.load(r)
        except OSError:
            return 0
        return sum(1 for w in data.get("workers", []) if w.get("state") == "ALIVE")

    def start(self, timeout: float = 120.0) -> "StandaloneCluster":
        self._spawn(
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--webui-port",
                str(self.ui_port),
            ],
            "spark-master",
        )
        for i in range(self.n_workers):
            self._spawn(
                [
                    "org.apache.spark.deploy.worker.Worker",
                    self.url,
                    "--cores",
                    str(self.cores),
                    "--memory",
                    self.memory,
                    "--host",
                    "127.0.0.1",
                    "--webui-port",
                    str(free_port()),
                ],
                f"spark-worker-{i}",
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.alive_workers() >= self.n_workers:
                return self
            for p in self.procs:
                if p.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"a Spark process exited early (code {p.returncode}); see {self.log_dir}")
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"workers did not register within {timeout:.0f}s; see {self.log_dir}")

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                # spark-class execs java; the process group holds exactly what we started.
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.procs.clear()


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    with StandaloneCluster(workers=2, cores=1, memory="1g", log_dir=tmp_path_factory.mktemp("spark-logs")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def spark_on_cluster(spark_cluster):
    from jobs.spark_session import get_spark

    spark = get_spark(
        spark_cluster.url,
        app_name="idia-test-cluster",
        conf={"spark.executor.memory": "768m", "spark.cores.max": "2", "spark.executor.cores": "1"},
    )
    try:
        yield spark
    finally:
        spark.stop()


@pytest.fixture(scope="module")
def spark_local():
    from jobs.spark_session import get_spark

    spark = get_spark("local[2]", app_name="idia-test-local")
    try:
        yield spark
    finally:
        spark.stop()
