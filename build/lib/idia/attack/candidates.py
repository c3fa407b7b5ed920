"""Candidate names for the attack: every identity's true name plus seeded fake names (first x last names).

Two ways to draw the fakes (`--fake-names`):
- census: 1990-census first names x 2010-census surnames, fakes split over the sexes in proportion to the
  identities' sexes, drawn with numpy's seeded generator.
- study: the study's draw. First names are the SSA baby names rebuilt its way (`census.ssa_first_names`), surnames
  the 2010 census top 1,000 (`str.title`). Per sex, "f" then "m", the full cross product (first-name order x
  surname order) is sampled without replacement with `numpy.random.RandomState(seed)`, shared across the two sexes,
  which is what pandas `groupby("sex").sample(n, random_state=seed)` does; n = (num_candidates - identities) // 2.
  The study used seed 42. It did not check fakes against the real names: here a fake that is a real name or alias,
  or repeats another fake (a first name of both sexes), is dropped and counted, never silently replaced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

import schemas
from idia.core import census, storage
from idia.core.errors import InputFileError, UserError
from idia.mine.normalize import name_key
from schemas.validate import conform

FIRST_NAMES_PER_SEX = 1000


def load_identities(path: str | Path) -> pa.Table:
    """Identities (schemas.IDENTITIES) from a mine output folder, an identities parquet, or a names file."""
    path = storage.location(path)
    if path.is_dir():
        path = path / "identities.parquet"
        if not path.is_file():
            raise InputFileError(f"{path}: not found; --identities takes a names file or a mine output folder")
    if not path.is_file():
        raise InputFileError(f"{path}: identities file not found")
    if path.suffix == ".parquet":
        table = conform(storage.read_parquet(path), schemas.IDENTITIES, str(path))
    else:
        from idia.mine.names import read_names  # the names-list contract (mining stage)

        table = read_names(path)
    ids = table.column("identity_id").to_pylist()
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise InputFileError(f"{path}: duplicate identity_id(s): {', '.join(dup)}")
    return table


def _split_fakes(n_fake: int, sexes: list[str | None]) -> dict[str, int]:
    """Fake names per sex in proportion to the identities' sexes; unknown sex draws from both lists."""
    groups = {"m": 0, "f": 0, "u": 0}
    for s in sexes:
        groups[s if s in ("m", "f") else "u"] += 1
    total = sum(groups.values()) or 1
    quota = {g: (n_fake * c) // total for g, c in groups.items()}
    # Hand out the remainder by largest share, in a fixed order, so the split is deterministic.
    rest = n_fake - sum(quota.values())
    for g in sorted(groups, key=lambda g: (-groups[g], g))[:rest]:
        quota[g] += 1
    return quota


FAKE_NAMES = ("census", "study")


def study_fakes(per_sex: int, seed: int) -> list[str]:
    """The study's fake names in its order: its "f" sample, then its "m" sample (see the module docstring)."""
    rs = np.random.RandomState(seed)
    last = census.surnames(1000, casing="study")
    out: list[str] = []
    for sex in ("f", "m"):  # pandas iterates groups in sorted key order
        first = census.ssa_first_names(sex)
        pos = rs.permutation(len(first) * len(last))[:per_sex]  # RandomState.choice(n, k, replace=False)
        out += [f"{first[p // len(last)]} {last[p % len(last)]}" for p in pos.tolist()]
    return out


def build_candidates(
    identities: pa.Table, num_candidates: int = 1000, seed: int = 0, fakes: str = "census"
) -> pa.Table:
    """True names (sorted by identity_id) then fake names up to num_candidates (study: up to 2 x its per-sex number,
    less the dropped ones); schemas.CANDIDATES."""
    ids = identities.column("identity_id").to_pylist()
    names = identities.column("name").to_pylist()
    aliases = identities.column("aliases").to_pylist()
    sexes = [s.lower() if isinstance(s, str) else None for s in identities.column("sex").to_pylist()]
    n = len(ids)
    if num_candidates < n:
        raise UserError(
            f"--num-candidates {num_candidates} is smaller than the number of identities ({n}); "
            "every true name must be a candidate"
        )
    taken = set()
    for name, al in zip(names, aliases):
        taken.add(name_key(name))
        taken.update(name_key(a) for a in (al or []))
    order = sorted(range(n), key=lambda i: ids[i])
    rows_name = [names[i] for i in order]
    rows_id: list[str | None] = [ids[i] for i in order]
    if len({name_key(x) for x in rows_name}) != n:
        raise UserError("two identities share the same (normalised) name; the attack could not tell them apart")
    n_fake = num_candidates - n
    if fakes == "study":
        for full in study_fakes(n_fake // 2, seed):
            key = name_key(full)
            if key in taken:
                continue
            taken.add(key)
            rows_name.append(full)
            rows_id.append(None)
        n_fake = 0
    elif fakes != "census":
        raise UserError(f"fake names: unknown way {fakes!r}; choose from {', '.join(FAKE_NAMES)}")
    if n_fake:
        rng = np.random.default_rng([seed, 0x1D1A])
        surnames = census.surnames(None)
        quota = _split_fakes(n_fake, [sexes[i] for i in order])
        pools = {s: list(census.first_names(s, FIRST_NAMES_PER_SEX)) for s in census.SEXES}
        pools["u"] = sorted(set(pools["m"]) | set(pools["f"]))
        for g in ("m", "f", "u"):
            firsts = pools[g]
            want = quota[g]
            capacity = len(firsts) * len(surnames)
            if want > capacity // 2:
                raise UserError(f"cannot draw {want} distinct fake names from {capacity} combinations")
            got = 0
            while got < want:
                f = firsts[int(rng.integers(len(firsts)))]
                s = surnames[int(rng.integers(len(surnames)))]
                full = f"{f} {s}"
                key = name_key(full)
                if key in taken:  # never a real identity's name or alias, never a duplicate
                    continue
                taken.add(key)
                rows_name.append(full)
                rows_id.append(None)
                got += 1
    table = pa.table(
        {
            "candidate_index": pa.array(range(len(rows_name)), pa.int32()),
            "name": rows_name,
            "identity_id": pa.array(rows_id, pa.string()),
            "is_fake": [i is None for i in rows_id],
        }
    )
    return conform(table, schemas.CANDIDATES, "candidates")


def read_candidates_file(path: str | Path, identities: pa.Table) -> pa.Table:
    """An explicit candidate list, one name a line (the study's exact 1,000 names); real ones matched by name/alias."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: candidates file not found")
    by_key: dict[str, str] = {}
    for iid, name, al in zip(
        identities.column("identity_id").to_pylist(),
        identities.column("name").to_pylist(),
        identities.column("aliases").to_pylist(),
    ):
        for x in [name, *(al or [])]:
            by_key.setdefault(name_key(x), iid)
    names: list[str] = []
    ids: list[str | None] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        name = raw.strip()
        if not name or name.startswith("#"):
            continue
        key = name_key(name)
        if key in seen:
            raise InputFileError(f"{path}:{lineno}: duplicate candidate {name!r} (first on line {seen[key]})")
        seen[key] = lineno
        names.append(name)
        ids.append(by_key.get(key))
    found = [i for i in ids if i is not None]
    if len(set(found)) != len(found):
        raise InputFileError(f"{path}: two candidate lines name the same identity (a name and its alias?)")
    missing = sorted(set(identities.column("identity_id").to_pylist()) - set(found))
    if missing:
        raise InputFileError(
            f"{path}: the true name of {len(missing)} identit(y/ies) is not a candidate, e.g. {', '.join(missing[:5])}"
        )
    table = pa.table(
        {
            "candidate_index": pa.array(range(len(names)), pa.int32()),
            "name": names,
            "identity_id": pa.array(ids, pa.string()),
            "is_fake": [i is None for i in ids],
        }
    )
    return conform(table, schemas.CANDIDATES, str(path))
