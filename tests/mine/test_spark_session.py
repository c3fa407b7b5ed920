"""Which Spark master a run uses when none is given: what Spark itself would use, local only when nothing says."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobs.spark_session import configured_master


@pytest.fixture()
def clean_env(monkeypatch, tmp_path):
    for var in ("SPARK_MASTER", "PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR", "SPARK_HOME", "PYSPARK_GATEWAY_PORT"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_master_resolution_order(clean_env, tmp_path):
    assert configured_master() == ("local[*]", "default (no master configured)")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text("# a comment\nspark.executor.memory 4g\nspark.master   spark://m:7077\n")
    clean_env.setenv("SPARK_CONF_DIR", str(conf))
    assert configured_master() == ("spark://m:7077", str(conf / "spark-defaults.conf"))
    clean_env.setenv("PYSPARK_SUBMIT_ARGS", "--master yarn --deploy-mode client pyspark-shell")
    assert configured_master() == ("yarn", "$PYSPARK_SUBMIT_ARGS")
    clean_env.setenv("SPARK_MASTER", "spark://other:7077")
    assert configured_master() == ("spark://other:7077", "$SPARK_MASTER")
    assert configured_master("local[3]") == ("local[3]", "--master")


def test_a_session_follows_spark_defaults_conf(tmp_path):
    """A real session, in a fresh process: spark-defaults.conf names the master, no --master is given."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text("spark.master local[1]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_MASTER", "PYSPARK_SUBMIT_ARGS")}
    env["SPARK_CONF_DIR"] = str(conf)
    code = (
        "from jobs.spark_session import get_spark\n"
        "s = get_spark(log_level='WARN')\n"
        "print('MASTER', s.sparkContext.master)\n"
        "s.stop()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MASTER local[1]" in r.stdout
    assert f"spark: master local[1] (from {conf / 'spark-defaults.conf'})" in r.stderr


def test_a_stopped_session_hands_over_to_the_next_with_working_accumulators():
    """stop_spark leaves the accumulator server to close in the background: the next context in the same process
    (as `idia run` makes one per stage) starts, counts with an accumulator and stops again."""
    code = (
        "import threading\n"
        "from jobs.spark_session import get_spark, stop_spark\n"
        "for round in range(2):\n"
        "    s = get_spark('local[1]', log_level='WARN', sql=False)\n"
        "    acc = s.sparkContext.accumulator(0)\n"
        "    s.sparkContext.parallelize(range(10), 2).foreach(lambda x: acc.add(x))\n"
        "    print('SUM', round, acc.value)\n"
        "    stop_spark(s)\n"
        "    print('ACTIVE', s.sparkContext._jsc is None, s.sparkContext._accumulatorServer is None)\n"
        "for t in threading.enumerate():\n"
        "    if t.name == 'spark-accumulator-shutdown':\n"
        "        t.join(5)\n"
        "print('LEFT', sum(t.name == 'spark-accumulator-shutdown' for t in threading.enumerate()))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SUM 0 45" in r.stdout and "SUM 1 45" in r.stdout, r.stdout
    assert r.stdout.count("ACTIVE True True") == 2 and "LEFT 0" in r.stdout, r.stdout


def _marked_jvms(mark: str) -> list:
    """The driver JVMs (SparkSubmit) whose environment carries IDIA_TEST_MARK=mark: the ones a test's command started."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "org.apache.spark.deploy.SparkSubmit" in (p.info["cmdline"] or []) and (
                p.environ().get("IDIA_TEST_MARK") == mark
            ):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_ctrl_c_while_sparks_jvm_starts_leaves_no_jvm_behind(tmp_path):
    """Ctrl-C while PySpark waits for the JVM it just started (the first ~2 s of a command): the command says it
    was interrupted and exits 130, and the JVM goes too (PySpark starts it ignoring SIGINT and left it running,
    holding the command's output open)."""
    import signal
    import time
    import uuid

    import psutil

    from idia.mine.sample import SampleConfig, generate

    generate(SampleConfig(out=str(tmp_path / "sample"), shards=1, rows_per_shard=200, names=5, seed=1))
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_MASTER", "PYSPARK_SUBMIT_ARGS")}
    env["IDIA_TEST_MARK"] = mark

    def jvms() -> list:
        return _marked_jvms(mark)

    cmd = [sys.executable, "-m", "pipelines.cli", "mine", "--master", "local[1]", "--out", str(tmp_path / "out")]
    cmd += ["--shards", str(tmp_path / "sample" / "shards"), "--names", str(tmp_path / "sample" / "names.csv")]
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.time() + 120
        while not jvms() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None and jvms(), "the JVM never started"
        os.killpg(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=60)[0]  # an orphaned JVM would hold the output open: a timeout here
        assert proc.returncode == 130, out[-3000:]
        assert "idia mine: interrupted" in out and "Traceback" not in out, out[-3000:]
        assert not psutil.wait_procs(jvms(), timeout=15)[1], "a JVM was left running"
    finally:
        for p in jvms():
            p.kill()
        if proc.poll() is None:
            proc.kill()


def test_the_jvm_relay_drops_start_up_notices_and_passes_every_other_line():
    """The driver JVM's stderr comes through `_relay`: Spark's and Java's start-up notices go, anything else (a real
    warning or error) is passed on as it came; a failing writer does not stop the pipe from being drained."""
    import io

    from jobs.spark_session import _relay

    lines = [
        b"WARNING: Using incubator modules: jdk.incubator.vector\n",
        b"Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties\n",
        b'Setting default log level to "WARN".\n',
        b"To adjust logging level use sc.setLogLevel(newLevel). For SparkR, use setLogLevel(newLevel).\n",
        b"26/12/06 02:37:26 WARN NativeCodeLoader: Unable to load native-hadoop library for your platform...\n",
        b"26/12/06 02:37:27 ERROR Executor: Exception in task 0.0 in stage 1.0 (TID 1)\n",
        b"java.lang.OutOfMemoryError: Java heap space\n",
    ]
    got: list[bytes] = []
    _relay(io.BytesIO(b"".join(lines)), got.append)
    assert got == lines[5:]

    stream = io.BytesIO(b"".join(lines))

    def broken(_line: bytes) -> None:
        raise OSError("stderr closed")

    _relay(stream, broken)
    assert stream.read() == b""  # drained to the end all the same


def test_start_driver_only_for_a_local_master_it_can_start(monkeypatch):
    from jobs.spark_session import start_driver

    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")  # under spark-submit: its JVM is already there
    assert start_driver("local[1]") is None
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT")
    assert start_driver("spark://127.0.0.1:7077") is None  # a cluster master: the session starts its JVM itself


def test_an_early_driver_becomes_the_session_and_one_for_other_settings_is_stopped():
    """start_driver's JVM is the one the session with the same settings uses (no second JVM, and none of the JVM's
    start-up notices on stderr); a launch for other settings is stopped and the session starts its own."""
    code = (
        "import psutil\n"
        "from jobs.spark_session import get_spark, start_driver, stop_spark\n"
        "launch = start_driver('local[1]', 'early', {})\n"
        "s = get_spark('local[1]', app_name='early', sql=False, launch=launch)\n"
        "pid = s.sparkContext._gateway.proc.pid\n"
        "print('SAME', pid == launch.gateway.proc.pid, launch.adopted)\n"
        "print('SUM', s.sparkContext.parallelize(range(10), 2).sum())\n"
        "stop_spark(s)\n"
        "from pyspark import SparkContext\n"
        "SparkContext._gateway.close(); SparkContext._gateway.proc.stdin.close(); SparkContext._gateway.proc.wait(30)\n"
        "SparkContext._gateway = SparkContext._jvm = None\n"
        "other = start_driver('local[1]', 'early', {'spark.driver.memory': '1g'})\n"
        "other.take()\n"
        "first = other.gateway.proc.pid\n"
        "s = get_spark('local[1]', app_name='early', sql=False, launch=other)\n"
        "print('OTHER', s.sparkContext._gateway.proc.pid != first, psutil.pid_exists(first) and "
        "psutil.Process(first).status() != psutil.STATUS_ZOMBIE)\n"
        "stop_spark(s)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SAME True True" in r.stdout and "SUM 45" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "OTHER True False" in r.stdout, r.stdout + r.stderr[-2000:]
    for notice in ("Using Spark's default log4j profile", "Setting default log level", "NativeCodeLoader"):
        assert notice not in r.stderr, r.stderr[-2000:]


def test_a_names_error_comes_first_and_stops_the_jvm_started_early(tmp_path):
    """`idia mine` starts its driver JVM while it parses the names; a bad names file is still the first thing the
    command says (no Spark line before it), it exits 2, and the JVM started for it is gone."""
    import uuid

    from idia.mine.sample import SampleConfig, generate

    generate(SampleConfig(out=str(tmp_path / "sample"), shards=1, rows_per_shard=200, names=5, seed=1))
    names = tmp_path / "names.csv"
    names.write_text("identity_id,name\na,Ada Lovelace\nb,Ada Lovelace\n", encoding="utf-8")
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_MASTER", "PYSPARK_SUBMIT_ARGS")}
    env["IDIA_TEST_MARK"] = mark
    cmd = [sys.executable, "-m", "pipelines.cli", "mine", "--master", "local[1]", "--out", str(tmp_path / "out")]
    cmd += ["--shards", str(tmp_path / "sample" / "shards"), "--names", str(names)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.splitlines()[0].startswith("idia mine: ") and "duplicates line 2" in r.stderr, r.stderr
    assert "spark" not in r.stderr.lower(), r.stderr
    left = _marked_jvms(mark)
    for p in left:
        p.kill()
    assert not left, "the JVM started early was left running"
