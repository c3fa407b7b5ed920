"""The local Python worker daemon (jobs/spark_daemon.py): PySpark from the installed package, not Spark's zip."""

from __future__ import annotations

from jobs.mine import SparkExecutor
from jobs.spark_daemon import installed_first


def _tree(root, *files):
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_only_the_installed_packages_own_zips_move_to_the_end(tmp_path):
    site, dist = tmp_path / "site-packages", tmp_path / "spark-4.3.0-bin"
    _tree(site, "pyspark/__init__.py", "pyspark/python/lib/pyspark.zip", "pyspark/python/lib/py4j-0.10.9.9-src.zip")
    _tree(dist, "python/lib/pyspark.zip", "python/lib/py4j-0.10.9.9-src.zip")  # a Spark distribution: kept
    own = [str(site / "pyspark/python/lib/pyspark.zip"), str(site / "pyspark/python/lib/py4j-0.10.9.9-src.zip")]
    other = str(dist / "python/lib/pyspark.zip")
    path = ["/work", *own, other, "/usr/lib/python311.zip", str(site)]
    assert installed_first(path) == ["/work", other, "/usr/lib/python311.zip", str(site), *own]
    # A zip named like Spark's in a folder that is not an installed pyspark stays where it is.
    _tree(tmp_path, "fake/pyspark/python/lib/pyspark.zip")
    fake = str(tmp_path / "fake/pyspark/python/lib/pyspark.zip")
    assert installed_first([fake, "/x"]) == [fake, "/x"]


def _origin(_context, _task) -> str:
    import pyspark

    return pyspark.__file__


def test_local_workers_import_pyspark_from_the_installed_package(spark_local):
    files = SparkExecutor(spark_local).map(_origin, None, [0, 1], "origin")
    assert len(files) == 2 and all(".zip" not in f and f.endswith("pyspark/__init__.py") for f in files), files


def _where(_context, task) -> tuple:
    import os

    from pyspark import TaskContext

    return task, TaskContext.get().partitionId(), os.getpid()


def test_tasks_share_partitions_in_guided_chunks_and_keep_their_order(spark_local):
    from idia.core.tasks import guided_chunks

    ex = SparkExecutor(spark_local)
    out = ex.map(_where, None, list(range(40)), "chunks")
    assert [t for t, _, _ in out] == list(range(40))
    sizes = guided_chunks(40, ex.parallelism)
    parts = [p for _, p, _ in out]
    assert parts == [i for i, s in enumerate(sizes) for _ in range(s)]  # consecutive tasks, one chunk a partition


def _frozen(_context, task) -> tuple:
    import gc
    import os

    return task, os.getpid(), gc.get_freeze_count()


def test_workers_freeze_what_they_hold_after_their_first_task(spark_local):
    """PySpark's daemon runs a full gc.collect() after every task; SparkExecutor freezes what a worker holds after
    its first task (modules, the matcher), so later collections skip it: from a worker's second task on, objects are
    frozen."""
    out = SparkExecutor(spark_local).map(_frozen, None, list(range(12)), "freeze")
    by_pid: dict[int, list[int]] = {}
    for _task, pid, frozen in out:
        by_pid.setdefault(pid, []).append(frozen)
    assert any(len(counts) > 1 for counts in by_pid.values()), by_pid  # some worker ran more than one task
    for counts in by_pid.values():
        assert all(c > 0 for c in counts[1:]), by_pid
