"""The mining job on a real Spark standalone cluster (master + 2 workers on 127.0.0.1, started and stopped by the test)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from idia.mine.config import MineConfig
from idia.mine.sample import SampleConfig, generate
from jobs.mine import run_mine


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return out, generate(
        SampleConfig(out=str(out), shards=4, rows_per_shard=1000, names=25, seed=11, row_group_size=500)
    )


def test_mine_on_standalone_cluster_matches_expected(spark_cluster, spark_on_cluster, sample, tmp_path):
    assert spark_cluster.alive_workers() == 2
    sample_dir, summary = sample
    assert spark_on_cluster.sparkContext.master == spark_cluster.url
    stats = run_mine(
        MineConfig(
            shards=[str(sample_dir / "shards" / "*.parquet")],
            names=str(sample_dir / "names.csv"),
            out=str(tmp_path / "out"),
            buckets=4,
            task_rows=500,
        ),
        spark=spark_on_cluster,
    )
    got = {
        r["identity_id"]: [r["n_captions"], r["n_unique_urls"]]
        for r in pq.read_table(tmp_path / "out" / "counts.parquet").to_pylist()
    }
    assert got == summary["expected"]["normalized"]
    assert stats["totals"]["rows_read"] == sum(f["rows"] for f in summary["files"].values())
    assert stats["work_units"] == 8 and stats["engine"] == spark_cluster.url
    # The tasks ran in the workers' executors (not in the driver): the app had 2 executors registered.
    executors = spark_on_cluster.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
    assert executors == 2
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["totals"]["manifest_rows"] == sum(v[0] for v in summary["expected"]["normalized"].values())
