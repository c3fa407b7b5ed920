"""A real S3-compatible HTTP endpoint on 127.0.0.1 for the object-storage tests: moto's standalone server, started
as its own process (stopped by PID), with one bucket. Tests reach it through s3fs like any S3 deployment."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, log_dir: Path, bucket: str = "idia-test"):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None

    @property
    def options(self) -> dict:
        """fsspec options for protocol s3 (a stage's storage_options value)."""
        return {"s3": {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing"}}

    def url(self, *parts: str) -> str:
        return "s3://" + "/".join([self.bucket, *parts])

    def start(self, timeout: float = 60.0) -> S3Server:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        log = open(self.log_dir / "moto.log", "wb")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"),
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited (code {self.proc.returncode}); see {self.log_dir}")
                time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError("moto_server did not answer")
        self.fs().mkdir(self.bucket)
        return self

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **self.options["s3"])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    try:
        yield server
    finally:
        server.stop()


#: Files whose content names where and when a mining run read or wrote (paths, URLs, timings, fingerprints).
RUN_RECORDS = {"config.json", "stats.json", "_settings.json", "stage.json"}


def run_data(fs, root: str, drop_columns: tuple[str, ...] = ()) -> dict[str, object]:
    """Every data file under a run folder (local path, or bucket/prefix on `fs`): parquet as rows (less
    `drop_columns`), other files as bytes; run records and hidden (staging, temporary) files left out."""
    import io

    import pyarrow.parquet as pq

    out = {}
    for path in sorted(fs.find(root)):
        rel = path[len(root.rstrip("/")) + 1 :]
        name = rel.rsplit("/", 1)[-1]
        if name in RUN_RECORDS or "/." in f"/{rel}":
            continue
        data = fs.cat_file(path)
        if name.endswith(".parquet"):
            t = pq.read_table(io.BytesIO(data))
            out[rel] = t.drop_columns([c for c in drop_columns if c in t.column_names]).to_pylist()
        else:
            out[rel] = data
    return out


def unit_markers(fs, root: str) -> list[str]:
    """The done-markers of a mining run's finished scan units under bucket/prefix `root`."""
    return [p for p in fs.find(root) if "/units/" in p and p.endswith(".json")]
