"""`idia lookup`: is this person in the mined dataset, and where? One person's counts, bin, membership and first
manifest rows from a mining run, found by identity_id or by name (the project's name normalisation, aliases too)."""

from __future__ import annotations

from pathlib import Path

from idia.core import storage
from idia.core.errors import InputFileError, UserError
from idia.mine.lists import read_manifest
from idia.mine.normalize import name_key
from schemas import files


def _read(path: Path, what: str):
    if not path.is_file():
        raise InputFileError(f"{path}: not found; is {path.parent} a finished `idia mine` output folder? ({what})")
    return storage.read_parquet(path)


def lookup(mine_dir: str | Path, query: str, rows: int = 5) -> list[dict]:
    """Every identity whose identity_id is `query`, or whose name or alias has the same normalised form; each with
    its counts, occurrence bin, membership and its first `rows` manifest rows (URL, caption)."""
    mine_dir = storage.location(mine_dir)
    ids = _read(mine_dir / files.IDENTITIES_PARQUET, "identities").to_pylist()
    counts = {r["identity_id"]: r for r in _read(mine_dir / files.COUNTS_PARQUET, "counts").to_pylist()}
    occ_path = mine_dir / files.IDENTITY_LISTS_DIR / files.OCCURRENCES_PARQUET
    occ = {r["identity_id"]: r for r in _read(occ_path, "identity lists").to_pylist()}
    query = query.strip()
    if not query:
        raise UserError("lookup: give a name or an identity_id")
    key = name_key(query)
    found = [r for r in ids if r["identity_id"] == query]
    if not found and key:
        found = [r for r in ids if any(name_key(n) == key for n in [r["name"], *(r["aliases"] or [])])]
    out = []
    for r in found:
        iid = r["identity_id"]
        manifest = read_manifest(mine_dir, iid).slice(0, rows) if rows else None
        out.append(
            {
                "identity_id": iid,
                "name": r["name"],
                "aliases": list(r["aliases"] or []),
                "n_captions": counts[iid]["n_captions"],
                "n_unique_urls": counts[iid]["n_unique_urls"],
                "match_mode": counts[iid]["match_mode"],
                "bin": occ[iid]["bin"],
                "membership": occ[iid]["membership"],
                "in_eval_subset": occ[iid]["in_eval_subset"],
                "rows": []
                if manifest is None
                else [
                    {"URL": m["URL"], "TEXT": m["TEXT"], "matched_alias": m["matched_alias"]}
                    for m in manifest.to_pylist()
                ],
            }
        )
    return out


def closest_names(mine_dir: str | Path, query: str, n: int = 3) -> list[str]:
    """The names of the run closest to `query` (rapidfuzz ratio on the normalised forms), for a 'did you mean'."""
    from rapidfuzz import fuzz, process

    names = _read(Path(mine_dir) / files.IDENTITIES_PARQUET, "identities").column("name").to_pylist()
    hits = process.extract(name_key(query), {i: name_key(x) for i, x in enumerate(names)}, scorer=fuzz.ratio, limit=n)
    return [names[i] for _, _, i in hits]
