"""Matcher edge cases per mode: whole tokens, overlaps, aliases, duplicates by normalisation, buffers, fuzzy scores."""

from __future__ import annotations

import re

import numpy as np
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


def test_literal_is_case_sensitive_substring():
    texts = ["Chris Evansville", "CHRIS EVANS", "Adrianne Leon", "Johannes BX Kerner", "Johannes B. Kerner", "xObama"]
    assert found("literal", texts) == [
        (0, "evans", "Chris Evans", 100.0),  # a substring, no word boundaries
        (2, "leon2", "Adrianne Leon", 100.0),
        (4, "kerner", "Johannes B. Kerner", 100.0),  # '.' is a dot here
        (5, "obama", "Obama", 100.0),
    ]


def test_paper_is_the_studys_regex_search():
    texts = ["Chris Evansville", "CHRIS EVANS", "Adrianne Leon", "Johannes BX Kerner", "Johannes B. Kerner", "xObama"]
    assert found("paper", texts) == [
        (0, "evans", "Chris Evans", 100.0),
        (2, "leon2", "Adrianne Leon", 100.0),
        (3, "kerner", "Johannes B. Kerner", 100.0),  # '.' matches any character, as in the study
        (4, "kerner", "Johannes B. Kerner", 100.0),
        (5, "obama", "Obama", 100.0),
    ]


@pytest.mark.parametrize("mode", ["paper", "literal"])
def test_raw_modes_never_match_across_rows_and_handle_slices(mode):
    # Concatenated the rows read "...Barack" + "Obama..." -> must not match across the boundary.
    texts = pa.array(["zz", "talk by Barack", "Obama", "Chris Ev", "ans", "Johannes B", ". Kerner"])
    m = Matcher(IDS, mode).match(texts.slice(1))
    assert m.column("row").to_pylist() == [1] and m.column("matched_alias").to_pylist() == ["Obama"]
    big = pa.array(["Barack Obama"] * 3, pa.large_string())
    assert Matcher(IDS, "normalized").match(big).column("row").to_pylist() == [0, 1, 2]


# Names whose regex and literal readings differ, with captions built to tell them apart.
REGEX_NAMES = idents(
    [
        ("kerner", "Johannes B. Kerner", []),  # '.' any character
        ("tj", "T.J. Thyne", []),
        ("jcvd", "Jean-Claude Van Damme", []),  # '-' is literal outside a class
        ("oneal", "Shaquille O'Neal", []),
        ("group", "Bob (Rob) Smith", []),  # a group: matches "Bob Rob Smith", not the parentheses
        ("plus", "Dave+ Matthews", []),  # '+' repeats the 'e'
        ("alt", "Jay Z|Beyonce", []),  # an alternation: no required literal, every row is checked
        ("anchor", "^Cher", []),  # anchored at the caption's start
        ("case", "(?i)madonna", []),  # an inline flag: case-insensitive, so no case-sensitive prefilter
        ("plain", "Tom Hanks", ["T. Hanks"]),
    ]
)
REGEX_CAPTIONS = [
    "Johannes BX Kerner",
    "Johannes B. Kerner",
    "Johannes B Kerner",
    "TXJY Thyne and T.J. Thyne",
    "Jean-Claude Van Damme kicks",
    "jean-claude van damme",
    "Shaquille O'Neal dunk",
    "Bob (Rob) Smith",
    "Bob Rob Smith",
    "Daveeee Matthews",
    "Dave+ Matthews",
    "Jay Z live",
    "Jay-Z",
    "Beyonce sings",
    "Cher on stage",
    "with Cher",
    "MADONNA tour",
    "Tom Hanks and T- Hanks",
    None,
    "",
    "   ",
    "nothing to see",
]


@pytest.mark.filterwarnings("ignore:This pattern is interpreted as a regular expression")
@pytest.mark.parametrize("mode,regex", [("paper", True), ("literal", False)])
def test_raw_modes_equal_pandas_str_contains(mode, regex):
    pd = pytest.importorskip("pandas")
    got = Matcher(REGEX_NAMES, mode).match(pa.array(REGEX_CAPTIONS, pa.string()))
    pairs = set(zip(got.column("row").to_pylist(), got.column("identity_index").to_pylist()))
    captions = pd.Series(REGEX_CAPTIONS, dtype=object)
    expected = set()
    for i, row in enumerate(REGEX_NAMES.to_pylist()):
        for raw in [row["name"], *row["aliases"]]:
            hit = captions.str.contains(raw, regex=regex, na=False)  # the study's call (regex=True is its default)
            expected |= {(r, i) for r in hit[hit].index if captions[r].strip()}  # blank captions are counted apart
    assert pairs == expected
    assert len(expected) >= 7  # the captions do exercise the names
    if mode == "paper":
        assert (0, 0) in pairs and (3, 1) in pairs and (8, 4) in pairs and (9, 5) in pairs and (16, 8) in pairs
        assert (13, 6) in pairs and (14, 7) in pairs
        assert (7, 4) not in pairs and (15, 7) not in pairs


