"""Reference name lists, loaded in one place: US-census first names per sex and the 2010 census surnames.

First names come from the `names` package (1990 US-census lists, most frequent first); surnames from the 2010
census top-1,000 table shipped in `idia/resources` (the surnames the study drew its fake candidates from). Both are
title-cased the same way ("MCDONALD" -> "Mcdonald", "O'NEIL" -> "O'Neil").
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
def surnames(top: int | None = 1000) -> tuple[str, ...]:
    """The 2010 census surnames, most frequent first, at most `top`. Only ranked data rows count: the table's
    "ALL OTHER NAMES" row and its source/footnote lines are not surnames."""
    with open(SURNAMES_CSV, newline="", encoding="utf-8-sig") as fh:  # the file starts with a BOM
        rows = list(csv.DictReader(fh))
    out = [
        title_case(r["SURNAME"].strip())
        for r in rows
        if (r.get("RANK") or "").replace(",", "").strip().isdigit()
        and r["SURNAME"].strip()
        and r["SURNAME"] != "ALL OTHER NAMES"
    ]
    return tuple(out[:top] if top is not None else out)
