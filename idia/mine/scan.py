"""The scan task: match one work unit's captions and stage its match rows beside the output.

Record batches stream through one Aho-Corasick matcher built once per Python worker process; the task writes its
match rows to an Arrow IPC file (one record batch per manifest bucket per flush) and a done-marker with its counts.
Memory is bounded by a record batch and a flush of staged rows, never by a shard. Staging is IPC, not parquet: it is
read once, by the merge, and parquet's encoding and statistics cost ~8% of a scan task here.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from idia.core import resume, storage
from idia.core.stats import Stats
from idia.mine.lists import bucket_array
from idia.mine.match import Matcher, empty_mask
from idia.mine.plan import ScanUnit, open_input
from schemas import COLUMN_MAPPINGS, LAION_400M, MANIFEST
from schemas.validate import map_columns

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
MATCH_COLUMNS = ["SAMPLE_ID", "URL", "TEXT", "WIDTH", "HEIGHT", "NSFW", "similarity"]
#: Canonical columns of a few distinct strings, read as Arrow dictionaries (parquet stores them dictionary-encoded):
#: NSFW decodes ~4x cheaper so (BENCHMARKS.md); a matched row's value is decoded when its row is taken.
DICTIONARY_COLUMNS = ("NSFW",)
COUNTERS = (
    "rows_read",
    "null_or_empty",
    "matched",
    "unmatched",
    "match_pairs",
    "matcher_builds",
    "units_resumed",
    "task_ms",
)

#: What a scan task returns to the driver: one row per work unit.
UNIT_STATS = pa.schema(
    [
        pa.field("unit", pa.string()),
        pa.field("file_index", pa.int32()),
        *[pa.field(k, pa.int64()) for k in COUNTERS],
        pa.field("path", pa.string()),  # the staged match rows (null when the unit matched nothing)
        pa.field("bucket_batches", pa.string()),  # JSON {bucket: [record batch, ...]} in the staged file
        pa.field("also_counts", pa.string()),  # JSON {mode: {identity index: captions}} for the --also-count modes
        pa.field("error", pa.string()),
        pa.field("started", pa.float64()),  # wall clock when the task began (the stage reports its start-up from it)
    ]
)
#: Staged match rows held in memory before a scan task writes them out (bounds a task's memory with the batch).
FLUSH_ROWS = 65536


@dataclass(frozen=True)
class Matchers:
    """What a scan task matches with, prepared once on the driver and shipped in the context: the main mode's
    matcher, one per --also-count mode, and each identity's manifest bucket. A worker builds only the automata (from
    their strings: ahocorasick_rs cannot pickle one), not the name tables: at 100,000 names a worker's matcher took
    0.38-0.55 s built from the table and 0.26-0.31 s unpickled with its automaton here (BENCHMARKS.md)."""

    main: Matcher
    also: dict  # mode -> Matcher
    buckets: np.ndarray  # identity index -> manifest bucket


def prepare_matchers(
    identities: pa.Table, mode: str, threshold: float, buckets: int, also_modes: tuple[str, ...] = ()
) -> Matchers:
    """The scan's matchers for an IDENTITIES table, without their automata (each worker builds those)."""
    return Matchers(
        Matcher(identities, mode, threshold, build=False),
        {m: Matcher(identities, m, threshold, build=False) for m in also_modes},
        bucket_array(identities.column("identity_id").to_pylist(), buckets),
    )


@dataclass(frozen=True)
class ScanContext:
    """What every scan task shares (sent once per executor)."""

    matchers: Matchers
    matcher_key: str  # identifies (names, mode, threshold, buckets, also-count modes): the per-process cache key
    columns: str
    batch_size: int
    files: tuple[str, ...]
    staging: str  # absolute path of the staging folder
    fingerprint: str  # the run's settings fingerprint: a unit's marker counts only under the same one
    fsspec_conf: tuple = ()  # the driver's fsspec configuration, as ((protocol, ((option, value), ...)), ...)

    @property
    def units_dir(self) -> Path:
        return storage.location(self.staging) / "units"


_MATCHERS: dict[str, Matchers] = {}


