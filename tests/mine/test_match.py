"""Matcher edge cases per mode: whole tokens, overlaps, aliases, duplicates by normalisation, buffers, fuzzy scores."""

from __future__ import annotations

import pyarrow as pa
import pytest

from idia.mine.match import Matcher, empty_mask


def idents(rows):
    return pa.table(
        {
            "identity_id": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "aliases": pa.array([r[2] for r in rows], pa.list_(pa.string())),
            "sex": pa.array([None] * len(rows), pa.string()),
            "source_line": pa.array(range(1, len(rows) + 1), pa.int32()),
        }
    )


IDS = idents(
    [
        ("obama", "Barack Obama", ["Obama"]),
        ("evans", "Chris Evans", []),
        ("leon", "Adrianne León", []),
        ("leon2", "Adrianne Leon", []),  # a different person whose name normalises alike
        ("lee", "Bruce Lee", ["李小龙"]),
        ("kerner", "Johannes B. Kerner", []),
    ]
)


def found(mode, texts, **kw):
    t = Matcher(IDS, mode, **kw).match(pa.array(texts, pa.string()))
    ids = IDS.column("identity_id").to_pylist()
    return [(r["row"], ids[r["identity_index"]], r["matched_alias"], r["match_score"]) for r in t.to_pylist()]


def test_normalized_whole_tokens_overlaps_and_aliases():
    texts = [
        "Barack Obama's speech",  # name and alias overlap: one row per identity, the name wins
        "Chris Evansville",  # longer word: no match
        "CHRIS EVANS",
        "adrianne leon",  # both León and Leon identities
        "我爱李小龙",
        "Johannes B Kerner",
        "xObama",
        None,
        "",
        "Obama",
    ]
    assert found("normalized", texts) == [
        (0, "obama", "Barack Obama", 100.0),
        (2, "evans", "Chris Evans", 100.0),
        (3, "leon", "Adrianne León", 100.0),
        (3, "leon2", "Adrianne Leon", 100.0),
        (4, "lee", "李小龙", 100.0),
        (5, "kerner", "Johannes B. Kerner", 100.0),
        (9, "obama", "Obama", 100.0),
    ]


def test_an_identity_matched_twice_reports_its_name_before_its_aliases():
    # b's alias normalises like a's name, which comes first in the file: b still reports its own name first.
    ids = idents([("a", "Barack Obama", ["Obama"]), ("b", "OBAMA", ["Barack-Obama"]), ("c", "Chris Evans", ["Evans"])])
    texts = pa.array(["Barack Obama and OBAMA", "Evans, Chris Evans", "barack obama"], pa.string())
    for mode, kw in (("normalized", {}), ("fuzzy", {"fuzzy_threshold": 80.0})):
        got = Matcher(ids, mode, **kw).match(texts).to_pylist()
        assert [(r["row"], r["identity_index"], r["matched_alias"]) for r in got] == [
            (0, 0, "Barack Obama"),
            (0, 1, "OBAMA"),
            (1, 2, "Chris Evans"),
            (2, 0, "Barack Obama"),
            (2, 1, "OBAMA"),
        ], mode


def test_paper_is_case_sensitive_literal_substring():
    texts = ["Chris Evansville", "CHRIS EVANS", "Adrianne Leon", "Johannes BX Kerner", "Johannes B. Kerner", "xObama"]
    assert found("paper", texts) == [
        (0, "evans", "Chris Evans", 100.0),  # the study's substring semantics
        (2, "leon2", "Adrianne Leon", 100.0),
        (4, "kerner", "Johannes B. Kerner", 100.0),  # '.' is literal, not a regex wildcard
        (5, "obama", "Obama", 100.0),
    ]


def test_paper_never_matches_across_rows_and_handles_slices():
    # Concatenated the rows read "...Barack" + "Obama..." -> must not match across the boundary.
    texts = pa.array(["zz", "talk by Barack", "Obama", "Chris Ev", "ans"])
    m = Matcher(IDS, "paper").match(texts.slice(1))
    assert m.column("row").to_pylist() == [1] and m.column("matched_alias").to_pylist() == ["Obama"]
    big = pa.array(["Barack Obama"] * 3, pa.large_string())
    assert Matcher(IDS, "normalized").match(big).column("row").to_pylist() == [0, 1, 2]


def test_fuzzy_keeps_scores_and_threshold():
    texts = ["Barak Obamma at the gala", "Chris Evens", "Chris Evans", "nobody here"]
    got = found("fuzzy", texts, fuzzy_threshold=85)
    rows = {(r, i): s for r, i, _a, s in got}
    assert rows[(2, "evans")] == 100.0
    assert 85 <= rows[(1, "evans")] < 100
    assert 85 <= rows[(0, "obama")] < 100
    assert not any(r == 3 for r, _i in rows)
    strict = found("fuzzy", texts, fuzzy_threshold=99)
    assert {(r, i) for r, i, _a, _s in strict} == {(2, "evans")}


def test_empty_mask_and_unknown_mode():
    assert empty_mask(pa.array([None, "", "  \t", "a"])).tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="unknown match mode"):
        Matcher(IDS, "regex")
