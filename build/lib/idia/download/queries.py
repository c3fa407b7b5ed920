"""Read external query-image lists into the download stage's REQUESTS table.

Two layouts, any number of each (`read_queries`):
- a FaceScrub-layout file, as FaceScrub ships `facescrub_actors.txt` / `facescrub_actresses.txt`: tab-separated,
  header `name	image_id	face_id	url	bbox	sha256` (extra columns ignored; an optional `identity_id` column overrides
  the lookup, an optional `sex` column gives m/f). bbox is "x1,y1,x2,y2" or empty, sha256 64 hex digits or empty.
- a folder of URL lists, as the study's German personalities: `<Name>.txt` (the person's name, `_` for spaces), one
  image URL a line; sub-folders are searched, sorted. source_id is `L` and the URL's 0-based line among the URLs.
A person's sex comes from the source's name: a file or folder called actors / actresses (as FaceScrub's files and
the study's folders are) gives m / f; a `sex` column wins. Identities come from the names list by exact (normalised)
name or alias, after the optional query-alias table (a query name -> the names list's name: FaceScrub's misspellings
the study fixed by hand); rows whose name is not in the list are skipped and counted. Junk (wrong column count, bad
bbox/sha256/id, duplicate image, a URL line with spaces) raises InputFileError naming the file and line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

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


_SEX_WORDS = {"actors": "m", "actor": "m", "male": "m", "men": "m", "actresses": "f", "actress": "f", "female": "f"}


def sex_from_path(path: Path) -> str | None:
    """m / f when a part of the path is (or, for a file, its stem ends in) actors / actresses / male / female."""
    for part in reversed(path.parts):
        stem = Path(part).stem.lower()
        for word in (stem, *stem.replace("-", "_").split("_")[-1:]):
            if word in _SEX_WORDS:
                return _SEX_WORDS[word]
    return None


def read_query_aliases(path: str | Path) -> dict[str, str]:
    """A query-alias CSV (`query_name,name`): query names -> the names list's spelling."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: query-alias table not found")
    rows = list(csv.reader(decode_utf8(path.read_bytes(), str(path)).splitlines()))
    if not rows or [c.strip() for c in rows[0][:2]] != ["query_name", "name"]:
        raise InputFileError(f"{path}: line 1: header must start with query_name,name")
    out: dict[str, str] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise InputFileError(f"{path}: line {lineno}: expected query_name,name")
        q, n = normalize_name(row[0], str(path), lineno), normalize_name(row[1], str(path), lineno)
        if not q or not n:
            raise InputFileError(f"{path}: line {lineno}: empty query_name or name")
        if q in out and out[q] != n:
            raise InputFileError(f"{path}: line {lineno}: {q!r} is already mapped to {out[q]!r}")
        out[q] = n
    return out


def read_queries(
    sources: list[str], identities: pa.Table | None, aliases: dict[str, str] | None = None
) -> tuple[pa.Table, Stats, list[str], dict[str, str]]:
    """Every source (FaceScrub-layout file or URL-list folder) -> (REQUESTS sorted by identity_id, source_id; stats
    summed; unknown names, sorted; identity_id -> sex found in the sources)."""
    tables, all_stats, unknown, sexes = [], [], set(), {}
    for src in sources:
        path = Path(src)
        if path.is_dir():
            t, st, unk, sx = read_url_lists(path, identities, aliases)
        else:
            t, st, unk, sx = read_query_list(path, identities, aliases)
        tables.append(t)
        all_stats.append(st)
        unknown |= set(unk)
        for ident, sex in sx.items():
            if sexes.setdefault(ident, sex) != sex:
                raise InputFileError(f"{path}: {ident!r} is sex {sex!r} here but {sexes[ident]!r} in an earlier source")
    table = pa.concat_tables(tables) if tables else REQUESTS.empty_table()
    keys = list(zip(table.column("identity_id").to_pylist(), table.column("source_id").to_pylist()))
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InputFileError(f"query sources: image {dup[1]!r} of {dup[0]!r} is listed in two sources")
    table = table.take(pa.compute.sort_indices(table, [("identity_id", "ascending"), ("source_id", "ascending")]))
    return table, Stats.merge(all_stats), sorted(unknown), sexes


def _identity_for(name: str, lookup: dict[str, str], aliases: dict[str, str] | None) -> str:
    return lookup.get(name) or (lookup.get(aliases[name], "") if aliases and name in aliases else "")


def read_url_lists(
    root: Path, identities: pa.Table | None, aliases: dict[str, str] | None = None
) -> tuple[pa.Table, Stats, list[str], dict[str, str]]:
    """A folder of `<Name>.txt` URL lists -> (REQUESTS, stats, unknown names, identity_id -> sex)."""
    if identities is None:
        raise InputFileError(f"{root}: URL lists name people by file name, so a names list is needed (--identities)")
    found = sorted(p for p in root.rglob("*.txt") if p.is_file())
    if not found:
        raise InputFileError(f"{root}: no <Name>.txt URL lists in this folder")
    lookup = name_lookup(identities)
    stats = Stats()
    rows, unknown, sexes = [], set(), {}
    for f in found:
        name = normalize_name(f.stem.replace("_", " "), str(f), 0, "file name")
        ident = _identity_for(name, lookup, aliases)
        urls = []
        for lineno, line in enumerate(decode_utf8(f.read_bytes(), str(f)).splitlines(), start=1):
            url = line.strip()
            if not url:
                stats["blank_lines"] += 1
                continue
            if any(c.isspace() for c in url):
                raise InputFileError(f"{f}: line {lineno}: a URL line holds whitespace: {url[:80]!r}")
            urls.append(url)
        stats["rows_read"] += len(urls)
        if not ident:
            unknown.add(name)
            stats["skipped_unknown_name"] += len(urls)
            continue
        sex = sex_from_path(f.relative_to(root.parent))
        if sex:
            sexes[ident] = sex
        rows += [
            {"identity_id": ident, "source_id": f"L{i:04d}", "url": u, "bbox": None, "sha256": None}
            for i, u in enumerate(urls)
        ]
    stats["requested"] = len(rows)
    check_sum(stats["rows_read"], {k: stats[k] for k in ("requested", "skipped_unknown_name")}, f"{root}: URL lines")
    return pa.Table.from_pylist(rows, schema=REQUESTS), stats, sorted(unknown), sexes


def read_query_list(
    path: str | Path, identities: pa.Table | None, aliases: dict[str, str] | None = None
) -> tuple[pa.Table, Stats, list[str], dict[str, str]]:
    """One FaceScrub-layout file -> (REQUESTS sorted by identity_id, source_id; stats; the unknown names, sorted;
    identity_id -> sex)."""
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
    file_sex = sex_from_path(path)
    stats = Stats()
    rows: dict[tuple[str, str], tuple[int, dict]] = {}
    unknown: set[str] = set()
    sexes: dict[str, str] = {}
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
            ident = _identity_for(name, lookup, aliases)
            if not ident:
                unknown.add(name)
                stats["skipped_unknown_name"] += 1
                continue
        sex = fields[col["sex"]].strip().lower() if "sex" in col else ""
        if sex and sex not in ("m", "f"):
            raise InputFileError(f"{path}: line {lineno}: column sex: {sex!r} is not m or f")
        sex = sex or file_sex
        if sex:
            if sexes.setdefault(ident, sex) != sex:
                raise InputFileError(f"{path}: line {lineno}: {name!r} was sex {sexes[ident]!r} on an earlier line")
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
    return table, stats, sorted(unknown), sexes