def matcher_for(ctx: ScanContext, st: Stats) -> Matchers:
    """The context's matchers, their automata built once per Python worker process (workers are reused;
    `matcher_builds` counts the builds)."""
    hit = _MATCHERS.get(ctx.matcher_key)
    if hit is None:
        st["matcher_builds"] += 1
        hit = ctx.matchers
        for matcher in (hit.main, *hit.also.values()):
            matcher.automaton  # noqa: B018 (built here, once, rather than inside the first batch's match)
        _MATCHERS.clear()
        _MATCHERS[ctx.matcher_key] = hit
    return hit


class StagedWriter:
    """Staged match rows of one unit (Arrow IPC file): held per bucket, flushed every FLUSH_ROWS rows as one record
    batch per bucket. Written under a temporary name and renamed into place; on an object store written locally and
    uploaded whole on close."""

    def __init__(self, path: Path):
        self.path = path
        if storage.remote(path):
            import tempfile

            self.tmp = Path(tempfile.gettempdir()) / f".idia-unit-{uuid.uuid4().hex}.arrow.tmp"
        else:
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
        if storage.remote(self.path):
            try:
                storage.put_file(self.tmp, self.path)
            finally:
                self.tmp.unlink(missing_ok=True)
        else:
            os.replace(self.tmp, self.path)
        return str(self.path)

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:  # a full disk fails the close too; the file goes anyway
                pass
        self.tmp.unlink(missing_ok=True)


#: The prefix of a unit's error when its staging disk is full (the driver raises ENOSPC instead of blaming the input).
NO_SPACE = "No space left on device"


def disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or NO_SPACE in str(exc)


def _staged_whole(path: str, size: int | None) -> bool:
    """The staged file is there with the size its marker recorded (a file cut short by a disk fault is redone)."""
    loc = storage.location(path)
    try:
        return size is None or loc.stat().st_size == size
    except (OSError, FileNotFoundError):
        return False


def _resumed(ctx: ScanContext, unit: ScanUnit, row: dict) -> dict | None:
    """The stats row of a unit a killed run finished (its marker and staged file are there), else None."""
    done = resume.read_marker(ctx.units_dir, unit.name, ctx.fingerprint)
    try:
        if (
            done
            and done["rows_read"] == unit.n_rows
            and (done["path"] is None or _staged_whole(done["path"], done.get("bytes")))
        ):
            return (
                row
                | {k: 0 for k in COUNTERS}
                | {k: done[k] for k in COUNTERS if k in done}
                | {
                    "path": done["path"],
                    "bucket_batches": done["bucket_batches"],
                    "also_counts": done.get("also_counts", "{}"),
                    "matcher_builds": 0,
                    "task_ms": 0,
                    "units_resumed": 1,
                }
            )
    except KeyError:
        pass  # a marker of another shape: redo the unit
    return None


