"""The mining stage's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from idia.core.config import ConfigError, StageConfig, option, storage_option
from idia.mine.match import MODES
from schemas import COLUMN_MAPPINGS


@dataclass
class MineConfig(StageConfig):
    STAGE = "mine"

    shards: list[str] = option(
        default_factory=list,
        required=True,
        metavar="PATH",
        help="caption parquet files, folders or globs on any fsspec filesystem (s3://, gs://, hdfs://)",
    )
    names: str = option("", required=True, help="names file: CSV identity_id,name[,aliases][,sex] or one name a line")
    out: str = option(
        "",
        required=True,
        help="output folder: a path every executor can write (local, a shared filesystem) or an object-store URL "
        "(s3://bucket/prefix, gs://...; s3a:// reads as s3://)",
    )
    match: str = option(
        "normalized",
        choices=MODES,
        help="matching mode: normalized (whole tokens, accents/case folded), paper (the study's search: each name a "
        "case-sensitive regular expression, as pandas str.contains), literal (case-sensitive substring) or fuzzy "
        "(rapidfuzz ratio)",
    )
    also_count: list[str] = option(
        default_factory=list,
        metavar="MODE",
        help="also count captions per identity in these modes, beside the main one (counts_by_mode.parquet; no "
        "manifests); e.g. --match paper --also-count normalized",
    )
    fuzzy_threshold: float = option(90.0, help="rapidfuzz score cut-off for --match fuzzy")
    columns: str = option("laion400m", choices=tuple(sorted(COLUMN_MAPPINGS)), help="input column layout")
    member_min: int = option(1, help="captions needed to count as a member")
    member_max: int = option(300, help="evaluation subset: members seen fewer times than this")
    buckets: int = option(16, help="manifest buckets (CRC-32 of identity_id)")
    master: str | None = option(
        None,
        execution=True,
        help="Spark master URL (spark://, yarn, k8s://); default: what Spark would use ($SPARK_MASTER, spark-submit's "
        "--master, spark.master in spark-defaults.conf), else local[*]",
    )
    log_level: str = option(
        "auto",
        execution=True,
        choices=("auto", "ERROR", "WARN", "INFO", "DEBUG"),
        help="Spark's log level (auto: ERROR in local mode, WARN on a cluster, where a job waiting for executors says so)",
    )
    executor_env: str | None = option(
        None,
        execution=True,
        help="Python environment archive for the executors (make it with `idia pack-env`): shipped with the job, "
        "executors run ./environment/bin/python from it",
    )
    executor_python: str | None = option(
        None, execution=True, help="a Python every executor node already has (instead of --executor-env)"
    )
    probe_timeout: float = option(
        120.0,
        execution=True,
        help="seconds the executors get to run the import check before the scan on a cluster (0: no check)",
    )
    skip_bad_files: bool = option(
        False, execution=True, help="skip corrupt or truncated parquet files and list them in stats (default: stop)"
    )
    batch_size: int = option(
        65536,
        execution=True,
        help="rows per record batch read by a task: bounds its memory (a few MB of captions at 65,536); fewer, larger "
        "batches cost less per caption (fuzzy mode scores 8,192 at a time within a batch)",
    )
    task_rows: int = option(
        0,
        execution=True,
        help="rows per scan task, whole row groups of one file (0 = auto: 2 tasks per core, at most 1,000,000 rows)",
    )
    storage_options: dict = storage_option("shards and outputs", "executors")
    spark_conf: dict = option(
        default_factory=dict,
        execution=True,
        flag="--conf",
        metavar="KEY=VALUE",
        help="extra Spark setting (repeatable)",
    )

    def check(self) -> None:
        from idia.core.storage import normalize_url

        # s3a:// and s3:// name the same objects: recorded one way, so either resumes the other's run.
        self.shards = [normalize_url(x) for x in self.shards]
        self.out = normalize_url(self.out)
        bad = [m for m in self.also_count if m not in MODES]
        if bad:
            raise ConfigError(f"mine: also_count: unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
        if self.match in self.also_count or len(set(self.also_count)) != len(self.also_count):
            raise ConfigError(f"mine: also_count {self.also_count} repeats a mode or the main one ({self.match})")
        if not 1 <= self.buckets <= 4096:
            raise ConfigError(f"mine: buckets must be in 1..4096, got {self.buckets}")
        if self.member_min < 1:
            raise ConfigError(f"mine: member_min must be >= 1, got {self.member_min}")
        if self.member_max <= self.member_min:
            raise ConfigError(f"mine: member_max ({self.member_max}) must exceed member_min ({self.member_min})")
        if not 0 < self.fuzzy_threshold <= 100:
            raise ConfigError(f"mine: fuzzy_threshold must be in (0, 100], got {self.fuzzy_threshold}")
        if self.batch_size < 1:
            raise ConfigError("mine: batch_size must be >= 1")
        if self.executor_env and self.executor_python:
            raise ConfigError("mine: give --executor-env or --executor-python, not both")
        if self.probe_timeout < 0:
            raise ConfigError("mine: probe_timeout must be >= 0")
        if self.task_rows < 0:
            raise ConfigError("mine: task_rows must be >= 0 (0 = auto)")
