"""Identity lists as in the study: occurrence table with bins, members, non-members, evaluation subset; manifest buckets.

membership: "member" (count >= member_min), "non_member" (count == 0), and "excluded" for 0 < count < member_min
(seen, but too rarely to call a member under a stricter threshold; with the study's member_min = 1 it never occurs).
Bins exactly as the study's published table (read from it, not from the paper's prose): steps of 25 up to 300 except
one merged [150, 200) bin, and a top bin labelled [300, 1000000); counts beyond get [1000000, inf).
in_eval_subset: member or non_member with count < member_max (the study evaluated members seen < 300 times).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from idia.core.atomic import write_parquet, write_text
from schemas import IDENTITY_LIST, MANIFEST, files
from schemas.files import bucket_of

BIN_EDGES = (0, 25, 50, 75, 100, 125, 150, 200, 225, 250, 275, 300, 1_000_000)


def bin_label(count: int) -> str:
    for lo, hi in zip(BIN_EDGES, BIN_EDGES[1:]):
        if lo <= count < hi:
            return f"[{lo}, {hi})"
    return f"[{BIN_EDGES[-1]}, inf)"


def membership(count: int, member_min: int = 1) -> str:
    if count == 0:
        return "non_member"
    return "member" if count >= member_min else "excluded"


def build_identity_list(counts: pa.Table, member_min: int = 1, member_max: int = 300) -> pa.Table:
    """From a COUNTS-like table (identity_id, name, n_captions) in names-file order -> IDENTITY_LIST."""
    if member_min < 1:
        raise ValueError("member_min must be >= 1 (count 0 is always non-member)")
    n = counts.column("n_captions").to_numpy().astype(np.int64)
    mem = np.where(n == 0, "non_member", np.where(n >= member_min, "member", "excluded"))
    labels = np.array([bin_label(lo) for lo in BIN_EDGES])  # one label per bin, the last open-ended
    bins = labels[np.searchsorted(np.asarray(BIN_EDGES), n, side="right") - 1]
    return pa.Table.from_arrays(
        [
            counts.column("identity_id").cast(pa.string()),
            counts.column("name").cast(pa.string()),
            pa.array(n, pa.int64()),
            pa.array(mem.tolist(), pa.string()),
            pa.array(bins.tolist(), pa.string()),
            pa.array((mem != "excluded") & (n < member_max), pa.bool_()),
        ],
        schema=IDENTITY_LIST,
    )


def _csv_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """One column as CSV field text, as pandas' to_csv wrote these files: Python csv's QUOTE_MINIMAL rule (quote a
    field holding , " CR or LF, double its quotes), booleans as True/False, nulls as empty fields."""
    if pa.types.is_boolean(col.type):
        text = pc.if_else(col, "True", "False")
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
        text = pc.if_else(pc.match_substring_regex(col, '[,"\r\n]'), quoted, col)
    else:
        text = pc.cast(col, pa.string())
    return pc.fill_null(text, "")


def _csv_rows(fields: pa.Table) -> str:
    """Header plus one line per row of a table of CSV field texts (from _csv_column)."""
    header = ",".join(fields.column_names)
    if fields.num_rows == 0:
        return header + "\n"
    rows = pc.binary_join_element_wise(*fields.columns, ",")
    return header + "\n" + "\n".join(rows.to_pylist()) + "\n"


def _csv_fields(table: pa.Table) -> pa.Table:
    """Every column as CSV field text (see _csv_column). Built column-wise with Arrow compute: a Python csv.writer
    took ~0.5 s per 100k identities."""
    return pa.table({c: _csv_column(table.column(c)) for c in table.column_names})


def write_identity_lists(lists: pa.Table, folder: str | Path) -> dict[str, int]:
    """occurrences.parquet/.csv, members.csv, non_members.csv, eval_subset.csv under `folder`; returns sizes."""
    from idia.core.storage import location

    folder = location(folder)
    write_parquet(lists, folder / files.OCCURRENCES_PARQUET)
    fields = _csv_fields(lists)  # made once; the three lists below are subsets of its rows
    write_text(_csv_rows(fields), folder / files.OCCURRENCES_CSV)
    masks = {
        "members": pc.equal(lists["membership"], "member"),
        "non_members": pc.equal(lists["membership"], "non_member"),
        "eval_subset": lists["in_eval_subset"],
    }
    sizes = {}
    for name, mask in masks.items():
        part = fields.select(["identity_id", "name", "count"]).filter(mask)
        write_text(_csv_rows(part), folder / files.LIST_CSVS[name])
        sizes[name] = part.num_rows
    sizes["excluded"] = int(pc.sum(pc.equal(lists["membership"], "excluded")).as_py() or 0)
    return sizes


def bin_table(lists: pa.Table) -> list[tuple[str, int]]:
    """Identities per bin, in bin order (the study's occurrence histogram)."""
    labels = [bin_label(c) for c in BIN_EDGES]
    got = lists.column("bin").to_pylist()
    return [(lab, got.count(lab)) for lab in labels]


def bucket_array(identity_ids: list[str], buckets: int) -> np.ndarray:
    return np.fromiter((bucket_of(i, buckets) for i in identity_ids), dtype=np.int32, count=len(identity_ids))


def read_manifest(mine_dir: str | Path, identity_id: str) -> pa.Table:
    """One identity's manifest rows from a mine output folder: reads one bucket only, filters by identity."""
    import json

    from idia.core.storage import location

    mine_dir = location(mine_dir)
    buckets = json.loads((mine_dir / files.CONFIG_JSON).read_text())["buckets"]
    folder = files.manifest_bucket_dir(mine_dir, bucket_of(identity_id, buckets))
    if not folder.exists():
        return MANIFEST.empty_table()
    parts = []
    for f in sorted(folder.glob("*.parquet"), key=str):
        with f.open("rb") as fh:
            parts.append(pq.read_table(fh, filters=[("identity_id", "=", identity_id)]))
    return pa.concat_tables(parts).cast(MANIFEST) if parts else MANIFEST.empty_table()
