"""Mining with shards and outputs on an S3-compatible endpoint (moto's standalone server on 127.0.0.1, reached
through s3fs): the same results as on local disk; killed midway and rerun, the same again; nothing half-visible."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from idia.mine.config import MineConfig
from idia.mine.sample import SampleConfig, generate
from jobs.mine import run_mine
from tests.support.processes import kill_group_when
from tests.support.s3_server import run_data, unit_markers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(tmp_path_factory, s3):
    out = tmp_path_factory.mktemp("sample")
    summary = generate(SampleConfig(out=str(out), shards=3, rows_per_shard=2000, names=25, seed=9, row_group_size=500))
    fs = s3.fs()
    for f in sorted((out / "shards").glob("*.parquet")):
        fs.put_file(str(f), f"{s3.bucket}/shards/{f.name}")
    return out, summary


def _cfg(shards: str, names, out: str, **kw) -> MineConfig:
    return MineConfig(shards=[shards], names=str(names), out=out, buckets=4, task_rows=500, **kw)


def _tables(fs, root: str) -> dict[str, object]:
    """A run's data files, parquet without source_file (it names where the shard was read: disk or bucket)."""
    return run_data(fs, root, drop_columns=("source_file",))


def test_mine_from_s3_to_s3_equals_local_disk(spark_local, sample, s3, tmp_path):
    import fsspec

    sample_dir, summary = sample
    names = sample_dir / "names.csv"
    run_mine(_cfg(str(sample_dir / "shards" / "*.parquet"), names, str(tmp_path / "local")), spark=spark_local)
    # s3a:// (Hadoop's name, as in a Spark user's config) reads as s3://
    stats = run_mine(
        _cfg(f"s3a://{s3.bucket}/shards/*.parquet", names, s3.url("runs", "mine"), storage_options=s3.options),
        spark=spark_local,
    )
    assert stats["totals"]["rows_read"] == 6000 and stats["config"]["input_files"][0].startswith("s3://")
    remote = _tables(s3.fs(), f"{s3.bucket}/runs/mine")
    local = _tables(fsspec.filesystem("file"), str(tmp_path / "local"))
    assert set(remote) == set(local) and remote == local
    assert any(k.startswith("manifests/bucket=") for k in remote)
    fs = s3.fs()
    assert not [p for p in fs.find(f"{s3.bucket}/runs/mine") if "/.mine-staging-" in p]  # staging removed
    got = {r["identity_id"]: [r["n_captions"], r["n_unique_urls"]] for r in local["counts.parquet"]}
    assert got == summary["expected"]["normalized"]
    # The same command again: recognised as finished, from the markers on the bucket.
    again = run_mine(
        _cfg(f"s3://{s3.bucket}/shards/*.parquet", names, s3.url("runs", "mine"), storage_options=s3.options),
        spark=spark_local,
    )
    assert again.get("resumed") is True


def test_killed_run_on_s3_resumes_and_ends_identical(spark_local, sample, s3, tmp_path):
    sample_dir, _ = sample
    names = sample_dir / "names.csv"
    ref = s3.url("runs", "reference")
    run_mine(_cfg(s3.url("shards"), names, ref, storage_options=s3.options), spark=spark_local)
    out = s3.url("runs", "killed")
    opts = json.dumps(s3.options["s3"])
    args = ["--shards", s3.url("shards"), "--names", str(names), "--out", out, "--buckets", "4", "--task-rows", "500"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "mine",
            *args,
            "--master",
            "local[1]",
            "--storage-options",
            f"s3={opts}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    fs = s3.fs()
    prefix = f"{s3.bucket}/runs/killed"
    kill_group_when(proc, lambda: len(unit_markers(fs, prefix)) >= 2, 120)
    left = fs.find(prefix)
    assert not [p for p in left if p.endswith("/stats.json") or "/manifests/" in p.split(".mine-staging-")[0]]
    assert not [p for p in left if p.endswith(".tmp")]  # nothing half-written under a final or temporary name
    stats = run_mine(_cfg(s3.url("shards"), names, out, storage_options=s3.options), spark=spark_local)
    assert stats["totals"]["units_resumed"] >= 2
    assert _tables(fs, prefix) == _tables(fs, f"{s3.bucket}/runs/reference")