def _decoded(table: pa.Table) -> pa.Table:
    """The table with its dictionary columns decoded to their values (the few rows a batch matched)."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(cols, names=table.column_names)


def scan_unit(ctx: ScanContext, unit: ScanUnit) -> dict:
    """Match one work unit and stage its match rows; returns its UNIT_STATS row (with the error, if any)."""
    url = ctx.files[unit.file_index]
    storage.apply_shipped(ctx.fsspec_conf, url, ctx.staging)
    row = {
        "unit": unit.name,
        "file_index": unit.file_index,
        "path": None,
        "bucket_batches": "{}",
        "also_counts": "{}",
        "error": None,
        "started": time.time(),
    }
    again = _resumed(ctx, unit, row)
    if again is not None:
        return again
    # Only the columns the manifest keeps are read (LICENSE and unmapped extras are not). Every row's TEXT is mapped
    # to the canonical schema; the other columns only for the matched rows, after they are taken.
    mapping = {k: v for k, v in COLUMN_MAPPINGS[ctx.columns].items() if k in MATCH_COLUMNS}
    src_cols = sorted({c for c in mapping.values() if c is not None})
    schema = pa.schema([LAION_400M.field(c) for c in MATCH_COLUMNS])
    text_mapping, text_schema = {"TEXT": mapping["TEXT"]}, pa.schema([LAION_400M.field("TEXT")])
    as_dictionary = [mapping[c] for c in DICTIONARY_COLUMNS if mapping.get(c)]
    st = Stats()
    t_start = time.perf_counter()
    matchers = matcher_for(ctx, st)
    matcher, buckets, also = matchers.main, matchers.buckets, matchers.also
    also_counts = {m: np.zeros(matcher.n_identities, np.int64) for m in also}
    storage.makedirs(ctx.units_dir)
    out = StagedWriter(ctx.units_dir / f"{unit.name}.arrow")
    try:
        with open_input(url) as f:
            pf = pq.ParquetFile(f, read_dictionary=as_dictionary)
            row0 = unit.first_row
            for batch in pf.iter_batches(
                batch_size=ctx.batch_size, row_groups=range(unit.rg0, unit.rg1 + 1), columns=src_cols, use_threads=False
            ):
                raw = pa.Table.from_batches([batch])
                n = raw.num_rows
                texts = map_columns(raw, text_mapping, text_schema, url).column(0).combine_chunks()
                blank = empty_mask(texts)
                n_empty = int(blank.sum()) if n else 0
                m = matcher.match(texts, blank)
                for mode, other in also.items():  # one (row, identity) per match row: captions per identity
                    ident = other.match(texts, blank).column("identity_index").to_numpy()
                    also_counts[mode] += np.bincount(ident, minlength=matcher.n_identities)
                rows = m.column("row").to_numpy()
                n_matched = int(np.count_nonzero(np.diff(rows))) + 1 if len(rows) else 0  # rows come sorted
                st.update(rows_read=n, null_or_empty=n_empty, matched=n_matched, match_pairs=len(rows))
                st["unmatched"] += n - n_empty - n_matched
                if len(rows):
                    per_row = np.bincount(rows, minlength=n)  # identities named in each caption
                    # Bucket runs (row order kept inside each), so the staged writer can slice without sorting.
                    m = m.take(np.argsort(buckets[m.column("identity_index").to_numpy()], kind="stable"))
                    rows, ident = m.column("row").to_numpy(), m.column("identity_index").to_numpy()
                    taken = map_columns(_decoded(raw.take(pa.array(rows))), mapping, schema, url)
                    cols = {
                        "file_index": pa.array(np.full(len(rows), unit.file_index, np.int32)),
                        "row_number": pa.array(rows + row0),
                        "identity_index": pa.array(ident.astype(np.int32)),
                        "bucket": pa.array(buckets[ident]),
                        "matched_alias": m.column("matched_alias").combine_chunks(),
                        "match_score": m.column("match_score").combine_chunks(),
                        "n_identities_in_caption": pa.array(per_row[rows].astype(np.int32)),
                    }
                    cols.update({c: taken.column(c).combine_chunks() for c in MATCH_COLUMNS})
                    out.add(pa.RecordBatch.from_arrays([cols[f.name] for f in STAGED], schema=STAGED))
                row0 += n
        path = out.close()
    except Exception as exc:  # reported to the driver, which names the file (or skips it with --skip-bad-files)
        out.abort()
        if disk_full(exc):  # not the input's fault: the driver stops the run naming the disk
            return row | {k: int(st[k]) for k in COUNTERS} | {"error": f"{NO_SPACE}: {exc}"}
        st["task_ms"] = int((time.perf_counter() - t_start) * 1000)
        span = f"{unit.rg0}{f'-{unit.rg1}' if unit.rg1 > unit.rg0 else ''}"
        return row | {k: int(st[k]) for k in COUNTERS} | {"error": f"row group {span}: {type(exc).__name__}: {exc}"}
    st["task_ms"] = int((time.perf_counter() - t_start) * 1000)
    row |= {k: int(st[k]) for k in COUNTERS} | {
        "path": path,
        "bucket_batches": json.dumps(out.batches),
        "also_counts": json.dumps({m: {str(i): int(a[i]) for i in np.flatnonzero(a)} for m, a in also_counts.items()}),
    }
    resume.write_marker(
        ctx.units_dir,
        unit.name,
        ctx.fingerprint,
        {k: row[k] for k in (*COUNTERS, "path", "bucket_batches", "also_counts")}
        | {"bytes": storage.location(path).stat().st_size if path else None},
    )
    return row
