"""Spark job: scan LAION caption shards for a names list -> counts.parquet, manifests/, identity lists, stats.json.

Each (file, row group) is one task; inside it record batches stream through one Aho-Corasick matcher built once
per Python worker process, so memory is bounded by a record batch. Footers are checked on the driver first, so a
missing column or a corrupt file is reported by name before any work starts. Works as `idia mine ...` and as
`spark-submit jobs/mine.py ...`.
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


# Rows the scan emits: kind "match" (one per caption x identity) or "stats" (one per work unit).
SCAN = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field("unit", pa.int32()),
        pa.field("file_index", pa.int32()),
        pa.field("row_number", pa.int64()),  # row position in its file: the deterministic sort key
        pa.field("identity_index", pa.int32()),
        pa.field("bucket", pa.int32()),
        *[f for f in MANIFEST if f.name not in ("identity_id", "source_file")],
        pa.field("rows_read", pa.int64()),
        pa.field("null_or_empty", pa.int64()),
        pa.field("matched", pa.int64()),
        pa.field("unmatched", pa.int64()),
        pa.field("match_pairs", pa.int64()),
        pa.field("matcher_builds", pa.int64()),  # 1 where this task had to build the automaton (cache miss)
        pa.field("task_ms", pa.int64()),  # time spent inside the task's Python code (read + match)
        pa.field("error", pa.string()),
    ]
)
_MATCH_COLS = ["SAMPLE_ID", "URL", "TEXT", "WIDTH", "HEIGHT", "NSFW", "similarity"]


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
    for url in files:
        try:
            with _open(url) as f:
                pf = pq.ParquetFile(f)
                schema = pf.schema_arrow
                md = pf.metadata
                rgs = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt or truncated files
            reason = f"not a readable parquet file ({type(exc).__name__}: {exc})"
            if not skip_bad:
                raise InputFileError(f"{url}: {reason}; use --skip-bad-files to skip it") from None
            bad.append({"file": url, "reason": reason})
            continue
        # Missing column / wrong type is the user's layout choice (--columns): always an error, never skipped.
        map_columns(schema.empty_table(), mapping, LAION_400M, url)
        ok.append({"file": url, "row_groups": rgs, "rows": sum(rgs)})
    return ok, bad


# --------------------------------------------------------------------------------------------- executors
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


def _stats_row(unit: int, file_index: int, st: Stats, error: str | None = None) -> pa.RecordBatch:
    cols = {f.name: pa.nulls(1, f.type) for f in SCAN}
    cols["kind"] = pa.array(["stats"])
    cols["unit"] = pa.array([unit], pa.int32())
    cols["file_index"] = pa.array([file_index], pa.int32())
    for k in ("rows_read", "null_or_empty", "matched", "unmatched", "match_pairs", "matcher_builds", "task_ms"):
        cols[k] = pa.array([int(st[k])], pa.int64())
    cols["error"] = pa.array([error], pa.string())
    return pa.RecordBatch.from_arrays([cols[f.name] for f in SCAN], schema=SCAN)


def scan_unit(payload: dict, unit: int) -> Iterator[pa.RecordBatch]:
    """Match one (file, row group); yields match batches, then exactly one stats row (with the error, if any)."""
    file_index, rg, first_row = payload["units"][unit]
    url = payload["files"][file_index]
    mapping = COLUMN_MAPPINGS[payload["columns"]]
    src_cols = sorted({c for c in mapping.values() if c is not None})
    st = Stats()
    t_start = time.perf_counter()
    matcher, buckets = _matcher(payload, st)
    try:
        with _open(url) as f:
            pf = pq.ParquetFile(f)
            row0 = first_row
            for batch in pf.iter_batches(
                batch_size=payload["batch_size"], row_groups=[rg], columns=src_cols, use_threads=False
            ):
                tbl = map_columns(pa.Table.from_batches([batch]), mapping, LAION_400M, url)
                n = tbl.num_rows
                texts = tbl.column("TEXT").combine_chunks()
                n_empty = int(empty_mask(texts).sum()) if n else 0
                m = matcher.match(texts)
                rows = m.column("row").to_numpy()
                n_matched = int(len(np.unique(rows)))
                st.update(rows_read=n, null_or_empty=n_empty, matched=n_matched, match_pairs=len(rows))
                st["unmatched"] += n - n_empty - n_matched
                if len(rows):
                    per_row = np.bincount(rows, minlength=n)[rows].astype(np.int32)
                    ident = m.column("identity_index").to_numpy()
                    taken = tbl.select(_MATCH_COLS).take(pa.array(rows))
                    k = len(rows)
                    cols = {
                        "kind": pa.array(["match"] * k),
                        "unit": pa.array(np.full(k, unit, np.int32)),
                        "file_index": pa.array(np.full(k, file_index, np.int32)),
                        "row_number": pa.array(rows + row0),
                        "identity_index": pa.array(ident.astype(np.int32)),
                        "bucket": pa.array(buckets[ident]),
                        "matched_alias": m.column("matched_alias"),
                        "match_score": m.column("match_score"),
                        "n_identities_in_caption": pa.array(per_row),
                    }
                    for c in _MATCH_COLS:
                        cols[c] = taken.column(c)
                    arrays = [cols[f.name] if f.name in cols else pa.nulls(k, f.type) for f in SCAN]
                    yield pa.RecordBatch.from_arrays(
                        [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays], schema=SCAN
                    )
                row0 += n
    except Exception as exc:  # reported to the driver, which names the file (or skips it with --skip-bad-files)
        st["task_ms"] = int((time.perf_counter() - t_start) * 1000)
        yield _stats_row(unit, file_index, st, f"row group {rg}: {type(exc).__name__}: {exc}")
        return
    st["task_ms"] = int((time.perf_counter() - t_start) * 1000)
    yield _stats_row(unit, file_index, st)


def _scan_partition(bcast, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    payload = bcast.value
    for b in batches:
        for unit in b.column(0).to_pylist():
            yield from scan_unit(payload, int(unit))


# What the shuffle's write stage returns: per work unit its stats (passed through), per identity its counts,
# per bucket the manifest file written. One Spark job, one shuffle: scan -> repartition(bucket) -> write.
RESULT = pa.schema(
    [
        pa.field("kind", pa.string()),  # "stats" / "count" / "bucket"
        pa.field("unit", pa.int32()),
        pa.field("file_index", pa.int32()),
        pa.field("bucket", pa.int32()),
        pa.field("identity_index", pa.int32()),
        pa.field("n_captions", pa.int64()),
        pa.field("n_unique_urls", pa.int64()),
        pa.field("path", pa.string()),
        pa.field("rows_read", pa.int64()),
        pa.field("null_or_empty", pa.int64()),
        pa.field("matched", pa.int64()),
        pa.field("unmatched", pa.int64()),
        pa.field("match_pairs", pa.int64()),
        pa.field("matcher_builds", pa.int64()),
        pa.field("task_ms", pa.int64()),
        pa.field("error", pa.string()),
    ]
)


def _result(rows: dict[str, list], n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(rows[f.name], f.type) if f.name in rows else pa.nulls(n, f.type) for f in RESULT], schema=RESULT
    )


def _write_buckets(bcast, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Write the manifest buckets that landed in this partition (sorted by identity_id, file, row); count per identity.

    An identity's rows all sit in its one bucket, so its unique-URL count is exact here, with no second shuffle.
    """
    payload = bcast.value
    tables = [pa.Table.from_batches([b]) for b in batches if b.num_rows]
    if not tables:
        return
    t = pa.concat_tables(tables)
    is_stats = pc.equal(t.column("kind"), "stats")
    st = t.filter(is_stats)
    if st.num_rows:
        cols = ["unit", "file_index", "rows_read", "null_or_empty", "matched", "unmatched", "match_pairs", "matcher_builds", "task_ms", "error"]
        yield _result({c: st.column(c).to_pylist() for c in cols} | {"kind": ["stats"] * st.num_rows}, st.num_rows)
    t = t.filter(pc.invert(is_stats))
    if not t.num_rows or payload.get("dry"):
        return
    id_ids = pa.array(payload["identity_ids"], pa.string())
    files = pa.array(payload["files"], pa.string())
    t = t.append_column("identity_id", pc.take(id_ids, t.column("identity_index")))
    t = t.append_column("source_file", pc.take(files, t.column("file_index")))
    t = t.sort_by([("bucket", "ascending"), ("identity_id", "ascending"), ("file_index", "ascending"), ("row_number", "ascending")])
    g = t.group_by("identity_index").aggregate([("row_number", "count"), ("URL", "count_distinct")])
    yield _result(
        {
            "kind": ["count"] * g.num_rows,
            "identity_index": g.column("identity_index").to_pylist(),
            "n_captions": g.column("row_number_count").to_pylist(),
            "n_unique_urls": g.column("URL_count_distinct").to_pylist(),
        },
        g.num_rows,
    )
    staging = Path(payload["staging"])
    for b in pc.unique(t.column("bucket")).to_pylist():
        part = t.filter(pc.equal(t.column("bucket"), b))
        out = part.select(MANIFEST.names).cast(MANIFEST)
        path = staging / f"bucket={b:03d}" / "part-00000.parquet"
        write_parquet(out, path, row_group_size=16384)
        yield _result({"kind": ["bucket"], "bucket": [b], "n_captions": [out.num_rows], "path": [str(path)]}, 1)


