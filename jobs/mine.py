"""Spark adapter of the mining stage: runs idia.mine's scan and merge tasks as plain RDD jobs.

The tasks read and write files themselves and return a few small rows, so a DataFrame plan would add only query
compilation (the JVM's JIT compiling generated code took 10-20% of 2 cores here). Consecutive tasks share a
partition in shrinking chunks (`idia.core.tasks.guided_chunks`): each Spark task costs 69-87 ms of scheduling and
Python worker round trips here (42 ms of it Nagle's delay on the JVM's second small write; BENCHMARKS.md), and the
last chunks of one task each still balance the cores.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

from idia.core.tasks import guided_chunks
from idia.mine.config import MineConfig
from idia.mine.stage import run_mine as _run_mine
from jobs.spark_session import (
    check_executors,
    get_spark,
    java_error_line,
    spark_progress,
    start_driver,
    stop_spark,
)

_frozen = False


def _freeze_once() -> None:
    """Move what this Python worker holds after its first task (modules, the matcher) out of the cyclic GC's reach.

    PySpark's daemon runs a full `gc.collect()` after every task of a reused worker; with pyarrow, pandas and a
    100,000-name matcher loaded it took 16-42 ms a task here (BENCHMARKS.md), walking objects that live as long as
    the worker. Frozen objects are still freed by reference counting; only cycles among them would stay."""
    global _frozen
    if not _frozen:
        import gc

        gc.freeze()
        _frozen = True


def _partition(fn, bcast, done, chunks: Iterator) -> Iterator[dict]:
    context = bcast.value
    for chunk in chunks:
        for task in chunk:
            out = fn(context, task)
            done.add(1)
            _freeze_once()
            yield from (out if isinstance(out, list) else [out])


class SparkExecutor:
    """idia.core.tasks.TaskExecutor on a SparkSession: the context is broadcast once; a partition runs a chunk of
    consecutive tasks (results in task order); the progress bar counts tasks as their partitions finish."""

    def __init__(self, spark):
        self.spark = spark
        self.parallelism = spark.sparkContext.defaultParallelism
        self.name = spark.sparkContext.master

    def map(self, fn, context, tasks, desc: str) -> list:
        if not tasks:
            return []
        sc = self.spark.sparkContext
        bcast = sc.broadcast(context)
        tasks = list(tasks)
        chunks, at = [], 0
        for size in guided_chunks(len(tasks), self.parallelism):
            chunks.append(tasks[at : at + size])
            at += size
        done = sc.accumulator(0)
        try:
            rdd = sc.parallelize(chunks, len(chunks)).mapPartitions(functools.partial(_partition, fn, bcast, done))
            with spark_progress(self.spark, desc, len(tasks), lambda: done.value):
                return rdd.collect()
        except Exception as exc:
            from py4j.protocol import Py4JJavaError

            if not isinstance(exc, Py4JJavaError):
                raise
            if "No space left on device" in str(exc):
                raise  # the command names a full disk itself
            from idia.core.errors import UserError

            raise UserError(
                f"spark: {desc} failed after Spark's retries: {java_error_line(exc)}; the units that finished are "
                "kept: rerun the same command to resume"
            ) from None
        finally:
            bcast.destroy()


@contextmanager
def spark_executor(cfg: MineConfig, spark=None, launch=None):
    """A SparkExecutor on `spark`, or on a session made (and stopped) here from cfg.master and cfg.spark_conf (its
    driver JVM `launch`, when `start_driver` started it earlier)."""
    import os

    own = spark is None
    before = os.environ.get("PYSPARK_PYTHON")
    spark = spark or get_spark(
        cfg.master,
        app_name="idia-mine",
        conf={k: str(v) for k, v in cfg.spark_conf.items()},
        log_level=cfg.log_level,
        executor_env=cfg.executor_env,
        executor_python=cfg.executor_python,
        sql=False,  # the mining job runs plain RDD tasks
        launch=launch,
    )
    try:
        if cfg.probe_timeout and not spark.sparkContext.master.startswith("local"):
            check_executors(spark, timeout_s=cfg.probe_timeout)  # a clear error now, not a failed or hung scan
        yield SparkExecutor(spark)
    finally:
        if own:
            stop_spark(spark)
            if before is None:
                os.environ.pop("PYSPARK_PYTHON", None)
            else:
                os.environ["PYSPARK_PYTHON"] = before


def run_mine(cfg: MineConfig, spark=None) -> dict:
    """The mining stage on Spark (an existing session, or one made from the config); returns its stats.

    Without a session, a local one's driver JVM is started first, in the background (`start_driver`): its ~1 s start
    runs while the stage parses the names and reads the footers. A stage that stops before the engine (bad names, a
    finished run) stops that JVM again."""
    cfg.validate()
    launch = None
    if spark is None:
        launch = start_driver(cfg.master, "idia-mine", {k: str(v) for k, v in cfg.spark_conf.items()})
    try:
        return _run_mine(cfg, lambda: spark_executor(cfg, spark, launch))
    finally:
        if launch is not None:
            launch.close()  # a no-op once the session adopted it
