"""Read an external query-image list in the FaceScrub layout into the download stage's REQUESTS table.

Tab-separated, header `name	image_id	face_id	url	bbox	sha256` (extra columns ignored; an optional `identity_id`
column overrides the lookup). bbox is "x1,y1,x2,y2" or empty, sha256 is 64 hex digits or empty. Identities come
from the names list by exact (normalised) name or alias; rows whose name is not in the list are skipped and
counted. Junk (wrong column count, bad bbox/sha256/id, duplicate image) raises InputFileError naming the line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pyarrow as pa

from idia.core.errors import InputFileError
from idia.core.stats import Stats, check_sum
from idia.download.image_checks import parse_bbox
from idia.mine.names import decode_utf8, normalize_name, valid_identity_id
from schemas import QUERY_LIST_COLUMNS, REQUESTS

REQUIRED_COLUMNS = QUERY_LIST_COLUMNS
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def name_lookup(identities: pa.Table | None) -> dict[str, str]:
    """Normalised name and every alias -> identity_id."""
    out: dict[str, str] = {}
    if identities is None:
        return out
    for row in identities.select(["identity_id", "name", "aliases"]).to_pylist():
        for n in [row["name"], *(row["aliases"] or [])]:
            out.setdefault(n, row["identity_id"])
    return out


def read_query_list(path: str | Path, identities: pa.Table | None) -> tuple[pa.Table, Stats, list[str]]:
    """-> (REQUESTS table sorted by identity_id, source_id; stats; the unknown names, sorted)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: query list not found")
    text = decode_utf8(path.read_bytes(), str(path))
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputFileError(f"{path}: line 1: empty file or blank header; expected {'	'.join(REQUIRED_COLUMNS)}")
    header = [h.strip() for h in next(csv.reader([lines[0]], delimiter="\t", quoting=csv.QUOTE_NONE))]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputFileError(
            f"{path}: line 1: header lacks column(s) {', '.join(missing)}; "
            f"expected tab-separated {', '.join(REQUIRED_COLUMNS)}"
        )
    col = {c: header.index(c) for c in header}
    has_id = "identity_id" in col
    if not has_id and identities is None:
        raise InputFileError(f"{path}: no identity_id column, so a names list is needed (--identities)")
    lookup = name_lookup(identities)
    stats = Stats()
    rows: dict[tuple[str, str], tuple[int, dict]] = {}
    unknown: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            stats["blank_lines"] += 1
            continue
        stats["rows_read"] += 1
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputFileError(f"{path}: line {lineno}: {len(fields)} tab-separated fields, header has {len(header)}")
        name = normalize_name(fields[col["name"]], str(path), lineno)
        if not name:
            raise InputFileError(f"{path}: line {lineno}: empty name")
        image_id = fields[col["image_id"]].strip()
        if not image_id:
            raise InputFileError(f"{path}: line {lineno}: empty image_id")
        url = fields[col["url"]].strip()
        if not url:
            raise InputFileError(f"{path}: line {lineno}: empty url")
        bbox_text = fields[col["bbox"]].strip()
        try:
            bbox = parse_bbox(bbox_text)
        except ValueError as exc:
            raise InputFileError(f"{path}: line {lineno}: column bbox: {exc}") from None
        sha = fields[col["sha256"]].strip()
        if sha and not _SHA256.match(sha):
            raise InputFileError(f"{path}: line {lineno}: column sha256: {sha!r} is not 64 hex digits")
        ident = fields[col["identity_id"]].strip() if has_id else ""
        if ident:
            if not valid_identity_id(ident):
                raise InputFileError(f"{path}: line {lineno}: identity_id {ident!r} must match [A-Za-z0-9_-]{{1,64}}")
        else:
            ident = lookup.get(name, "")
            if not ident:
                unknown.add(name)
                stats["skipped_unknown_name"] += 1
                continue
        key = (ident, image_id)
        if key in rows:
            raise InputFileError(
                f"{path}: line {lineno}: image_id {image_id!r} for {name!r} repeats line {rows[key][0]}"
            )
        rows[key] = (
            lineno,
            {
                "identity_id": ident,
                "source_id": image_id,
                "url": url,
                "bbox": ",".join(str(int(v)) if v.is_integer() else repr(v) for v in bbox) if bbox else None,
                "sha256": sha.lower() or None,
            },
        )
    ordered = [rows[k][1] for k in sorted(rows)]
    stats["requested"] = len(ordered)
    check_sum(
        stats["rows_read"],
        {"requested": stats["requested"], "skipped_unknown_name": stats["skipped_unknown_name"]},
        f"{path}: query rows",
    )
    table = pa.Table.from_pylist(ordered, schema=REQUESTS)
    return table, stats, sorted(unknown)