def test_paper_mode_names_an_invalid_pattern():
    from idia.mine.match import PatternError, check_patterns

    bad = idents([("ok", "Chris Evans", []), ("bad", "Bobby (Robert", ["x"])])
    with pytest.raises(
        PatternError, match=re.escape("line 2, identity 'bad': name 'Bobby (Robert' is not a valid regular")
    ):
        check_patterns(bad, "paper")
    check_patterns(bad, "literal")  # the same name is fine as a literal
    with pytest.raises(PatternError, match="Bobby"):
        Matcher(bad, "paper")


def test_paper_pattern_plans():
    from idia.mine.match import paper_pattern

    assert paper_pattern("Tom Hanks").literal == "Tom Hanks"
    assert paper_pattern(r"Tom\.Hanks").literal == "Tom.Hanks"  # an escaped dot is the literal text
    p = paper_pattern("Johannes B. Kerner")
    assert p.literal is None and p.prefilter == "Johannes B" and p.regex.search("Johannes B! Kerner")
    assert paper_pattern("Jay Z|Jay-Z").prefilter == "Jay"  # re factors out the common prefix: still required
    assert paper_pattern("Jay Z|Beyonce").prefilter is None
    assert paper_pattern("(?i)madonna").prefilter is None


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


def test_fuzzy_scores_a_large_batch_in_slices_with_the_same_matches(monkeypatch):
    import idia.mine.match as match

    texts = ["Barak Obamma at the gala", "Chris Evens", None, "Chris Evans and Barack Obama", "nobody here", ""] * 7
    whole = found("fuzzy", texts, fuzzy_threshold=85)
    monkeypatch.setattr(match, "FUZZY_ROWS", 4)  # 42 captions in 11 slices, slice edges inside the repeats
    sliced = found("fuzzy", texts, fuzzy_threshold=85)
    assert sliced == whole and len(whole) == 4 * 7
    assert [r for r, *_ in sliced] == sorted(r for r, *_ in sliced) and max(r for r, *_ in sliced) == 39


def test_empty_mask_and_unknown_mode():
    assert empty_mask(pa.array([None, "", "  \t", "a"])).tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="unknown match mode"):
        Matcher(IDS, "regex")


@pytest.mark.filterwarnings("ignore:This pattern is interpreted as a regular expression")
def test_paper_counts_equal_pandas_on_generated_captions_for_the_studys_548_names(tmp_path):
    """The study's own call, pandas str.contains(name), over a generated LAION-shaped sample naming its 548 people."""
    pd = pytest.importorskip("pandas")
    import pyarrow.parquet as pq

    from idia.core.census import PUBLISHED_COUNTS_CSV
    from idia.mine.names import read_names
    from idia.mine.sample import SampleConfig, generate

    generate(SampleConfig(out=str(tmp_path), shards=1, rows_per_shard=4000, names_file=str(PUBLISHED_COUNTS_CSV)))
    names = read_names(tmp_path / "names.csv")
    texts = pq.read_table(tmp_path / "shards" / "part-00000.parquet").column("TEXT").combine_chunks()
    for mode, regex in (("paper", True), ("literal", False)):
        got = Matcher(names, mode).match(texts).column("identity_index").to_numpy()
        counts = np.bincount(got, minlength=names.num_rows)
        captions = pd.Series(texts.to_pylist(), dtype=object)
        blank = captions.isna() | (captions.fillna("").str.strip() == "")
        expected = [
            int((captions.str.contains(n, regex=regex, na=False) & ~blank).sum())
            for n in names.column("name").to_pylist()
        ]
        assert counts.tolist() == expected, mode
        assert sum(expected) > 300  # the sample does name them


@pytest.mark.parametrize("mode", ["normalized", "paper", "literal", "fuzzy"])
def test_a_matcher_shipped_without_its_automaton_matches_as_one_built_in_place(mode):
    """The driver prepares the matchers (build=False) and ships them pickled; a worker builds only the automaton, on
    first use, from the strings the pickle carries: the same matches as a matcher built where it is used."""
    import pickle

    texts = pa.array(
        [
            "Barack Obama's speech",
            "CHRIS EVANS",
            "adrianne leon",
            "我爱李小龙",
            "Johannes B Kerner",
            "Bruce Le",
            None,
            "",
        ]
        * 3,
        pa.string(),
    )
    prepared = Matcher(IDS, mode, build=False)
    assert prepared._automaton is None  # nothing built on the driver
    shipped = pickle.loads(pickle.dumps(prepared))
    assert shipped._automaton is None  # the pickle carries the strings, not an automaton
    here = Matcher(IDS, mode)
    assert here._automaton is not None  # built at once where it is used (a caller timing match() times matching)
    assert shipped.match(texts).equals(here.match(texts)) and here.match(texts).num_rows > 0
    assert shipped._automaton is not None and pickle.loads(pickle.dumps(shipped))._automaton is None
