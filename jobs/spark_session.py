"""The one Spark session factory: master, app name, small-machine defaults, Arrow on, project code shipped to executors."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import uuid
import zipfile
from contextlib import contextmanager, suppress
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


def _defaults_file_master() -> tuple[str, str] | None:
    """spark.master from spark-defaults.conf, where spark-submit reads it ($SPARK_CONF_DIR, else $SPARK_HOME/conf)."""
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None
    )
    if not conf_dir:
        return None
    path = Path(conf_dir) / "spark-defaults.conf"
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0] == "spark.master" and not line.lstrip().startswith("#"):
            return parts[1].strip(), str(path)
    return None


def configured_master(master: str | None = None) -> tuple[str, str]:
    """(master, where it came from), as Spark itself would choose: an explicit --master; $SPARK_MASTER; spark-submit's
    own --master (PYSPARK_SUBMIT_ARGS or a submitted job's conf); spark.master in spark-defaults.conf; else
    local[*] (nothing configured)."""
    if master:
        return master, "--master"
    if os.environ.get("SPARK_MASTER"):
        return os.environ["SPARK_MASTER"], "$SPARK_MASTER"
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # under spark-submit: its master is in the JVM's system properties
        from pyspark import SparkConf, SparkContext

        SparkContext._ensure_initialized()  # connects to spark-submit's gateway, so SparkConf reads the JVM's conf
        return SparkConf().get("spark.master", "local[*]"), "spark-submit"
    args = os.environ.get("PYSPARK_SUBMIT_ARGS", "").split()
    if "--master" in args[:-1]:
        return args[args.index("--master") + 1], "$PYSPARK_SUBMIT_ARGS"
    found = _defaults_file_master()
    if found:
        return found[0], found[1]
    return "local[*]", "default (no master configured)"


LOG_LEVELS = ("auto", "ERROR", "WARN", "INFO", "DEBUG")


def _not_py4j_interrupt(record: logging.LogRecord) -> bool:
    """Drop what py4j logs on the root logger (its "... while sending command" tracebacks when the JVM goes)."""
    return "py4j" not in record.pathname.replace("\\", "/").split("/")


def _quiet_accumulator_server(sc) -> None:
    """PySpark's accumulator server (a socketserver thread in the driver) prints a traceback when the JVM's
    connection ends mid-read, e.g. on Ctrl-C (which reaches the whole process group); the command already says it was
    interrupted, so a closed connection is dropped quietly there. Any other error is printed as before."""
    server = getattr(sc, "_accumulatorServer", None)
    if server is None or getattr(server, "_idia_quiet", False):
        return
    original = server.handle_error

    def handle_error(request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (EOFError, ConnectionError)):
            return
        original(request, client_address)

    server.handle_error = handle_error
    server._idia_quiet = True


def _import_while_the_jvm_starts() -> None:
    """Import pandas in a background thread while this thread waits for the driver JVM to come up: PySpark imports
    it as the context starts (pyspark.sql.types' py4j converter imports pyspark.testing, which imports pandas), once
    the JVM is up, ~0.2 s on the start's critical path here; the JVM's start leaves this process idle for ~1 s.
    The context's own import then finds pandas loaded (or waits for the thread to finish loading it)."""
    if "pandas" in sys.modules:
        return

    def load() -> None:
        try:
            import pandas  # noqa: F401
        except Exception:  # PySpark's own import then fails with the reason
            pass

    threading.Thread(target=load, name="idia-import-pandas", daemon=True).start()


class RddSession:
    """The part of a SparkSession the RDD jobs use: `sparkContext` and `stop()`, without the JVM's SQL session."""

    def __init__(self, sc):
        self.sparkContext = sc

    def stop(self) -> None:
        self.sparkContext.stop()


def stop_spark(spark) -> None:
    """Stop a SparkSession or RddSession made here, without waiting ~1 s for PySpark's accumulator server.

    SparkContext.stop() ends with the accumulator server's socketserver shutdown, which waits until the server's
    handler, polling its connection from the JVM once a second, sees the flag: 0.9-1.0 s of every stop here while
    the JVM's own stop took 0.07 s (BENCHMARKS.md, issue 17). The server is detached first and shut down in a daemon
    thread: it takes no more updates once the JVM has stopped, and its port closes within that second (or at exit).
    """
    sc = spark.sparkContext
    server = getattr(sc, "_accumulatorServer", None)
    sc._accumulatorServer = None
    try:
        spark.stop()
    finally:
        if server is not None:
            threading.Thread(target=server.shutdown, name="spark-accumulator-shutdown", daemon=True).start()


#: What the driver JVM prints on every start that tells a user nothing: the module notice of Spark's own launcher
#: flags, log4j's default-profile notes (before the level is set) and Hadoop's native-library notice. A JVM started
#: here writes its stderr through `_relay`, which drops these lines and passes every other one on.
JVM_NOISE = (
    b"WARNING: Using incubator modules: ",
    b"Using Spark's default log4j profile: ",
    b'Setting default log level to "',
    b"To adjust logging level use sc.setLogLevel(",
    b"WARN NativeCodeLoader: Unable to load native-hadoop library",
)


def _relay(stream, write) -> None:
    """Copy the driver JVM's stderr, line by line, to `write`, without the JVM_NOISE lines; ends at the JVM's exit.
    The pipe is always drained (a JVM whose stderr pipe filled up would block), whatever `write` does."""
    try:
        for line in iter(stream.readline, b""):
            if any(noise in line for noise in JVM_NOISE):
                continue
            try:
                write(line)
            except Exception:  # this process's stderr is gone (exiting, or closed by a caller): keep draining
                pass
    except (OSError, ValueError):  # the pipe itself closed under us: the process is exiting
        pass


def _write_stderr(line: bytes) -> None:
    """One relayed line to this process's current sys.stderr (a caller's replacement included)."""
    sys.stderr.write(line.decode("utf-8", "replace"))
    sys.stderr.flush()


class DriverLaunch:
    """The driver JVM (PySpark's py4j gateway, `pyspark.java_gateway.launch_gateway`) started in a thread.

    `get_spark` starts every JVM it makes through one of these, and a one-shot job can start it before its own set-up
    (`start_driver`): the JVM's ~1 s start then runs while the driver parses the names, reads the footers and
    prepares the matchers (mining 4 shards at 100,000 names, the driver then waited 0.97-1.34 s for its engine
    instead of 1.75-1.96 s; BENCHMARKS.md). The JVM's stderr comes back through a pipe
    (`_relay`: its start-up notices dropped), so its lines never come before the set-up's own errors, and the
    command's output closes when the command ends rather than when the JVM finishes its own exit afterwards.

    `take()` waits for the gateway (raising what the start raised); `close()` stops a JVM no context adopted (a failed
    set-up, Ctrl-C; PySpark cut off in its own start leaves the JVM running): one still starting is killed by PID, one
    already up exits as PySpark's own exit makes it.
    """

    def __init__(self, master: str, app_name: str, settings: dict[str, str], asked: dict[str, str] | None = None):
        import psutil

        self.master, self.app_name, self.settings = master, app_name, dict(settings)
        self.asked = dict(asked if asked is not None else settings)  # the settings before the CDS options
        self.gateway = None
        self.error: BaseException | None = None
        self.adopted = False
        self._before = {c.pid for c in psutil.Process().children(recursive=True)}
        self._thread = threading.Thread(target=self._launch, name="spark-driver-launch", daemon=True)
        self._thread.start()

    def conf(self):
        from pyspark import SparkConf

        conf = SparkConf(loadDefaults=False).setAppName(self.app_name).setMaster(self.master)
        for k, v in self.settings.items():
            conf.set(k, v)
        return conf

    def _launch(self) -> None:
        import subprocess

        from pyspark.java_gateway import launch_gateway

        try:
            gateway = launch_gateway(self.conf(), popen_kwargs={"stderr": subprocess.PIPE})
            threading.Thread(
                target=_relay, args=(gateway.proc.stderr, _write_stderr), name="spark-jvm-stderr", daemon=True
            ).start()
            self.gateway = gateway
        except BaseException as exc:  # handed to the caller by take()
            self.error = exc

    def take(self):
        """The started gateway (waits for the start; re-raises its error)."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.gateway

    def close(self) -> None:
        """Stop the JVM unless a context adopted it; safe to call more than once and mid-start.

        A JVM still starting is killed at once (it holds no work yet; SIGTERM took 1.4-1.9 s to end one in its first
        second here). Its processes are not reaped here: PySpark's start loop must see the exit code itself (a child
        reaped behind its back reads as exit code 0, which that loop takes for "still starting", forever). A JVM
        already up is told to go the way PySpark's own exit does it, by closing its stdin."""
        if self.adopted:
            return
        self.adopted = True  # whatever happens below, once
        from pyspark import SparkContext

        if self._thread.is_alive():
            for c in self._spawned():
                with suppress(Exception):
                    c.kill()
            self._thread.join(10)
        gateway, self.gateway = self.gateway, None
        if gateway is None:
            return
        with suppress(Exception):
            gateway.close()
        proc = gateway.proc
        with suppress(Exception):
            proc.stdin.close()  # the JVM's gateway server exits when its stdin closes
        try:
            proc.wait(10)
        except Exception:
            with suppress(Exception):
                proc.kill()
        if SparkContext._gateway is gateway:
            SparkContext._gateway = SparkContext._jvm = None

    def _spawned(self) -> list:
        """The Spark launcher processes this launch started (spark-submit, spark-class, the JVMs), by PID."""
        import psutil

        found = []
        for c in psutil.Process().children(recursive=True):
            if c.pid in self._before:
                continue
            with suppress(psutil.Error):
                if any("spark" in part.lower() for part in c.cmdline()):
                    found.append(c)
        return found


def _session_settings(master: str, local: bool, conf: dict[str, str] | None, archives: list[str]) -> dict[str, str]:
    """The settings a session made here starts with: the small-machine defaults, then `conf` (which wins)."""
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
        # Local workers run this interpreter, which has PySpark installed: import it with its bytecode cache, not
        # from Spark's zip (jobs/spark_daemon.py: ~0.5 s off every job's first task here).
        defaults["spark.python.daemon.module"] = "jobs.spark_daemon"
    else:
        # Executors elsewhere may lack this checkout's packages when their daemon starts: PySpark's own daemon. Set
        # explicitly, because a local context earlier in this process leaves its settings in the JVM's properties.
        defaults["spark.python.daemon.module"] = "pyspark.daemon"
    if archives:
        defaults["spark.archives"] = ",".join(archives)
    return {**defaults, **(conf or {})}


def _with_cds(settings: dict[str, str]) -> dict[str, str]:
    """A local driver's settings with its class-data-sharing options (jobs/spark_cds.py: ~2 s less start-up once the
    archive exists)."""
    from jobs.spark_cds import driver_options

    opts = settings.get("spark.driver.extraJavaOptions", "")
    return {**settings, "spark.driver.extraJavaOptions": f"{opts} {driver_options(opts)}".strip()}


def start_driver(master: str | None = None, app_name: str = "idia", conf: dict[str, str] | None = None):
    """Start a local session's driver JVM now, in the background, for a `get_spark(..., launch=...)` later with the
    same master and conf: a one-shot command calls this before its own set-up. None where there is nothing to start
    early: a context or gateway already in this process, spark-submit's own JVM, or a cluster master."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return None
    from pyspark import SparkContext

    if SparkContext._gateway is not None or SparkContext._active_spark_context is not None:
        return None
    master, _ = configured_master(master)
    if not master.startswith("local"):
        return None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    asked = _session_settings(master, True, conf, [])
    return DriverLaunch(master, app_name, _with_cds(asked), asked=asked)


def get_spark(
    master: str | None = None,
    app_name: str = "idia",
    conf: dict[str, str] | None = None,
    log_level: str = "auto",
    executor_env: str | None = None,
    executor_python: str | None = None,
    sql: bool = True,
    launch: DriverLaunch | None = None,
):
    """Create (or return the running) SparkSession.

    sql=False: only the SparkContext (an `RddSession`), for jobs that run plain RDD tasks (mining): the JVM's SQL
    session is not made, ~1-2 s less start-up (BENCHMARKS.md, "Start-up").

    master: None -> what Spark itself would use (`configured_master`); any Spark master URL otherwise.
    conf: extra Spark settings, applied last (they win over the defaults here).
    log_level: Spark's log level; auto = ERROR in local mode, WARN on a cluster (where "Initial job has not accepted
    any resources" is what a job waiting for executors says).
    executor_env: an archive from `idia pack-env` (jobs/executor_env.py), shipped with the job as
    `spark.archives=ARCHIVE#environment`; executors run `./environment/bin/python`. executor_python: a Python every
    node already has. Neither: executors run this driver's interpreter path (right for local mode and for nodes
    that share this machine's environment). In local mode both are ignored: the executors are this machine.
    launch: a driver JVM `start_driver` started earlier with the same master and conf; it becomes this session's
    (one started with other settings is stopped, and a JVM started afresh).
    """
    from pyspark.sql import SparkSession

    # py4j logs a traceback of its own for every call cut off when the JVM goes (Ctrl-C reaches the whole process
    # group); the error that matters reaches the caller as an exception, so its log is kept to CRITICAL.
    logging.getLogger("py4j").setLevel(logging.CRITICAL)
    logging.getLogger().addFilter(_not_py4j_interrupt)  # py4j logs that one on the root logger
    try:
        master, source = configured_master(master)
        submitted = source == "spark-submit"
        local = master.startswith("local")
        print(f"spark: master {master} (from {source})", file=sys.stderr, flush=True)
        archives = []
        if (executor_env or executor_python) and local:
            print("spark: local mode: --executor-env / --executor-python ignored", file=sys.stderr, flush=True)
        elif executor_env:
            if not Path(executor_env).is_file():
                from idia.core.errors import UserError

                raise UserError(
                    f"{executor_env}: executor environment archive not found (make it with `idia pack-env`)"
                )
            archives.append(f"{Path(executor_env).resolve()}#environment")
            executor_python = "./environment/bin/python"
        # PySpark hands executors the interpreter named by PYSPARK_PYTHON when the context starts.
        if executor_python and not local:
            os.environ["PYSPARK_PYTHON"] = executor_python
        else:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        settings = _session_settings(master, local, conf, archives)
        from pyspark import SparkConf, SparkContext

        fresh = SparkContext._active_spark_context is None
        if launch is not None and not (
            fresh
            and SparkContext._gateway is None
            and launch.master == master
            and launch.app_name == app_name
            and launch.asked == settings
        ):
            launch.close()  # started for other settings (or a session is already running): not this session's JVM
            launch = None
        if launch is not None:
            settings = launch.settings  # what the JVM was started with, the CDS options included
        elif local and not submitted and fresh:
            settings = _with_cds(settings)
        spark_conf = SparkConf().setAppName(app_name)
        if not submitted:
            spark_conf.setMaster(master)
        for k, v in settings.items():
            spark_conf.set(k, v)
        if fresh:
            _import_while_the_jvm_starts()
        if fresh and SparkContext._gateway is None and not submitted and launch is None:
            launch = DriverLaunch(master, app_name, settings)
        if launch is not None:
            gateway = launch.take()  # cut off (Ctrl-C) or failed: the `finally` below stops its JVM
            SparkContext._gateway, SparkContext._jvm = gateway, gateway.jvm
        # Every JVM this call starts is `launch`'s, so a start cut off anywhere here (Ctrl-C, SIGTERM) is stopped by
        # the `finally` below; PySpark itself would leave a JVM cut off in its start running.
        if sql:
            spark = SparkSession.builder.config(conf=spark_conf).getOrCreate()
        else:
            spark = RddSession(SparkContext.getOrCreate(spark_conf))
        if launch is not None:
            launch.adopted = True
    finally:
        if launch is not None and not launch.adopted:
            launch.close()  # the context did not start: its JVM goes
    spark.sparkContext.setLogLevel(("ERROR" if local else "WARN") if log_level == "auto" else log_level)
    _quiet_accumulator_server(spark.sparkContext)
    if local:
        from jobs.spark_cds import record_writer

        record_writer(spark.sparkContext)
    else:
        # Executors elsewhere cannot see this checkout: ship the packages. Local executors import them directly.
        zpath = project_zip()
        if zpath not in getattr(spark.sparkContext, "_idia_shipped", set()):
            spark.sparkContext.addPyFile(zpath)
            spark.sparkContext._idia_shipped = {zpath}
    return spark


@contextmanager
def spark_progress(spark, desc: str, total: int, done, every_s: float = 0.5):
    """A progress bar (`done()` of `total` tasks) for the Spark jobs run inside the block, polled every `every_s`;
    the caller counts its own tasks (they are packed into partitions, so Spark's task counts are not theirs).

    A bar on a terminal, a periodic log line otherwise (idia.core.progress); the jobs get a job group so the Spark
    UI names them.
    """
    from idia.core.progress import progress

    sc = spark.sparkContext
    group = f"idia-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, desc)
    bar = progress(total, desc, "task")
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            try:
                bar.update(min(int(done()), total) - bar.n)
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


def java_error_line(exc: BaseException) -> str:
    """The informative line of a Py4J/Spark error (the Python exception or the failed program), not its stack."""
    import re

    text = str(exc)
    for pattern in (
        r"(ModuleNotFoundError|ImportError): [^\n]+",
        r"Cannot run program [^\n]+",
        r"\[PYTHON_VERSION_MISMATCH\][^\n]+",
        r"PythonException:[^\n]+",
        r"\w+(Exception|Error): [^\n]+",
    ):
        m = re.search(pattern, text)
        if m:
            return m.group(0).strip()[:400]
    return text.strip().splitlines()[0][:400] if text.strip() else type(exc).__name__


def check_executors(spark, modules: tuple[str, ...] | None = None, timeout_s: float = 120.0) -> list[dict]:
    """Run the import probe (jobs/probe.py) on the executors before any real task; stop with a UserError naming what
    is missing where, what differs from the driver, or that no executor took the job within `timeout_s`."""
    from idia.core.errors import UserError
    from jobs.probe import PINNED, SCAN_MODULES, module_version, probe_modules

    modules = tuple(modules or SCAN_MODULES)
    sc = spark.sparkContext
    n = max(1, sc.defaultParallelism)
    group = f"idia-probe-{uuid.uuid4().hex[:8]}"
    result: dict = {}

    def run() -> None:
        try:
            sc.setJobGroup(group, "idia: executor import check", interruptOnCancel=True)
            result["rows"] = sc.parallelize(range(n), n).map(lambda _: probe_modules(modules)).collect()
        except Exception as exc:  # Py4JJavaError and friends: reported below in one line
            result["error"] = exc

    thread = threading.Thread(target=run, name="spark-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    hint = (
        "ship an environment with the job (`idia pack-env --out env.tar.gz`, then --executor-env env.tar.gz) or "
        "name a Python every node has (--executor-python PATH)"
    )
    if thread.is_alive():
        sc.cancelJobGroup(group)
        thread.join(30)
        raise UserError(
            f"spark: no executor ran the import check within {timeout_s:.0f} s on {sc.master}: the cluster gave this "
            "job no executors (no live workers, or the cores / memory asked for exceed what any worker offers: "
            "spark.executor.memory, spark.executor.cores, spark.cores.max); see the master's web UI"
        )
    if "error" in result:
        raise UserError(f"spark: executors cannot run this job's Python: {java_error_line(result['error'])}; {hint}")
    driver = {}
    for m in PINNED:
        try:
            driver[m] = module_version(m)
        except ImportError:
            driver[m] = None
    problems = []
    for r in result["rows"]:
        where = f"executor on {r['host']} ({r['python']}, Python {r['version']})"
        for m, v in r["modules"].items():
            if v.startswith("ERROR"):
                problems.append(f"{where}: cannot import {m}: {v[6:]}")
            elif m in driver and driver[m] and v != driver[m]:
                problems.append(f"{where}: {m} {v}, but the driver has {driver[m]}")
    if problems:
        unique = list(dict.fromkeys(problems))
        raise UserError("spark: executors lack what the job needs:\n  " + "\n  ".join(unique[:20]) + f"\n{hint}")
    return result["rows"]
