"""Set a regenerated occurrence table beside the study's published one; list every name whose count or membership differs.

Rows are joined by name (Unicode NFC, exact otherwise): the published table has no identity ids. Names present on
one side only are listed too. Outputs: comparison.csv (every name, both sides, delta) and comparison.md (summary +
the differing names, largest |delta| first).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from idia.core import storage
from idia.core.atomic import write_text
from idia.core.census import PUBLISHED_COUNTS_CSV
from idia.core.config import ConfigError, option
from idia.core.errors import InputFileError
from schemas import files

PUBLISHED = PUBLISHED_COUNTS_CSV


@dataclass
class CompareConfig:
    regenerated: str = option(
        "", required=True, help="mine output folder, or its identity_lists/occurrences.parquet/.csv, or counts.parquet"
    )
    out: str = option("", required=True, help="output folder for comparison.csv and comparison.md")
    published: str = option(
        str(PUBLISHED_COUNTS_CSV), help="the study's published table (index,name,count,membership,bin)"
    )

    def validate(self) -> None:
        if not self.regenerated or not self.out:
            raise ConfigError("compare-lists: regenerated and out are required (--regenerated, --out)")


def _load(path: str | Path, what: str) -> pd.DataFrame:
    """A table with name + count (+ membership): occurrences.parquet/.csv, counts.parquet, or the published CSV."""
    path = storage.location(path)
    if path.is_dir():  # a mine output folder
        path = path / files.IDENTITY_LISTS_DIR / files.OCCURRENCES_PARQUET
    if not path.exists():
        raise InputFileError(f"{path}: {what} table not found")
    try:
        if path.suffix == ".parquet":
            df = storage.read_parquet(path).to_pandas()
        else:
            df = storage.read_csv(path, keep_default_na=False)
    except Exception as exc:  # unreadable parquet/CSV: name the file
        raise InputFileError(f"{path}: cannot read {what} table: {exc}") from None
    if "count" not in df.columns and "n_captions" in df.columns:
        df = df.rename(columns={"n_captions": "count"})
    for col in ("name", "count"):
        if col not in df.columns:
            raise InputFileError(
                f"{path}: {what} table has no '{col}' column (columns: {', '.join(map(str, df.columns))})"
            )
    df = df.copy()
    df["name"] = [unicodedata.normalize("NFC", str(n)).strip() for n in df["name"]]
    try:
        df["count"] = pd.to_numeric(df["count"], errors="raise").astype("int64")
    except (ValueError, TypeError) as exc:
        raise InputFileError(f"{path}: {what} table: column 'count' is not a whole number: {exc}") from None
    if "membership" not in df.columns:
        df["membership"] = ["member" if c >= 1 else "non_member" for c in df["count"]]
    dup = df["name"][df["name"].duplicated()]
    if len(dup):
        raise InputFileError(f"{path}: {what} table lists {dup.iloc[0]!r} more than once")
    return df[["name", "count", "membership"]]


def compare(regenerated: str | Path, published: str | Path = PUBLISHED) -> pd.DataFrame:
    """One row per name on either side: counts, memberships, delta, and what differs."""
    reg = _load(regenerated, "regenerated")
    pub = _load(published, "published")
    m = pub.merge(reg, on="name", how="outer", suffixes=("_published", "_regenerated"), indicator=True, sort=False)
    m["delta"] = m["count_regenerated"] - m["count_published"]

    def what(r) -> str:
        if r["_merge"] == "left_only":
            return "only_published"
        if r["_merge"] == "right_only":
            return "only_regenerated"
        diffs = []
        if r["count_published"] != r["count_regenerated"]:
            diffs.append("count")
        if r["membership_published"] != r["membership_regenerated"]:
            diffs.append("membership")
        return "+".join(diffs) or "same"

    m["difference"] = m.apply(what, axis=1)
    m = m.drop(columns="_merge")
    for c in ("count_published", "count_regenerated", "delta"):
        m[c] = m[c].astype("Int64")
    return m[
        [
            "name",
            "count_published",
            "count_regenerated",
            "delta",
            "membership_published",
            "membership_regenerated",
            "difference",
        ]
    ]


def to_markdown(df: pd.DataFrame, regenerated: str, published: str) -> str:
    diff = df[df["difference"] != "same"].copy()
    diff["_abs"] = diff["delta"].abs().fillna(-1)  # one-sided names after the real differences
    diff = diff.sort_values(["_abs", "name"], ascending=[False, True]).drop(columns="_abs")
    both = df[~df["difference"].isin(["only_published", "only_regenerated"])]
    lines = [
        "# Regenerated vs published occurrence counts",
        "",
        f"- regenerated: `{regenerated}`",
        f"- published: `{published}`",
        f"- names compared: {len(both)}; only in published: {(df['difference'] == 'only_published').sum()}; "
        f"only in regenerated: {(df['difference'] == 'only_regenerated').sum()}",
        f"- same count: {(df['difference'] == 'same').sum()}; count differs: {df['difference'].str.contains('count').sum()}; "
        f"membership differs: {df['difference'].str.contains('membership').sum()}",
        "",
        "| name | published | regenerated | delta | membership (published -> regenerated) | difference |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in diff.itertuples(index=False):
        fmt = lambda v: "" if pd.isna(v) else str(v)  # noqa: E731
        name = str(r.name).replace("|", "\\|")
        lines.append(
            f"| {name} | {fmt(r.count_published)} | {fmt(r.count_regenerated)} | {fmt(r.delta)} | "
            f"{fmt(r.membership_published)} -> {fmt(r.membership_regenerated)} | {r.difference} |"
        )
    if diff.empty:
        lines.append("| (no differences) | | | | | |")
    return "\n".join(lines) + "\n"


def compare_to_published(regenerated: str | Path, out: str | Path, published: str | Path = PUBLISHED) -> dict:
    """Write comparison.csv and comparison.md into `out`; returns the count of names per kind of difference."""
    df = compare(regenerated, published)
    out = storage.location(out)
    write_text(df.to_csv(index=False, lineterminator="\n"), out / files.COMPARISON_CSV)
    write_text(to_markdown(df, str(regenerated), str(published)), out / files.COMPARISON_MD)
    counts = {str(k): int(v) for k, v in sorted(df["difference"].value_counts().to_dict().items())}
    return {
        "names": int(len(df)),
        "differences": counts,
        "outputs": [str(out / files.COMPARISON_CSV), str(out / files.COMPARISON_MD)],
    }
