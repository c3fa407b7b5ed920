"""A class-data-sharing (AppCDS) archive for the local-mode driver JVM: ~2 s less start-up on this 2-core machine.

A local Spark driver loads and verifies some ten thousand classes one by one at every start. Java's dynamic CDS maps
them from one archive file instead. The first local run of a given Spark + Java writes the archive when its JVM
exits (`-XX:ArchiveClassesAtExit`, into a `.partial` file named after the run); a later run promotes it once its
writer is gone and a trial JVM has mapped it without complaint, and every run after that starts with it
(`-XX:SharedArchiveFile`). The archive holds class metadata only (no data), ~70 MB, in
`$IDIA_SPARK_CDS_DIR` (default `~/.cache/idia/spark-cds`), where the KEEP archives used last stay and partial ones
whose run is gone are dropped. `IDIA_SPARK_CDS=0` turns it off. An archive the JVM
cannot use (another JDK, other options) is ignored by the JVM itself; nothing here ever makes a run fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

#: The first 4 bytes of a dynamic archive (little-endian), written with its header after everything else.
DYNAMIC_MAGIC = (0xF00BABA8).to_bytes(4, "little")
#: Keep the JVM quiet about an archive it cannot use (it then starts without it, as it would anyway).
QUIET = "-Xlog:cds=off,cds+dynamic=off"
STALE_S = 3600  # a partial archive without its run's record this old: its run died before writing one
#: Archives kept, the most recently used first (~70 MB each): one per Spark + Java + driver-options combination.
KEEP = 3


def cache_dir() -> Path:
    return Path(os.environ.get("IDIA_SPARK_CDS_DIR") or Path.home() / ".cache" / "idia" / "spark-cds")


def archive_key(java_options: str) -> str:
    """Spark's version and jars, the Java found, and the driver's Java options: one archive per combination."""
    import shutil

    import pyspark

    home = Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)
    jars = sorted(p.name for p in (home / "jars").glob("*.jar"))
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    java_id = f"{os.path.realpath(java)}:{os.stat(java).st_mtime_ns}" if java and os.path.exists(java) else "none"
    text = json.dumps([pyspark.__version__, str(home), jars, java_id, java_options.split()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def driver_options(java_options: str) -> str:
    """Options to add to the local driver's `spark.driver.extraJavaOptions`: use the archive, or have this run write
    it, or nothing (turned off, a run writing it now, or no cache folder)."""
    if os.environ.get("IDIA_SPARK_CDS", "1") == "0":
        return ""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        key = archive_key(java_options)
        final = folder / f"{key}.jsa"
        if not final.exists():
            _promote(folder, key, final)
        _prune(folder, key)
        if final.exists():
            Path(f"{final}.json").touch()  # last used: what _prune keeps
            return f"-XX:SharedArchiveFile={final} {QUIET}"
        if any(_alive(r) for r in _records(folder, key)):
            return ""  # another run writes it now
        return f"-XX:ArchiveClassesAtExit={folder / f'{key}.{os.getpid()}.partial'} {QUIET}"
    except OSError:
        return ""


def record_writer(spark_context) -> None:
    """After the JVM started: note which JVM writes this run's partial archive, with its Java and class path (the
    trial that later checks the archive must use exactly these)."""
    opts = spark_context.getConf().get("spark.driver.extraJavaOptions", "") or ""
    target = next((o.split("=", 1)[1] for o in opts.split() if o.startswith("-XX:ArchiveClassesAtExit=")), None)
    if not target:
        return
    jvm = spark_context._jvm
    record = {
        "jvm_pid": int(jvm.java.lang.ProcessHandle.current().pid()),
        "java": os.path.join(str(jvm.System.getProperty("java.home")), "bin", "java"),
        "class_path": str(jvm.System.getProperty("java.class.path")),
    }
    try:
        Path(f"{target}.json").write_text(json.dumps(record))
    except OSError:
        pass


def _records(folder: Path, key: str) -> list[dict]:
    out = []
    for meta in folder.glob(f"{key}.*.partial.json"):
        try:
            out.append(json.loads(meta.read_text()) | {"path": str(meta)[: -len(".json")]})
        except (OSError, ValueError):
            continue
    return out


def _alive(record: dict) -> bool:
    try:
        os.kill(int(record["jvm_pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def _promote(folder: Path, key: str, final: Path) -> None:
    """Make a finished partial archive the archive, if a trial JVM maps it cleanly; drop the ones that fail."""
    for record in _records(folder, key):
        if _alive(record):
            continue
        partial = Path(record["path"])
        if _usable(partial, record):
            os.replace(f"{partial}.json", f"{final}.json")  # kept beside it: which Java and class path made it
            os.replace(partial, final)
        else:
            partial.unlink(missing_ok=True)
            Path(f"{partial}.json").unlink(missing_ok=True)
        if final.exists():
            return
    for partial in folder.glob(f"{key}.*.partial"):  # their run died before saying which JVM wrote them
        if not Path(f"{partial}.json").exists() and time.time() - partial.stat().st_mtime > STALE_S:
            partial.unlink(missing_ok=True)


def _last_used(archive: Path) -> float:
    try:
        return Path(f"{archive}.json").stat().st_mtime
    except OSError:
        return archive.stat().st_mtime


def _prune(folder: Path, key: str) -> None:
    """Keep the cache bounded: the KEEP most recently used archives stay (this run's always), and partial archives of
    other combinations are dropped once their writer is gone and STALE_S has passed (this run's are `_promote`'s).
    A JVM that has an archive mapped keeps its mapping when the file goes."""
    finals = sorted(folder.glob("*.jsa"), key=_last_used, reverse=True)
    for old in [f for f in finals if f.name != f"{key}.jsa"][max(0, KEEP - 1) :]:
        old.unlink(missing_ok=True)
        Path(f"{old}.json").unlink(missing_ok=True)
    for partial in folder.glob("*.partial"):
        if partial.name.startswith(f"{key}."):
            continue
        meta = Path(f"{partial}.json")
        try:
            record = json.loads(meta.read_text()) if meta.exists() else None
            stale = time.time() - partial.stat().st_mtime > STALE_S
        except (OSError, ValueError):
            continue
        if stale and (record is None or not _alive(record)):
            partial.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)


def _usable(partial: Path, record: dict) -> bool:
    """Whole (the header, written last, is there) and mapped by a JVM with the writer's class path: a cut-off archive
    would crash a JVM, so it must never be promoted."""
    try:
        with open(partial, "rb") as f:
            if f.read(4) != DYNAMIC_MAGIC:
                return False
        crash_log = partial.with_name(f"{partial.name}.trial-crash.log")  # a cut-off archive crashes the trial JVM
        trial = subprocess.run(
            [
                record["java"],
                f"-XX:SharedArchiveFile={partial}",
                "-Xshare:auto",
                "-Xlog:cds=warning",
                "-Xlog:cds+dynamic=warning",
                f"-XX:ErrorFile={crash_log}",
                "-XX:-CreateCoredumpOnCrash",
                "-cp",
                record["class_path"],
                "-version",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=partial.parent,
        )
        crash_log.unlink(missing_ok=True)
    except (OSError, subprocess.SubprocessError, KeyError):
        return False
    said = trial.stdout + trial.stderr
    return trial.returncode == 0 and "sharing" in said and "Unable to use" not in said and "failed" not in said
