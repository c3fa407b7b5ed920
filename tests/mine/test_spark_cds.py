"""The local driver's class-data-sharing archive (jobs/spark_cds.py): written by a first run, checked, then used; a
cut-off or foreign archive is never used; turned off by IDIA_SPARK_CDS=0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from idia.mine.sample import SampleConfig, generate
from jobs import spark_cds

ROOT = Path(__file__).resolve().parents[2]


def _mine(sample: Path, out: Path, cds_dir: Path) -> dict:
    env = os.environ | {"IDIA_SPARK_CDS_DIR": str(cds_dir)}
    args = ["--shards", str(sample / "shards"), "--names", str(sample / "names.csv"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "mine", *args, "--master", "local[1]", "--force"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = (done.stdout + done.stderr).lower()
    assert "[cds" not in said and "shared archive" not in said  # the JVM keeps quiet about its archive
    return json.loads((out / "counts.parquet").with_name("stats.json").read_text())


def _wait_for_writer(cds_dir: Path) -> None:
    """The first run's JVM writes the archive as it exits, after the command returned."""
    records = list(cds_dir.glob("*.partial.json"))
    assert records, list(cds_dir.iterdir())
    pid = json.loads(records[0].read_text())["jvm_pid"]
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError("the JVM writing the archive did not exit")


def test_the_first_run_writes_the_archive_the_next_uses_it_and_the_outputs_are_the_same(tmp_path):
    sample = tmp_path / "s"
    generate(SampleConfig(out=str(sample), shards=2, rows_per_shard=500, names=10, seed=3))
    cds = tmp_path / "cds"
    first = _mine(sample, tmp_path / "a", cds)
    _wait_for_writer(cds)
    assert not list(cds.glob("*.jsa"))  # not trusted until checked
    second = _mine(sample, tmp_path / "b", cds)
    archives = list(cds.glob("*.jsa"))
    assert len(archives) == 1 and not list(cds.glob("*.partial*"))  # (beside it: <key>.jsa.json, its record)
    assert archives[0].read_bytes()[:4] == spark_cds.DYNAMIC_MAGIC
    counts = {k: v for k, v in first["totals"].items() if k != "task_ms"}
    assert counts == {k: v for k, v in second["totals"].items() if k != "task_ms"}
    assert (tmp_path / "a" / "counts.parquet").read_bytes() == (tmp_path / "b" / "counts.parquet").read_bytes()

    # A cut-off copy of a good archive (its header intact) would crash a JVM: the trial run refuses it.
    key = archives[0].stem
    cut = cds / f"{key}.999999.partial"
    cut.write_bytes(archives[0].read_bytes()[: archives[0].stat().st_size // 2])
    record = json.loads((cds / f"{key}.jsa.json").read_text())  # the Java and class path that made it
    assert spark_cds._usable(archives[0], record)
    assert not spark_cds._usable(cut, record)
    left = sorted(p.name for p in cds.iterdir())
    assert left == sorted([archives[0].name, f"{key}.jsa.json", cut.name])  # and no crash log or core file


def test_partial_archives_are_promoted_only_when_whole_and_their_writer_is_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("IDIA_SPARK_CDS_DIR", str(tmp_path))
    key = spark_cds.archive_key("-XX:TieredStopAtLevel=1")
    opts = spark_cds.driver_options("-XX:TieredStopAtLevel=1")
    assert f"-XX:ArchiveClassesAtExit={tmp_path / f'{key}.{os.getpid()}.partial'}" in opts

    # A writer still running (this process stands in for its JVM): nobody else writes, nothing is promoted.
    partial = tmp_path / f"{key}.{os.getpid()}.partial"
    partial.write_bytes(b"\0" * 64)
    Path(f"{partial}.json").write_text(json.dumps({"jvm_pid": os.getpid(), "java": "java", "class_path": ""}))
    assert spark_cds.driver_options("-XX:TieredStopAtLevel=1") == ""
    assert partial.exists()

    # Its writer gone and no header: dropped, and this run writes a new one.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    Path(f"{partial}.json").write_text(json.dumps({"jvm_pid": int(dead.stdout), "java": "java", "class_path": ""}))
    assert "-XX:ArchiveClassesAtExit=" in spark_cds.driver_options("-XX:TieredStopAtLevel=1")
    assert not partial.exists() and not Path(f"{partial}.json").exists()

    # Other Java options, another archive; turned off, nothing at all.
    assert spark_cds.archive_key("-Xmx8g") != key
    monkeypatch.setenv("IDIA_SPARK_CDS", "0")
    assert spark_cds.driver_options("-XX:TieredStopAtLevel=1") == ""


def test_the_cache_keeps_the_most_recently_used_archives_and_drops_dead_runs_partials(tmp_path):
    now = time.time()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited

    def put(name: str, age_s: float, record: dict | None = None) -> Path:
        f = tmp_path / name
        f.write_bytes(b"x")
        os.utime(f, (now - age_s, now - age_s))
        if record is not None or name.endswith(".jsa"):
            meta = tmp_path / f"{name}.json"
            meta.write_text(json.dumps(record or {}))
            os.utime(meta, (now - age_s, now - age_s))
        return f

    finals = {k: put(f"{k}.jsa", age) for k, age in (("a", 400), ("b", 300), ("c", 200), ("d", 100), ("cur", 500))}
    old = 2 * spark_cds.STALE_S
    gone = put("other.1.partial", old, {"jvm_pid": dead_pid})  # its writer exited long ago
    fresh = put("other.2.partial", 10, {"jvm_pid": dead_pid})  # too recent to judge
    writing = put("other.3.partial", old, {"jvm_pid": os.getpid()})  # its writer still runs
    orphan = put("other.4.partial", old)  # its run died before saying which JVM wrote it
    mine = put("cur.5.partial", old, {"jvm_pid": dead_pid})  # this combination's: promotion decides
    spark_cds._prune(tmp_path, "cur")
    left = {p.name for p in tmp_path.iterdir()}
    # this run's archive and the KEEP - 1 others used last stay; the rest go with their records
    assert {k for k, f in finals.items() if f.name in left} == {"cur", "d", "c"}
    assert "a.jsa.json" not in left and "b.jsa.json" not in left and "d.jsa.json" in left
    assert gone.name not in left and orphan.name not in left and f"{gone.name}.json" not in left
    assert {fresh.name, writing.name, mine.name} <= left
