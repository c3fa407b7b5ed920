"""What to download: rows from the mining job's manifests, deduplicated and sampled (up to K per identity, seeded).

The result is a REQUESTS table, one row per (identity_id, source_id), sorted, so the same inputs and seed always
give the same rows in the same order (img2dataset's shards, and so a resumed run, depend on that order).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa

from idia.core import storage
from idia.core.errors import InputFileError
from idia.core.stats import Stats, check_sum
from schemas import MANIFEST, REQUESTS, files
from schemas.validate import SchemaError, check_schema


def manifest_files(path: str | Path) -> list[Path]:
    """The manifest parquet files under a mine output folder (or its manifests/ folder), sorted."""
    root = storage.location(path)
    if not root.exists():
        raise InputFileError(f"{root}: manifests folder not found")
    if (root / files.SETTINGS_JSON).exists() and not (root / files.DONE_DIR / "stage.json").exists():
        # A mining run that was killed (or is still running): its manifests may be partly copied into place.
        raise InputFileError(
            f"{root}: the mining run there has not finished (no completion marker {files.DONE_DIR}/stage.json); "
            "rerun the same `idia mine` command to finish it"
        )
    base = root / files.MANIFESTS_DIR if (root / files.MANIFESTS_DIR).is_dir() else root
    found = files.manifest_files(base) or sorted(p for p in base.glob("*.parquet"))
    if not found:
        raise InputFileError(f"{base}: no manifest files (expected manifests/bucket=NNN/*.parquet from `idia mine`)")
    return found


def read_manifests(path: str | Path) -> pa.Table:
    """identity_id, SAMPLE_ID, URL of every manifest row, checked against schemas.MANIFEST."""
    cols = ["identity_id", "SAMPLE_ID", "URL"]
    parts = []
    for f in manifest_files(path):
        try:
            schema = storage.read_schema(f)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputFileError(f"{f}: cannot read parquet: {exc}") from None
        check_schema(schema, MANIFEST, str(f), columns=cols)
        t = storage.read_parquet(f, columns=cols)
        parts.append(pa.table({c: t.column(c).cast(MANIFEST.field(c).type) for c in cols}))
    table = pa.concat_tables(parts)
    if table.column("identity_id").null_count:
        raise SchemaError(f"{path}: manifest column 'identity_id' has null values")
    return table


def source_id_for(sample_id, url: str | None) -> str:
    """SAMPLE_ID as text; where a layout has none, a stable id from the URL."""
    if sample_id is not None and sample_id == sample_id:  # not null / NaN
        return str(int(sample_id))
    return "u" + hashlib.sha1((url or "").encode("utf-8")).hexdigest()[:16]


def _rank(identity_id: pd.Series, source_id: pd.Series, seed: int) -> pd.Series:
    """A seeded pseudo-random rank per row, independent of row order (so sampling is stable)."""
    key = hashlib.sha256(f"idia-download-{seed}".encode()).hexdigest()[:16]
    return pd.util.hash_pandas_object(identity_id + "\x1f" + source_id, index=False, hash_key=key)


def sample_per_identity(df: pd.DataFrame, k: int | None, seed: int) -> tuple[pd.DataFrame, int]:
    """Keep up to k rows per identity, chosen by the seeded rank; returns (kept rows sorted, number dropped)."""
    if k is None or df.empty:
        return df, 0
    if k < 1:
        raise ValueError("max_per_identity must be at least 1")
    ranked = df.assign(_rank=_rank(df["identity_id"], df["source_id"], seed).to_numpy())
    ranked = ranked.sort_values(["identity_id", "_rank", "source_id"], kind="mergesort")
    keep = ranked.groupby("identity_id", sort=False).cumcount() < k
    kept = ranked[keep].drop(columns="_rank")
    kept = kept.sort_values(["identity_id", "source_id"], kind="mergesort").reset_index(drop=True)
    return kept, int((~keep).sum())


def requests_from_manifests(path: str | Path, max_per_identity: int | None, seed: int) -> tuple[pa.Table, Stats]:
    """Manifest rows -> REQUESTS. Rows without a URL and repeated (identity, URL) pairs are counted and dropped."""
    table = read_manifests(path)
    stats = Stats(manifest_rows=table.num_rows)
    df = table.to_pandas()
    url = df["URL"].astype("string").str.strip()
    no_url = url.isna() | (url == "")
    stats["skipped_no_url"] = int(no_url.sum())
    df = df[~no_url].assign(url=url[~no_url].astype(str))
    df["source_id"] = [source_id_for(s, u) for s, u in zip(df["SAMPLE_ID"], df["url"])]
    df = df.sort_values(["identity_id", "source_id", "url"], kind="mergesort")
    # The same image twice for one person would count twice in the attack; keep the first (lowest source_id).
    dup_url = df.duplicated(["identity_id", "url"], keep="first")
    dup_src = ~dup_url & df.duplicated(["identity_id", "source_id"], keep="first")
    stats["skipped_duplicate_url"] = int(dup_url.sum())
    stats["skipped_duplicate_source_id"] = int(dup_src.sum())
    df = df[~(dup_url | dup_src)]
    df, dropped = sample_per_identity(df[["identity_id", "source_id", "url"]], max_per_identity, seed)
    stats["not_sampled"] = dropped
    stats["requested"] = len(df)
    check_sum(
        stats["manifest_rows"],
        {
            k: stats[k]
            for k in (
                "requested",
                "skipped_no_url",
                "skipped_duplicate_url",
                "skipped_duplicate_source_id",
                "not_sampled",
            )
        },
        "manifest rows",
    )
    out = pa.table(
        {
            "identity_id": pa.array(df["identity_id"].tolist(), pa.string()),
            "source_id": pa.array(df["source_id"].tolist(), pa.string()),
            "url": pa.array(df["url"].tolist(), pa.string()),
            "bbox": pa.nulls(len(df), pa.string()),
            "sha256": pa.nulls(len(df), pa.string()),
        },
        schema=REQUESTS,
    )
    return out, stats