# --------------------------------------------------------------------------------------------- driver
def _units(good: list[dict]) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Work units: (file index, row group, first row of the group in its file), one Spark task each."""
    units = []
    for fi, info in enumerate(good):
        first = 0
        for rg, n in enumerate(info["row_groups"]):
            units.append((fi, rg, first))
            first += n
    return [g["file"] for g in good], units


def _spark_pass(spark, payload: dict) -> list[dict]:
    """One Spark job: scan every unit, shuffle matches by bucket, write buckets; returns the result rows."""
    from schemas.spark import to_spark_schema

    bcast = spark.sparkContext.broadcast(payload)
    try:
        n = len(payload["units"])
        scanned = spark.range(n, numPartitions=n).mapInArrow(functools.partial(_scan_partition, bcast), to_spark_schema(SCAN))
        parts = max(1, min(payload["buckets"], n * 2))
        out = scanned.repartition(parts, "bucket").mapInArrow(functools.partial(_write_buckets, bcast), to_spark_schema(RESULT))
        return out.toArrow().to_pylist()
    finally:
        bcast.destroy()


def _fingerprint(cfg: MineConfig, files: list[str], names_sha: str) -> str:
    keep = {k: v for k, v in to_dict(cfg).items() if k not in ("master", "force", "spark_conf", "out")}
    return hashlib.sha256(json.dumps([keep, files, names_sha], sort_keys=True).encode()).hexdigest()[:16]


def run_mine(cfg: MineConfig, spark=None) -> dict:
    """Run the mining job; returns the stats dict also written to OUT/stats.json."""
    t0 = time.time()
    cfg.validate()
    out = Path(cfg.out)
    identities, name_stats = parse_names(cfg.names)
    files = resolve_inputs(cfg.shards)
    names_sha = hashlib.sha256(Path(cfg.names).read_bytes()).hexdigest()
    fp = _fingerprint(cfg, files, names_sha)
    prev = read_done(out, "mine")
    if not cfg.force and prev and prev.get("fingerprint") == fp and (out / "stats.json").exists():
        stats = json.loads((out / "stats.json").read_text())
        stats["resumed"] = True
        return stats

    mapping = COLUMN_MAPPINGS[cfg.columns]
    good, bad = inspect_footers(files, mapping, cfg.skip_bad_files)
    good_files, units = _units(good)

    from jobs.spark_session import get_spark

    own_spark = spark is None
    spark = spark or get_spark(cfg.master, app_name="idia-mine", conf={k: str(v) for k, v in cfg.spark_conf.items()})
    spark_master = spark.sparkContext.master
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, identities.schema) as w:
        w.write_table(identities)
    ident_bytes = sink.getvalue().to_pybytes()
    # A killed run leaves only its staging folder behind (outputs are swapped in whole): clear it, then redo.
    for leftover in out.glob(".manifests.staging-*") if out.exists() else []:
        shutil.rmtree(leftover, ignore_errors=True)
    staging = out / f".manifests.staging-{uuid.uuid4().hex[:8]}"
    payload = {
        "key": hashlib.sha256(ident_bytes + f"{cfg.match}|{cfg.fuzzy_threshold}|{cfg.buckets}".encode()).hexdigest(),
        "identities": ident_bytes,
        "identity_ids": identities.column("identity_id").to_pylist(),
        "mode": cfg.match,
        "threshold": cfg.fuzzy_threshold,
        "buckets": cfg.buckets,
        "columns": cfg.columns,
        "batch_size": cfg.batch_size,
        "files": good_files,
        "units": units,
        "staging": str(staging.resolve()),
    }
    stats_rows: list[dict] = []
    count_rows: list[dict] = []
    bucket_rows: list[dict] = []
    try:
        while units:
            staging.mkdir(parents=True, exist_ok=True)
            result = _spark_pass(spark, payload)
            stats_rows = [r for r in result if r["kind"] == "stats"]
            # Per-unit errors (a corrupt page in a file whose footer was fine): name the file, or skip it whole.
            errors = [r for r in stats_rows if r["error"]]
            if not errors:
                count_rows = [r for r in result if r["kind"] == "count"]
                bucket_rows = sorted((r for r in result if r["kind"] == "bucket"), key=lambda r: r["bucket"])
                break
            bad_idx = sorted({r["file_index"] for r in errors})
            first = min(errors, key=lambda r: (r["file_index"], r["unit"]))
            if not cfg.skip_bad_files:
                raise InputFileError(
                    f"{good_files[first['file_index']]}: cannot read: {first['error']}; use --skip-bad-files to skip it"
                )
            for fi in bad_idx:
                reason = next(r["error"] for r in errors if r["file_index"] == fi)
                bad.append({"file": good_files[fi], "reason": reason})
            # Rerun without the bad files: their partial manifest rows must not stay behind.
            shutil.rmtree(staging, ignore_errors=True)
            good = [g for i, g in enumerate(good) if i not in bad_idx]
            good_files, units = _units(good)
            payload.update(files=good_files, units=units)
            stats_rows = []
        else:
            staging.mkdir(parents=True, exist_ok=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if own_spark and os.environ.get("IDIA_KEEP_SPARK") != "1":
            spark.stop()

    # ---- accounting: every row of every good file is read once, and rows = null/empty + unmatched + matched
    per_file: dict[str, dict] = {}
    for r in stats_rows:
        url = good_files[r["file_index"]]
        d = per_file.setdefault(url, Stats())
        d.update({k: int(r[k]) for k in ("rows_read", "null_or_empty", "matched", "unmatched", "match_pairs", "matcher_builds", "task_ms")})
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
    for r in count_rows:
        n_cap[r["identity_index"]] += r["n_captions"]
        n_url[r["identity_index"]] += r["n_unique_urls"]
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

    # ---- outputs (manifests swapped in whole, the rest file by file; stats.json and the marker last)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "manifests"
    old = out / f".manifests.old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    write_parquet(counts, out / "counts.parquet")
    write_parquet(identities.replace_schema_metadata(None), out / "identities.parquet")
    lists = build_identity_list(counts, cfg.member_min, cfg.member_max)
    sizes = write_identity_lists(lists, out / "identity_lists")
    resolved = to_dict(cfg)
    resolved["input_files"] = files
    write_json(resolved, out / "config.json")
    n_with = int((n_cap > 0).sum())
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
        "wall_s": round(time.time() - t0, 3),
        "config": resolved,
    }
    check_sum(files and len(files) or 0, {"read": len(per_file), "skipped": len(bad)}, "input files")
    write_json(stats, out / "stats.json")
    mark_done(out, "mine", {"fingerprint": fp})
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
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per record batch read by a task")
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
    print(f"  outputs: {cfg.out}/counts.parquet, manifests/, identity_lists/, stats.json   ({s['wall_s']} s)")
    return 0


if __name__ == "__main__":
    from pipelines.cli import main as cli_main

    sys.exit(cli_main(["mine", *sys.argv[1:]]))
