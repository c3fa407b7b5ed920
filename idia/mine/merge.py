"""The merge task: gather each manifest bucket's rows from every staged unit, sort them and write the bucket.

An identity's rows all sit in its one bucket, so its caption and unique-URL counts are exact here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from idia.core.atomic import write_parquet
from idia.mine.scan import STAGED
from schemas import MANIFEST, files

#: What a merge task returns per bucket: rows written, the file, and per-identity counts.
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
#: Manifest columns written with dictionary encoding: few distinct values per bucket. Captions and URLs are
#: near-unique in LAION, so trying a dictionary for them costs write time (~30% here) for nothing.
DICT_COLUMNS = ["identity_id", "matched_alias", "source_file"]


@dataclass(frozen=True)
class StagedPart:
    """One staged unit file and, per bucket, the record batches of that bucket in it."""

    path: str
    bucket_batches: tuple[tuple[int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class MergeContext:
    parts: tuple[StagedPart, ...]
    buckets: int
    identity_ids: tuple[str, ...]
    identity_rank: tuple[int, ...]  # each identity's place in identity_id order
    files: tuple[str, ...]
    staging: str
    fsspec_conf: tuple = ()  # as ScanContext.fsspec_conf


@dataclass(frozen=True)
class MergeTask:
    """The buckets b with b % n_tasks == index, merged one after another (memory: one bucket)."""

    index: int
    n_tasks: int


def _open_staged(path: str):
    """A staged unit file for random access: memory-mapped locally, through fsspec on an object store."""
    from idia.core import storage

    if storage.remote(path):
        return pa.ipc.open_file(pa.PythonFile(storage.location(path).open("rb"), mode="r"))
    return pa.ipc.open_file(pa.memory_map(path))


def merge_task(ctx: MergeContext, task: MergeTask) -> list[dict]:
    from idia.core import storage

    storage.apply_shipped(ctx.fsspec_conf, ctx.staging)
    # Built once per task, shared by its buckets: staged files (memory-mapped), the id/file lookups, identity ranks.
    lookups = {
        "opened": {},
        "ids": pa.array(list(ctx.identity_ids), pa.string()),
        "files": pa.array(list(ctx.files), pa.string()),
        "rank": np.asarray(ctx.identity_rank, np.int64),
    }
    rows: list[dict] = []
    for bucket in range(task.index, ctx.buckets, task.n_tasks):
        rows += merge_bucket(ctx, bucket, lookups)
    return rows


def merge_bucket(ctx: MergeContext, bucket: int, lookups: dict) -> list[dict]:
    """One bucket: rows from every staged unit, sorted (identity_id, file, row), written as the bucket's manifest."""
    opened = lookups["opened"]
    batches = []
    for part in ctx.parts:
        ours = dict(part.bucket_batches).get(bucket)
        if ours:
            if part.path not in opened:
                opened[part.path] = _open_staged(part.path)
            batches += [opened[part.path].get_batch(i) for i in ours]
    if not batches:
        return []
    t = pa.Table.from_batches(batches, schema=STAGED)
    # Sort on integers: the identity's rank in identity_id order stands in for the string.
    rank = lookups["rank"][t.column("identity_index").to_numpy()]
    order = np.lexsort((t.column("row_number").to_numpy(), t.column("file_index").to_numpy(), rank))
    t = t.take(pa.array(order))
    t = t.append_column("identity_id", pc.take(lookups["ids"], t.column("identity_index")))
    t = t.append_column("source_file", pc.take(lookups["files"], t.column("file_index")))
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
    counts = pa.table(
        [pa.array(firsts, pa.int32()), pa.array(n_caps, pa.int64()), pa.array(n_urls)], schema=BUCKET_COUNTS
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, BUCKET_COUNTS) as w:
        w.write_table(counts)
    from idia.core.storage import location

    path = files.manifest_bucket_dir(location(ctx.staging), bucket) / files.MANIFEST_PART
    write_parquet(t.select(MANIFEST.names).cast(MANIFEST), path, row_group_size=16384, use_dictionary=DICT_COLUMNS)
    return [{"bucket": bucket, "n_captions": t.num_rows, "path": str(path), "counts": sink.getvalue().to_pybytes()}]


def read_counts(merged: list[dict], n_identities: int) -> tuple[np.ndarray, np.ndarray]:
    """Per identity (names-file order) the caption and unique-URL counts from the merge tasks' rows."""
    n_cap = np.zeros(n_identities, np.int64)
    n_url = np.zeros(n_identities, np.int64)
    for r in merged:
        c = pa.ipc.open_stream(r["counts"]).read_all()
        ix = c.column("identity_index").to_numpy()
        n_cap[ix] += c.column("n_captions").to_numpy()  # an identity sits in one bucket: no index repeats here
        n_url[ix] += c.column("n_unique_urls").to_numpy()
    return n_cap, n_url


def staged_parts(rows: list[dict]) -> tuple[StagedPart, ...]:
    """The scan tasks' staged files, sorted by path (the merge reads units in a fixed order)."""
    import json

    parts = []
    for r in rows:
        if r["path"]:
            bb = tuple(sorted((int(b), tuple(ix)) for b, ix in json.loads(r["bucket_batches"]).items()))
            parts.append(StagedPart(r["path"], bb))
    return tuple(sorted(parts, key=lambda p: p.path))
