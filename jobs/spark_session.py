"""The one Spark session factory: master, app name, small-machine defaults, Arrow on, project code shipped to executors."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Packages executors import (the task functions live in jobs/, the logic in idia/ and schemas/).
SHIPPED_PACKAGES = ("idia", "schemas", "jobs")

_zip_path: str | None = None


def project_zip() -> str:
    """Zip the project's Python packages once per driver process (for addPyFile on remote executors)."""
    global _zip_path
    if _zip_path and os.path.exists(_zip_path):
        return _zip_path
    fd, path = tempfile.mkstemp(prefix="idia-pkgs-", suffix=".zip")
    os.close(fd)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for pkg in SHIPPED_PACKAGES:
            for f in sorted((PROJECT_ROOT / pkg).rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                    zf.write(f, f.relative_to(PROJECT_ROOT).as_posix())
    _zip_path = path
    return path


def get_spark(master: str | None = None, app_name: str = "idia", conf: dict[str, str] | None = None):
    """Create (or return the running) SparkSession.

    master: None -> $SPARK_MASTER or local[*]; any Spark master URL (spark://, yarn, k8s://) otherwise.
    conf: extra Spark settings, applied last (they win over the defaults here).
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    # Under spark-submit (it sets PYSPARK_GATEWAY_PORT) its --master wins unless one is given here explicitly.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ and not master and not os.environ.get("SPARK_MASTER")
    if submitted:
        from pyspark import SparkConf

        master = SparkConf().get("spark.master", "local[*]")
    master = master or os.environ.get("SPARK_MASTER") or "local[*]"
    local = master.startswith("local")
    defaults = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Arrow batches of DataFrame <-> Python exchanges (the mining job reads its own batches: --batch-size).
        "spark.sql.execution.arrow.maxRecordsPerBatch": "8192",
        # A few hundred shuffle partitions is tuned for big clusters; small jobs pay for each one.
        "spark.sql.shuffle.partitions": "8" if local else "64",
        "spark.default.parallelism": str(os.cpu_count() or 2) if local else "64",
        # Python workers are reused, so a per-process cache (the matching automaton) is built once.
        "spark.python.worker.reuse": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.adaptive.enabled": "true",
    }
    if local or os.environ.get("SPARK_LOCAL_IP") == "127.0.0.1":
        defaults["spark.driver.host"] = "127.0.0.1"
        defaults["spark.driver.bindAddress"] = "127.0.0.1"
    if local:
        defaults["spark.ui.enabled"] = "false"
        # In local mode the JVM only schedules Python tasks (the stages read and write files themselves); its JIT's
        # optimising compiler (C2) then burns 10-20% of a 2-core machine for nothing (BENCHMARKS.md). C1 only.
        # Set spark.driver.extraJavaOptions yourself (--conf) to undo this, e.g. for JVM-heavy Spark SQL.
        defaults["spark.driver.extraJavaOptions"] = "-XX:TieredStopAtLevel=1"
        defaults["spark.driver.memory"] = "2g"  # --conf spark.driver.memory=... to change it
    settings = {**defaults, **(conf or {})}
    builder = SparkSession.builder.appName(app_name)
    if not submitted:
        builder = builder.master(master)
    for k, v in settings.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if not local:
        # Executors elsewhere cannot see this checkout: ship the packages. Local executors import them directly.
        zpath = project_zip()
        if zpath not in getattr(spark.sparkContext, "_idia_shipped", set()):
            spark.sparkContext.addPyFile(zpath)
            spark.sparkContext._idia_shipped = {zpath}
    return spark


@contextmanager
def spark_progress(spark, desc: str, total: int, every_s: float = 0.5):
    """A progress bar (tasks done of `total`) for the Spark jobs run inside the block, polled from the status tracker.

    The bar shows on a terminal only (tqdm's disable=None); the jobs get a job group so the Spark UI names them.
    """
    from tqdm import tqdm

    sc = spark.sparkContext
    group = f"idia-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, desc)
    bar = tqdm(total=total, desc=desc, unit="task", disable=None)
    stop = threading.Event()

    def done_tasks() -> int:
        tracker = sc.statusTracker()
        n = 0
        for jid in tracker.getJobIdsForGroup(group):
            info = tracker.getJobInfo(jid)
            for sid in info.stageIds if info else ():
                stage = tracker.getStageInfo(sid)
                n += stage.numCompletedTasks if stage else 0
        return min(n, total)

    def poll() -> None:
        while not stop.wait(every_s):
            try:
                bar.update(done_tasks() - bar.n)
            except Exception:  # the context is stopping: the bar just stops moving
                return

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        thread.join()
        if ok:
            bar.update(total - bar.n)
        bar.close()
        try:
            sc._jsc.clearJobGroup()
        except Exception:
            pass
