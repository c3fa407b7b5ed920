"""Spark job: scan LAION caption shards for a names list -> counts.parquet, manifests/, identity_lists/, stats.json.

Two stages. Scan: each work unit (consecutive row groups of one file, --task-rows) is one task; record batches stream
through one Aho-Corasick matcher built once per Python worker process, and the task stages its match rows in an
Arrow IPC file beside the output (memory is bounded by a record batch and a flush of staged rows, never by a shard).
Merge: one task per core, each sorting and writing its share of the manifest buckets. Footers are checked on the
driver first, so a missing column or a corrupt file is reported by name before any work starts; a killed run reuses every unit it finished. Works as `idia mine ...` and
as `spark-submit jobs/mine.py ...`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

if __name__ == "__main__":  # spark-submit jobs/mine.py: make the project importable, then go through the CLI
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from idia.atomic import mark_done, read_done, write_json, write_parquet
from idia.config import ConfigError, to_dict
from idia.errors import InputFileError, UserError
from idia.identity_lists import bin_table, bucket_array, build_identity_list, write_identity_lists
from idia.matching import MODES, Matcher, empty_mask
from idia.names import parse_names
from idia.stats import AccountingError, Stats, check_sum
from jobs.spark_session import spark_progress
from schemas import COLUMN_MAPPINGS, COUNTS, LAION_400M, MANIFEST
from schemas.validate import map_columns

GLOB_CHARS = set("*?[")


@dataclass
class MineConfig:
    shards: list[str]
    names: str
    out: str
    match: str = "normalized"
    fuzzy_threshold: float = 90.0
    columns: str = "laion400m"
    member_min: int = 1
    member_max: int = 300
    buckets: int = 16
    master: str | None = None
    skip_bad_files: bool = False
    batch_size: int = 8192
    task_rows: int = 0  # rows per scan task (whole row groups of one file); 0 = auto
    force: bool = False
    spark_conf: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not self.shards:
            raise ConfigError("mine: no --shards given")
        if self.match not in MODES:
            raise ConfigError(f"mine: match must be one of {', '.join(MODES)}, got {self.match!r}")
        if self.columns not in COLUMN_MAPPINGS:
            raise ConfigError(f"mine: columns must be one of {', '.join(COLUMN_MAPPINGS)}, got {self.columns!r}")
        if self.buckets < 1 or self.buckets > 4096:
            raise ConfigError(f"mine: buckets must be in 1..4096, got {self.buckets}")
        if self.member_min < 1:
            raise ConfigError(f"mine: member_min must be >= 1, got {self.member_min}")
        if self.member_max <= self.member_min:
            raise ConfigError(f"mine: member_max ({self.member_max}) must exceed member_min ({self.member_min})")
        if not 0 < self.fuzzy_threshold <= 100:
            raise ConfigError(f"mine: fuzzy_threshold must be in (0, 100], got {self.fuzzy_threshold}")
        if self.batch_size < 1:
            raise ConfigError("mine: batch_size must be >= 1")
        if self.task_rows < 0:
            raise ConfigError("mine: task_rows must be >= 0 (0 = auto)")


# --------------------------------------------------------------------------------------------- inputs
def resolve_inputs(patterns: list[str]) -> list[str]:
    """Expand paths/globs on any fsspec filesystem into a sorted, de-duplicated list of file URLs."""
    import fsspec.core

    files: list[str] = []
    for pat in patterns:
        try:
            fs, path = fsspec.core.url_to_fs(pat)
        except (ImportError, ValueError) as exc:
            raise UserError(f"{pat}: cannot open this filesystem: {exc}") from None
        if GLOB_CHARS & set(path):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not found:
                raise UserError(f"{pat}: no input files match this pattern")
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
            if not found:
                raise UserError(f"{pat}: folder holds no .parquet files")
        elif fs.exists(path):
            found = [path]
        else:
            raise UserError(f"{pat}: input file not found")
        proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files += [p if proto in ("file", "local") else fs.unstrip_protocol(p) for p in found]
    return list(dict.fromkeys(files))


def _open(url: str):
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(url)
    return fs.open(path, "rb")


def inspect_footers(files: list[str], mapping: dict, skip_bad: bool) -> tuple[list[dict], list[dict]]:
    """Read every footer on the driver: row counts per row group, and the schema checked against the mapping."""
    ok, bad = [], []
    for index, url in enumerate(files):
        try:
            with _open(url) as f:
                pf = pq.ParquetFile(f)
                schema = pf.schema_arrow
                md = pf.metadata
                rgs = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
                size = f.seek(0, os.SEEK_END)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt or truncated files
            reason = f"not a readable parquet file ({type(exc).__name__}: {exc})"
            if not skip_bad:
                raise InputFileError(f"{url}: {reason}; use --skip-bad-files to skip it") from None
            bad.append({"file": url, "reason": reason})
            continue
        # Missing column / wrong type is the user's layout choice (--columns): always an error, never skipped.
        map_columns(schema.empty_table(), mapping, LAION_400M, url)
        # index: position in the run's file list; size and footer: what staged units of this file depend on.
        ok.append({"file": url, "index": index, "size": size, "footer_bytes": md.serialized_size, "row_groups": rgs, "rows": sum(rgs)})
    return ok, bad


# --------------------------------------------------------------------------------------------- executors
# Two Spark stages, no Spark shuffle. Scan: one task per work unit (consecutive row groups of one file) matches
# captions and stages its match rows in one Arrow IPC file next to the output (one record batch per bucket per
# flush), plus a JSON done-marker with its counts; only that small stats row goes back through Spark. Merge: one task
# per core, each a set of buckets, reads a bucket's record batches from every staged unit (memory-mapped), sorts them
# and writes the bucket's manifest. Match rows never pass through the JVM: converting them to Spark rows and
# shuffling them cost more than the matching itself on small machines (BENCHMARKS.md), and the staged units make a
# killed run resumable per unit. Staging is IPC, not parquet: it is read once, by the merge, and parquet's encoding
# and statistics cost ~8% of a scan task here.

#: Match rows staged by a scan task (the manifest's columns, minus those the merge adds, plus the sort keys).
STAGED = pa.schema(
    [
        pa.field("file_index", pa.int32()),  # index into the run's input file list
        pa.field("row_number", pa.int64()),  # row position in its file: the deterministic sort key
        pa.field("identity_index", pa.int32()),
        pa.field("bucket", pa.int32()),
        *[f for f in MANIFEST if f.name not in ("identity_id", "source_file")],
    ]
)
_MATCH_COLS = ["SAMPLE_ID", "URL", "TEXT", "WIDTH", "HEIGHT", "NSFW", "similarity"]
_COUNTERS = ("rows_read", "null_or_empty", "matched", "unmatched", "match_pairs", "matcher_builds", "units_resumed", "task_ms")

#: What a scan task returns to the driver: one row per work unit.
UNIT_STATS = pa.schema(
    [
        pa.field("unit", pa.int32()),
        pa.field("file_index", pa.int32()),
        *[pa.field(k, pa.int64()) for k in _COUNTERS],
        pa.field("path", pa.string()),  # the staged match rows (null when the unit matched nothing)
        pa.field("bucket_batches", pa.string()),  # JSON {bucket: [record batch, ...]} in the staged file
        pa.field("error", pa.string()),
    ]
)

#: What a merge task returns: per identity in its bucket the counts, and one row for the manifest file written.
MERGED = pa.schema(
    [
        pa.field("bucket", pa.int32()),
        pa.field("n_captions", pa.int64()),  # manifest rows written for the bucket
        pa.field("path", pa.string()),
        pa.field("counts", pa.binary()),  # Arrow IPC stream of BUCKET_COUNTS: one row per identity in the bucket
    ]
)
#: Per identity counts of one bucket, shipped as Arrow IPC (100k Python dicts through Spark cost ~1 s of driver time).
BUCKET_COUNTS = pa.schema(
    [
        pa.field("identity_index", pa.int32()),
        pa.field("n_captions", pa.int64()),
        pa.field("n_unique_urls", pa.int64()),
    ]
)
#: Manifest columns written with dictionary encoding (few distinct values per bucket).
_DICT_COLS = ["identity_id", "matched_alias", "source_file"]
#: Staged match rows held in memory before a scan task writes them out (bounds a task's memory with the batch).
FLUSH_ROWS = 65536

_MATCHERS: dict[str, tuple] = {}


def _matcher(payload: dict, st: Stats | None = None) -> tuple:
    """The matcher for this payload, built once per Python worker process (workers are reused)."""
    key = payload["key"]
    hit = _MATCHERS.get(key)
    if hit is None:
        if st is not None:
            st["matcher_builds"] += 1
        ids = pa.ipc.open_stream(payload["identities"]).read_all()
        ident_ids = ids.column("identity_id").to_pylist()
        hit = (Matcher(ids, payload["mode"], payload["threshold"]), bucket_array(ident_ids, payload["buckets"]))
        _MATCHERS.clear()
        _MATCHERS[key] = hit
    return hit


def unit_name(file_index: int, rg0: int, rg1: int) -> str:
    return f"u{file_index:06d}-rg{rg0:06d}-{rg1:06d}"


class _StagedWriter:
    """Staged match rows of one unit (Arrow IPC file): held per bucket, flushed every FLUSH_ROWS rows as one record
    batch per bucket."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.pending: dict[int, list[pa.RecordBatch]] = {}
        self.n_pending = 0
        self.batches: dict[int, list[int]] = {}
        self.n_batches = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Add match rows already ordered by bucket (rows of one bucket contiguous)."""
        b = batch.column(STAGED.get_field_index("bucket")).to_numpy()
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        for s, e in zip(starts, [*starts[1:], len(b)]):
            self.pending.setdefault(int(b[s]), []).append(batch.slice(s, e - s))
        self.n_pending += batch.num_rows
        if self.n_pending >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.n_pending:
            return
        if self.writer is None:
            self.writer = pa.ipc.new_file(self.tmp, STAGED)
        for bucket in sorted(self.pending):
            self.writer.write_batch(pa.concat_batches(self.pending[bucket]))
            self.batches.setdefault(bucket, []).append(self.n_batches)
            self.n_batches += 1
        self.pending, self.n_pending = {}, 0

    def close(self) -> str | None:
        self.flush()
        if self.writer is None:
            return None
        self.writer.close()
        os.replace(self.tmp, self.path)
        return str(self.path)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def scan_unit(payload: dict, unit: int) -> dict:
    """Match one work unit (row groups rg0..rg1 of a file) and stage its match rows; returns its stats row (with the error, if any).

    A unit whose done-marker exists in the staging folder (a killed run's finished work) is not read again.
    """
    file_index, rg0, rg1, first_row, n_rows = payload["units"][unit]
    url = payload["files"][file_index]
    units_dir = Path(payload["staging"]) / "units"
    name = unit_name(file_index, rg0, rg1)
    marker = units_dir / f"{name}.json"
    row = {"unit": unit, "file_index": file_index, "path": None, "bucket_batches": "{}", "error": None}
    if marker.exists():
        try:
            done = json.loads(marker.read_text())
            if done["rows_read"] == n_rows and (done["path"] is None or Path(done["path"]).exists()):
                return row | {k: 0 for k in _COUNTERS} | {k: done[k] for k in _COUNTERS if k in done} | {
                    "path": done["path"], "bucket_batches": done["bucket_batches"],
                    "matcher_builds": 0, "task_ms": 0, "units_resumed": 1}
        except (ValueError, KeyError, OSError):
            pass  # an unreadable marker: redo the unit
    # Only the columns the manifest keeps are read (LICENSE and unmapped extras are not).
    mapping = {k: v for k, v in COLUMN_MAPPINGS[payload["columns"]].items() if k in _MATCH_COLS}
    src_cols = sorted({c for c in mapping.values() if c is not None})
    schema = pa.schema([LAION_400M.field(c) for c in _MATCH_COLS])
    st = Stats()
    t_start = time.perf_counter()
    matcher, buckets = _matcher(payload, st)
    units_dir.mkdir(parents=True, exist_ok=True)
    out = _StagedWriter(units_dir / f"{name}.arrow")
    try:
        with _open(url) as f:
            pf = pq.ParquetFile(f)
            row0 = first_row
            for batch in pf.iter_batches(
                batch_size=payload["batch_size"], row_groups=range(rg0, rg1 + 1), columns=src_cols, use_threads=False
            ):
                tbl = map_columns(pa.Table.from_batches([batch]), mapping, schema, url)
                n = tbl.num_rows
                texts = tbl.column("TEXT").combine_chunks()
                n_empty = int(empty_mask(texts).sum()) if n else 0
                m = matcher.match(texts)
                rows = m.column("row").to_numpy()
                n_matched = int(np.count_nonzero(np.diff(rows))) + 1 if len(rows) else 0  # rows come sorted
                st.update(rows_read=n, null_or_empty=n_empty, matched=n_matched, match_pairs=len(rows))
                st["unmatched"] += n - n_empty - n_matched
                if len(rows):
                    per_row = np.bincount(rows, minlength=n)  # identities named in each caption
                    # Bucket runs (row order kept inside each), so the staged writer can slice without sorting.
                    m = m.take(np.argsort(buckets[m.column("identity_index").to_numpy()], kind="stable"))
                    rows, ident = m.column("row").to_numpy(), m.column("identity_index").to_numpy()
                    taken = tbl.take(pa.array(rows))
                    cols = {
                        "file_index": pa.array(np.full(len(rows), file_index, np.int32)),
                        "row_number": pa.array(rows + row0),
                        "identity_index": pa.array(ident.astype(np.int32)),
                        "bucket": pa.array(buckets[ident]),
                        "matched_alias": m.column("matched_alias").combine_chunks(),
                        "match_score": m.column("match_score").combine_chunks(),
                        "n_identities_in_caption": pa.array(per_row[rows].astype(np.int32)),
                    }
                    cols.update({c: taken.column(c).combine_chunks() for c in _MATCH_COLS})
                    out.add(pa.RecordBatch.from_arrays([cols[f.name] for f in STAGED], schema=STAGED))
                row0 += n
        path = out.close()
    except Exception as exc:  # reported to the driver, which names the file (or skips it with --skip-bad-files)
        out.abort()
        st["task_ms"] = int((time.perf_counter() - t_start) * 1000)
        return row | {k: int(st[k]) for k in _COUNTERS} | {
            "error": f"row group {rg0}{f'-{rg1}' if rg1 > rg0 else ''}: {type(exc).__name__}: {exc}"}
    st["task_ms"] = int((time.perf_counter() - t_start) * 1000)
    row |= {k: int(st[k]) for k in _COUNTERS} | {"path": path, "bucket_batches": json.dumps(out.batches)}
    write_json({k: row[k] for k in (*_COUNTERS, "path", "bucket_batches")}, marker)
    return row


def merge_buckets(payload: dict, task: int) -> list[dict]:
    """Merge task `task`: the buckets b with b % merge_tasks == task, one after another (memory: one bucket)."""
    # Built once per task, shared by its buckets: staged files (memory-mapped), the id/file lookups, identity ranks.
    ctx = {
        "opened": {},
        "ids": pa.array(payload["identity_ids"], pa.string()),
        "files": pa.array(payload["files"], pa.string()),
        "rank": np.asarray(payload["identity_rank"], np.int64),
    }
    rows: list[dict] = []
    for bucket in range(task, payload["buckets"], payload["merge_tasks"]):
        rows += merge_bucket(payload, bucket, ctx)
    return rows


def merge_bucket(payload: dict, bucket: int, ctx: dict) -> list[dict]:
    """Gather one bucket's rows from every staged unit, sort them (identity_id, file, row), write its manifest.

    An identity's rows all sit in its one bucket, so its unique-URL count is exact here.
    """
    opened = ctx["opened"]
    parts = []
    for path, batches in payload["parts"]:
        ours = batches.get(bucket)
        if ours:
            if path not in opened:
                opened[path] = pa.ipc.open_file(pa.memory_map(path))
            parts += [opened[path].get_batch(i) for i in ours]
    if not parts:
        return []
    t = pa.Table.from_batches(parts, schema=STAGED)
    # Sort on integers: the identity's rank in identity_id order stands in for the string.
    rank = ctx["rank"][t.column("identity_index").to_numpy()]
    order = np.lexsort((t.column("row_number").to_numpy(), t.column("file_index").to_numpy(), rank))
    t = t.take(pa.array(order))
    t = t.append_column("identity_id", pc.take(ctx["ids"], t.column("identity_index")))
    t = t.append_column("source_file", pc.take(ctx["files"], t.column("file_index")))
    # Per identity (contiguous after the sort): rows, and distinct non-null URLs as distinct (identity, URL code) pairs.
    ident = t.column("identity_index").to_numpy()
    starts = np.flatnonzero(np.r_[True, ident[1:] != ident[:-1]])
    n_caps = np.diff(np.r_[starts, len(ident)])
    url = pc.dictionary_encode(t.column("URL").combine_chunks())
    code = pc.fill_null(url.indices, -1).to_numpy().astype(np.int64)
    width = max(len(url.dictionary), 1)
    pairs = np.unique(ident[code >= 0].astype(np.int64) * width + code[code >= 0])
    with_urls, n_with = np.unique(pairs // width, return_counts=True)  # ascending identity index
    firsts = ident[starts]  # the bucket's identities, in rank order
    by_index = np.argsort(firsts)
    n_urls = np.zeros(len(firsts), np.int64)
    n_urls[by_index[np.searchsorted(firsts[by_index], with_urls)]] = n_with
    counts = pa.table([pa.array(firsts, pa.int32()), pa.array(n_caps, pa.int64()), pa.array(n_urls)], schema=BUCKET_COUNTS)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, BUCKET_COUNTS) as w:
        w.write_table(counts)
    path = Path(payload["staging"]) / "manifests" / f"bucket={bucket:03d}" / "part-00000.parquet"
    # Dictionary encoding only where values repeat: captions and URLs are near-unique in LAION, so trying a
    # dictionary for them costs write time (~30% here) for nothing.
    write_parquet(t.select(MANIFEST.names).cast(MANIFEST), path, row_group_size=16384, use_dictionary=_DICT_COLS)
    return [{"bucket": bucket, "n_captions": t.num_rows, "path": str(path), "counts": sink.getvalue().to_pybytes()}]


def _run_tasks(fn, bcast, indices: Iterator[int]) -> Iterator[dict]:
    """Partition body: each element is a task index; fn(payload, index) -> one row dict or a list of them."""
    payload = bcast.value
    for i in indices:
        out = fn(payload, int(i))
        yield from (out if isinstance(out, list) else [out])


# --------------------------------------------------------------------------------------------- driver
#: Upper bound of an automatic scan task: ~5 s of matching per core here, so stragglers stay short.
AUTO_TASK_ROWS = 1_000_000


def task_rows_for(good: list[dict], cores: int, task_rows: int) -> int:
    """Rows per scan task: the configured number, or (0 = auto) enough tasks for 2 per core, at most AUTO_TASK_ROWS.

    Each Python task costs Spark a fixed ~50-70 ms here (BENCHMARKS.md), so a task per small row group wastes time.
    """
    if task_rows:
        return task_rows
    total = sum(g["rows"] for g in good)
    return max(1, min(AUTO_TASK_ROWS, -(-total // max(1, 2 * cores))))


def _units(good: list[dict], task_rows: int) -> list[tuple[int, int, int, int, int]]:
    """Work units, one Spark task each: (file index, first row group, last row group, first row, rows).

    Consecutive row groups of one file are grouped while the unit stays within task_rows (a row group is never split).
    """
    units = []
    for info in good:
        first = 0
        cur: list | None = None
        for rg, n in enumerate(info["row_groups"]):
            if cur is not None and cur[4] + n <= task_rows:
                cur[2], cur[4] = rg, cur[4] + n
            else:
                if cur is not None:
                    units.append(tuple(cur))
                cur = [info["index"], rg, rg, first, n]
            first += n
        if cur is not None:
            units.append(tuple(cur))
    return units


def _stage(spark, payload: dict, n_tasks: int, fn, schema: pa.Schema, what: str) -> list[dict]:
    """One Spark job of n_tasks tasks (one partition each) running fn on the executors; returns their rows.

    A plain RDD job: the tasks read and write files themselves and return a few small rows, so a DataFrame plan
    would add only query compilation (the JVM's JIT compiling generated code took 10-20% of 2 cores here).
    """
    if n_tasks == 0:
        return []
    bcast = spark.sparkContext.broadcast(payload)
    try:
        rdd = spark.sparkContext.parallelize(range(n_tasks), n_tasks).mapPartitions(functools.partial(_run_tasks, fn, bcast))
        with spark_progress(spark, what, n_tasks):
            rows = rdd.collect()
    finally:
        bcast.destroy()
    return pa.Table.from_pylist(rows, schema=schema).to_pylist()  # every row checked against the stage's schema


def _fingerprint(cfg: MineConfig, files: list[str], names_sha: str) -> str:
    keep = {k: v for k, v in to_dict(cfg).items() if k not in ("master", "force", "spark_conf", "out")}
    return hashlib.sha256(json.dumps([keep, files, names_sha], sort_keys=True).encode()).hexdigest()[:16]


def run_mine(cfg: MineConfig, spark=None) -> dict:
    """Run the mining job; returns the stats dict also written to OUT/stats.json."""
    t0 = time.time()
    cfg.validate()
    out = Path(cfg.out)
    timings = {}
    identities, name_stats = parse_names(cfg.names)
    timings["names_s"] = round(time.time() - t0, 3)
    files = resolve_inputs(cfg.shards)
    names_sha = hashlib.sha256(Path(cfg.names).read_bytes()).hexdigest()
    fp = _fingerprint(cfg, files, names_sha)
    prev = read_done(out, "mine")
    if not cfg.force and prev and prev.get("fingerprint") == fp and (out / "stats.json").exists():
        stats = json.loads((out / "stats.json").read_text())
        stats["resumed"] = True
        return stats

    mapping = COLUMN_MAPPINGS[cfg.columns]
    t_stage = time.time()
    good, bad = inspect_footers(files, mapping, cfg.skip_bad_files)
    timings["footers_s"] = round(time.time() - t_stage, 3)

    # Staged work lives in a folder named after the inputs (files, their sizes and footers) and settings: a killed
    # run's finished units are reused by the next run with the same ones; anything older is cleared.
    stage_fp = hashlib.sha256(json.dumps([fp, good], sort_keys=True).encode()).hexdigest()[:16]
    staging = out / f".mine-staging-{stage_fp}"
    for leftover in [*out.glob(".mine-staging-*"), *out.glob(".manifests.staging-*")] if out.exists() else []:
        if leftover != staging or cfg.force:
            shutil.rmtree(leftover, ignore_errors=True)

    from jobs.spark_session import get_spark

    own_spark = spark is None
    spark = spark or get_spark(cfg.master, app_name="idia-mine", conf={k: str(v) for k, v in cfg.spark_conf.items()})
    spark_master = spark.sparkContext.master
    task_rows = task_rows_for(good, spark.sparkContext.defaultParallelism, cfg.task_rows)
    units = _units(good, task_rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, identities.schema) as w:
        w.write_table(identities)
    ident_bytes = sink.getvalue().to_pybytes()
    payload = {
        "key": hashlib.sha256(ident_bytes + f"{cfg.match}|{cfg.fuzzy_threshold}|{cfg.buckets}".encode()).hexdigest(),
        "identities": ident_bytes,
        "mode": cfg.match,
        "threshold": cfg.fuzzy_threshold,
        "buckets": cfg.buckets,
        "columns": cfg.columns,
        "batch_size": cfg.batch_size,
        "files": files,
        "units": units,
        "staging": str(staging.resolve()),
    }
    try:
        staging.mkdir(parents=True, exist_ok=True)
        t_stage = time.time()
        stats_rows = _stage(spark, payload, len(units), scan_unit, UNIT_STATS, "mine: scan")
        timings["scan_s"] = round(time.time() - t_stage, 3)
        # Per-unit errors (a corrupt page in a file whose footer was fine): name the file, or skip the file whole.
        errors = sorted((r for r in stats_rows if r["error"]), key=lambda r: (r["file_index"], r["unit"]))
        if errors and not cfg.skip_bad_files:
            raise InputFileError(
                f"{files[errors[0]['file_index']]}: cannot read: {errors[0]['error']}; use --skip-bad-files to skip it"
            )
        bad_idx = {r["file_index"] for r in errors}
        for fi in sorted(bad_idx):
            bad.append({"file": files[fi], "reason": next(r["error"] for r in errors if r["file_index"] == fi)})
        good = [g for g in good if g["index"] not in bad_idx]
        stats_rows = [r for r in stats_rows if r["file_index"] not in bad_idx]
        parts = sorted(
            (r["path"], {int(b): rgs for b, rgs in json.loads(r["bucket_batches"]).items()})
            for r in stats_rows if r["path"]
        )
        (staging / "manifests").mkdir(exist_ok=True)
        t_stage = time.time()
        merge_tasks = min(cfg.buckets, spark.sparkContext.defaultParallelism) if parts else 0
        rank = np.empty(identities.num_rows, np.int64)  # each identity's place in identity_id order
        rank[pc.sort_indices(identities.column("identity_id")).to_numpy()] = np.arange(identities.num_rows)
        merged = _stage(
            spark,
            {**payload, "units": None, "identities": None, "parts": parts, "merge_tasks": merge_tasks,
             "identity_ids": identities.column("identity_id").to_pylist(), "identity_rank": rank.tolist()},
            merge_tasks, merge_buckets, MERGED, "mine: merge",
        )
        timings["merge_s"] = round(time.time() - t_stage, 3)
    finally:
        if own_spark and os.environ.get("IDIA_KEEP_SPARK") != "1":
            spark.stop()
    bucket_rows = sorted(merged, key=lambda r: r["bucket"])

    # ---- accounting: every row of every good file is read once, and rows = null/empty + unmatched + matched
    per_file: dict[str, dict] = {}
    for r in stats_rows:
        d = per_file.setdefault(files[r["file_index"]], Stats())
        d.update({k: int(r[k]) for k in _COUNTERS})
    for info in good:
        d = per_file.setdefault(info["file"], Stats())
        if d["rows_read"] != info["rows"]:
            raise AccountingError(f"{info['file']}: read {d['rows_read']} rows, footer says {info['rows']}")
        check_sum(d["rows_read"], {k: d[k] for k in ("null_or_empty", "unmatched", "matched")}, info["file"])
    totals = Stats.merge(per_file.values())
    manifest_rows = sum(r["n_captions"] for r in bucket_rows)
    check_sum(totals["match_pairs"], {"manifest_rows": manifest_rows}, "match pairs vs manifest rows")

    # ---- counts, in names-file order
    n_cap = np.zeros(identities.num_rows, np.int64)
    n_url = np.zeros(identities.num_rows, np.int64)
    for r in bucket_rows:
        c = pa.ipc.open_stream(r["counts"]).read_all()
        ix = c.column("identity_index").to_numpy()
        n_cap[ix] += c.column("n_captions").to_numpy()  # an identity sits in one bucket: no index repeats here
        n_url[ix] += c.column("n_unique_urls").to_numpy()
    check_sum(totals["match_pairs"], {"sum_n_captions": int(n_cap.sum())}, "match pairs vs counts")
    counts = pa.Table.from_arrays(
        [
            identities.column("identity_id"),
            identities.column("name"),
            pa.array(n_cap),
            pa.array(n_url),
            pa.array([cfg.match] * identities.num_rows, pa.string()),
        ],
        schema=COUNTS,
    )

    t_stage = time.time()
    # ---- outputs (manifests swapped in whole, the rest file by file; stats.json and the marker last)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "manifests"
    old = out / f".manifests.old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.replace(final, old)
    os.replace(staging / "manifests", final)
    shutil.rmtree(old, ignore_errors=True)
    write_parquet(counts, out / "counts.parquet")
    write_parquet(identities.replace_schema_metadata(None), out / "identities.parquet")
    lists = build_identity_list(counts, cfg.member_min, cfg.member_max)
    sizes = write_identity_lists(lists, out / "identity_lists")
    resolved = to_dict(cfg)
    resolved["input_files"] = files
    write_json(resolved, out / "config.json")
    n_with = int((n_cap > 0).sum())
    timings["outputs_s"] = round(time.time() - t_stage, 3)
    stats = {
        "files": {k: v.to_dict() for k, v in sorted(per_file.items())},
        "skipped_files": bad,
        "totals": {
            "files_in": len(files),
            "files_read": len(per_file),
            "files_skipped": len(bad),
            **totals.to_dict(),
            "manifest_rows": manifest_rows,
            "identities": identities.num_rows,
            "identities_with_match": n_with,
            "identities_without_match": identities.num_rows - n_with,
        },
        "names_file": {"path": str(cfg.names), **name_stats.to_dict()},
        "identity_lists": sizes,
        "bins": bin_table(lists),
        "buckets_written": len(bucket_rows),
        "match_mode": cfg.match,
        "spark_master": spark_master,
        "work_units": len(units),
        "task_rows": task_rows,
        "stage_s": timings,
        "wall_s": round(time.time() - t0, 3),
        "config": resolved,
    }
    check_sum(files and len(files) or 0, {"read": len(per_file), "skipped": len(bad)}, "input files")
    write_json(stats, out / "stats.json")
    mark_done(out, "mine", {"fingerprint": fp})
    shutil.rmtree(staging, ignore_errors=True)
    return stats


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    d = MineConfig(shards=[], names="", out="")
    p.add_argument("--shards", nargs="+", required=True, help="parquet files, folders or globs on any fsspec/Hadoop filesystem")
    p.add_argument("--names", required=True, help="names file: CSV identity_id,name[,aliases][,sex] or one name a line")
    p.add_argument("--out", required=True, help="output folder (a path every executor can write: local or shared FS)")
    p.add_argument("--match", choices=MODES, default=d.match, help="matching mode (see README)")
    p.add_argument("--fuzzy-threshold", type=float, default=d.fuzzy_threshold, help="rapidfuzz score cut-off for --match fuzzy")
    p.add_argument("--columns", choices=sorted(COLUMN_MAPPINGS), default=d.columns, help="input column layout")
    p.add_argument("--member-min", type=int, default=d.member_min, help="captions needed to count as a member")
    p.add_argument("--member-max", type=int, default=d.member_max, help="evaluation subset: count below this")
    p.add_argument("--buckets", type=int, default=d.buckets, help="manifest buckets (hash of identity_id)")
    p.add_argument("--master", default=None, help="Spark master URL (default $SPARK_MASTER or local[*])")
    p.add_argument("--skip-bad-files", action="store_true", help="skip corrupt/truncated parquet files and list them in stats")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per record batch read by a task (bounds its memory)")
    p.add_argument("--task-rows", type=int, default=d.task_rows,
                   help="rows per scan task, whole row groups of one file (0 = auto: 2 tasks per core, at most 1,000,000 rows)")
    p.add_argument("--force", action="store_true", help="recompute even if OUT holds a finished run with the same inputs")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)")


def config_from_args(args: argparse.Namespace) -> MineConfig:
    conf = {}
    for kv in args.conf:
        if "=" not in kv:
            raise ConfigError(f"--conf {kv!r}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        conf[k] = v
    return MineConfig(
        shards=list(args.shards),
        names=args.names,
        out=args.out,
        match=args.match,
        fuzzy_threshold=args.fuzzy_threshold,
        columns=args.columns,
        member_min=args.member_min,
        member_max=args.member_max,
        buckets=args.buckets,
        master=args.master,
        skip_bad_files=args.skip_bad_files,
        batch_size=args.batch_size,
        task_rows=args.task_rows,
        force=args.force,
        spark_conf=conf,
    )


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    s = run_mine(cfg)
    t = s["totals"]
    if s.get("resumed"):
        print(f"mine: {cfg.out} already holds this run (same inputs and settings); use --force to redo it")
    print(f"mine ({s['match_mode']}): {t['files_read']} files read, {t['files_skipped']} skipped, {t['rows_read']} rows")
    print(f"  rows: {t['null_or_empty']} null/empty + {t['unmatched']} unmatched + {t['matched']} matched")
    print(f"  identities: {t['identities_with_match']} of {t['identities']} with >= 1 caption; {t['match_pairs']} caption x identity matches")
    li = s["identity_lists"]
    print(f"  lists: {li['members']} members, {li['non_members']} non-members, {li['eval_subset']} in eval subset")
    for b in s["skipped_files"]:
        print(f"  skipped {b['file']}: {b['reason']}")
    steps = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in s.get("stage_s", {}).items())
    units = f"{s.get('work_units', 0)} scan tasks" + (f", {t.get('units_resumed', 0)} reused" if t.get("units_resumed") else "")
    if steps:
        print(f"  time: {steps} ({units})")
    print(f"  outputs: {cfg.out}/counts.parquet, manifests/, identity_lists/, stats.json   ({s['wall_s']} s)")
    return 0


if __name__ == "__main__":
    from pipelines.cli import main as cli_main

    sys.exit(cli_main(["mine", *sys.argv[1:]]))
