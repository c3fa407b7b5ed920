"""Executors that bring their own Python: a standalone cluster whose workers know nothing of the project's
virtualenv runs the mining job from the environment `idia pack-env` packs, and fails fast, naming the missing
module, when the executors' Python lacks the scan's packages."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from idia.core.errors import UserError
from idia.mine.config import MineConfig
from idia.mine.sample import SampleConfig, generate
from jobs.executor_env import pack_executor_env
from jobs.mine import run_mine
from tests.support.processes import kill_group_when
from tests.support.s3_server import run_data, unit_markers
from tests.support.spark_cluster import StandaloneCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
EXECUTOR_CONF = {"spark.executor.memory": "768m", "spark.cores.max": "2", "spark.executor.cores": "1"}


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory):
    with StandaloneCluster(workers=2, log_dir=tmp_path_factory.mktemp("bare-spark"), share_python=False) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return out, generate(
        SampleConfig(out=str(out), shards=2, rows_per_shard=1000, names=20, seed=4, row_group_size=500)
    )


def _cfg(sample_dir, out, master, task_rows: int = 500, **kw) -> MineConfig:
    return MineConfig(
        shards=[str(sample_dir / "shards" / "*.parquet")],
        names=str(sample_dir / "names.csv"),
        out=str(out),
        buckets=4,
        task_rows=task_rows,
        master=master,
        spark_conf=dict(EXECUTOR_CONF),
        **kw,
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    return pack_executor_env(tmp_path_factory.mktemp("env") / "env.tar.gz", extra=("s3fs",))


@pytest.fixture(scope="module")
def s3_shards(sample, s3) -> str:
    fs = s3.fs()
    for f in sorted((sample[0] / "shards").glob("*.parquet")):
        fs.put_file(str(f), f"{s3.bucket}/cluster-shards/{f.name}")
    return s3.url("cluster-shards", "*.parquet")


def test_mining_runs_from_the_shipped_environment_s3_to_s3(bare_cluster, sample, s3, s3_shards, archive, tmp_path):
    """Shards on the S3 endpoint, outputs to it, executors with nothing but the packed archive (s3fs included)."""
    sample_dir, summary = sample
    fs = s3.fs()
    info = archive
    assert {"numpy", "pyarrow", "ahocorasick_rs", "RapidFuzz", "s3fs", "botocore"} <= set(info["distributions"])
    cfg = _cfg(sample_dir, s3.url("cluster-run"), bare_cluster.url, executor_env=info["archive"])
    cfg.shards = [s3_shards]
    cfg.storage_options = s3.options
    stats = run_mine(cfg)
    with fs.open(f"{s3.bucket}/cluster-run/counts.parquet", "rb") as f:
        got = {r["identity_id"]: [r["n_captions"], r["n_unique_urls"]] for r in pq.read_table(f).to_pylist()}
    assert got == summary["expected"]["normalized"] and stats["engine"] == bare_cluster.url
    assert stats["totals"]["manifest_rows"] == sum(v[0] for v in summary["expected"]["normalized"].values())
    # The executors ran the archive's Python, unpacked in the workers' own directories.
    unpacked = [p for p in bare_cluster.log_dir.rglob("environment/idia-executor-env.json")]
    assert unpacked and json.loads(unpacked[0].read_text())["distributions"] == info["distributions"]


def test_executors_without_the_packages_fail_fast_naming_the_module(bare_cluster, sample, tmp_path):
    sample_dir, _ = sample
    bare = tmp_path / "bare"
    subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(bare)], check=True
    )
    cfg = _cfg(sample_dir, tmp_path / "out", bare_cluster.url, executor_python=str(bare / "bin" / "python"))
    with pytest.raises(UserError, match=r"executor on .*: cannot import numpy: ModuleNotFoundError") as err:
        run_mine(cfg)
    assert "cannot import pyarrow" in str(err.value) and "--executor-env" in str(err.value)
    assert not (tmp_path / "out" / "counts.parquet").exists()


def test_a_job_no_worker_can_take_stops_with_a_message_not_a_hang(bare_cluster, sample, tmp_path):
    sample_dir, _ = sample
    cfg = _cfg(sample_dir, tmp_path / "out", bare_cluster.url, probe_timeout=8)
    cfg.spark_conf["spark.executor.memory"] = "4g"  # more than any worker offers (1g): no executor ever starts
    with pytest.raises(UserError, match=r"no executor ran the import check within 8 s .*spark.executor.memory"):
        run_mine(cfg)


def test_driver_killed_midway_on_the_cluster_rerun_is_identical(bare_cluster, sample, s3, s3_shards, archive):
    """The driver (and its application) killed mid-scan on the bare cluster, S3 to S3; the rerun resumes from the
    units on the bucket and ends with the same files as the undisturbed run of the test above."""

    sample_dir, _ = sample
    fs = s3.fs()
    prefix = f"{s3.bucket}/cluster-killed"
    args = [
        *("--shards", s3_shards, "--names", str(sample_dir / "names.csv"), "--out", s3.url("cluster-killed")),
        *("--buckets", "4", "--task-rows", "250", "--master", bare_cluster.url),
        *("--executor-env", archive["archive"], "--storage-options", f"s3={json.dumps(s3.options['s3'])}"),
        *[a for k, v in EXECUTOR_CONF.items() for a in ("--conf", f"{k}={v}")],
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "mine", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    kill_group_when(proc, lambda: len(unit_markers(fs, prefix)) >= 2, 180, poll=0.1)
    assert not [p for p in fs.find(prefix) if p.endswith("/stats.json")]
    cfg = _cfg(sample_dir, s3.url("cluster-killed"), bare_cluster.url, executor_env=archive["archive"], task_rows=250)
    cfg.shards, cfg.storage_options = [s3_shards], s3.options
    stats = run_mine(cfg)
    assert stats["totals"]["units_resumed"] >= 2
    ref = _cfg(sample_dir, s3.url("cluster-ref"), bare_cluster.url, executor_env=archive["archive"], task_rows=250)
    ref.shards, ref.storage_options = [s3_shards], s3.options
    run_mine(ref)

    assert run_data(fs, prefix) == run_data(fs, f"{s3.bucket}/cluster-ref")
