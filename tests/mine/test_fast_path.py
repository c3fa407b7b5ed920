"""The byte-level normalisation (`haystacks`) and the matcher built on it give exactly what the Arrow path gives.

`normalize_array` (Arrow's Unicode kernels, row by row) was the matcher's only path; it is now the reference the fast
one is held to: every row's text equal, and every match equal to a plain search of the padded names in the padded
Arrow-normalised captions (property-based, hypothesis), batches of ASCII only, of no ASCII and of both."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idia.mine import normalize
from idia.mine.match import Matcher
from idia.mine.normalize import haystacks, normalize_array

SETTINGS = settings(max_examples=200, deadline=None)
TRICKY = (
    "aAbBzZ09 -_'’.,;:!?@#/\\\t\n\r\x00\x7f\u00a0\u2028\u200béÉöØßẞİıſﬁ½²ⅣＡｂ"
    "\u0301\u0308\u0903ΣσςΩω漢字かなカナ한글Жж٣\U0001d16d\U0001d165\U0001f600"
)
CHARS = st.one_of(
    st.sampled_from(list(TRICKY)), st.characters(blacklist_categories=("Cs",)), st.characters(max_codepoint=127)
)
TEXTS = st.lists(st.one_of(st.none(), st.text(CHARS, max_size=40)), min_size=1, max_size=30)


def _rows(texts: pa.Array) -> list[str]:
    """Each row's normalised text as the haystacks hold it, in the input's order."""
    out: list[str | None] = [None] * len(texts)
    for h in haystacks(texts):
        rows = range(len(texts)) if h.rows is None else h.rows.tolist()
        for r, t in zip(rows, h.texts()):
            assert out[r] is None, f"row {r} in two haystacks"
            out[r] = t
    return out


@SETTINGS
@given(TEXTS)
def test_every_row_normalises_as_the_arrow_path_does(texts):
    arr = pa.array(texts, pa.string())
    want = [t or "" for t in normalize_array(arr).to_pylist()]
    assert _rows(arr) == want


@SETTINGS
@given(st.lists(st.text(st.characters(max_codepoint=127), max_size=50), min_size=1, max_size=30))
def test_ascii_batches_take_the_byte_path_alone_and_agree(texts):
    arr = pa.array(texts, pa.string())
    hs = haystacks(arr)
    assert len(hs) == 1 and hs[0].rows is None
    assert _rows(arr) == normalize_array(arr).to_pylist()


def _reference_matches(texts: pa.Array, names: list[str]) -> set[tuple[int, int]]:
    """(row, identity) pairs from the old path: the padded name a substring of the padded Arrow-normalised row."""
    keys = [f" {k} " for k in normalize_array(pa.array(names)).to_pylist()]
    rows = normalize_array(texts, pad=True).to_pylist()
    return {(r, i) for r, t in enumerate(rows) if t for i, k in enumerate(keys) if k.strip() and k in t}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_matches_equal_the_arrow_path_including_names_at_row_edges(data):
    pool = ["Anna", "Müller", "ANNA MÜLLER", "Zoë", "Li", "李小龙", "Σίσυφος", "o'neil", "x"]
    names = data.draw(st.lists(st.sampled_from(pool + ["Anna Muller", "Sisyfos", "Li Wei"]), min_size=1, max_size=6))
    names = list(dict.fromkeys(names))
    piece = st.one_of(st.sampled_from(pool), st.text(CHARS, max_size=8))
    texts = data.draw(st.lists(st.lists(piece, max_size=5).map(" ".join) | st.none(), min_size=1, max_size=20))
    ids = pa.table(
        {
            "identity_id": [f"id{i}" for i in range(len(names))],
            "name": names,
            "aliases": pa.array([[] for _ in names], pa.list_(pa.string())),
        }
    )
    arr = pa.array(texts, pa.string())
    got = Matcher(ids, "normalized").match(arr)
    pairs = set(zip(got.column("row").to_pylist(), got.column("identity_index").to_pylist()))
    assert pairs == _reference_matches(arr, names)


def test_a_name_split_across_two_captions_is_not_a_match():
    ids = pa.table({"identity_id": ["a"], "name": ["John Smith"], "aliases": pa.array([[]], pa.list_(pa.string()))})
    m = Matcher(ids, "normalized")
    for texts in (["photo of john", "smith at home"], ["photo of john -", "- smith"], ["Jöhn", "Smith"]):
        assert m.match(pa.array(texts)).num_rows == 0, texts
    assert m.match(pa.array(["x", "JOHN -- smith!", None, "john smith"])).column("row").to_pylist() == [1, 3]


def test_characters_whose_marks_reorder_go_through_the_arrow_path_whole():
    # Two spacing marks with different combining classes: NFKD reorders them, so this row is normalised in context.
    text = "x\U0001d16d\U0001d165y Anna"
    hs = haystacks(pa.array(["plain ascii", text, "Zoë"]))
    assert [None if h.rows is None else h.rows.tolist() for h in hs] == [[0], [1], [2]]
    assert normalize._CHARS[int.from_bytes("\U0001d16d".encode(), "big")] is None
    assert (
        _rows(pa.array(["plain ascii", text, "Zoë"]))
        == normalize_array(pa.array(["plain ascii", text, "Zoë"])).to_pylist()
    )


@pytest.mark.parametrize("size", [1, 8192, 70_000])
def test_large_batches_and_long_captions(size):
    rng = np.random.default_rng(size)
    words = np.array(["Anna", "Müller", "—", "photo", "漢字", "ß", "x", "", "  "], object)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(0, 12)))) for _ in range(size)]
    texts[0] = "Anna Müller " * 20_000  # a 240 kB caption
    arr = pa.array(texts)
    assert _rows(arr) == normalize_array(arr).to_pylist()


def _fuzzy_reference(texts: list[str | None], names: list[str], threshold: float) -> dict[tuple[int, int], float]:
    """The fuzzy rule written plainly, row by row (the matcher's first implementation): every window of a name's
    token length whose token at some position equals the name's token there, or shares its first 3 characters
    (both 3 or longer), scored with rapidfuzz's ratio on the normalised strings; the best score per (row, name)."""
    from rapidfuzz import fuzz

    keys = normalize_array(pa.array(names)).to_pylist()
    best: dict[tuple[int, int], float] = {}
    for r, text in enumerate(normalize_array(pa.array(texts, pa.string())).to_pylist()):
        toks = (text or "").split(" ") if text else []
        for i, key in enumerate(keys):
            kt = key.split(" ")
            for start in range(len(toks) - len(kt) + 1):
                window = toks[start : start + len(kt)]
                if not any(c == t or (len(c) >= 3 and len(t) >= 3 and c[:3] == t[:3]) for c, t in zip(window, kt)):
                    continue
                score = fuzz.ratio(key, " ".join(window), score_cutoff=threshold)
                if score:
                    best[(r, i)] = max(best.get((r, i), 0.0), score)
    return best


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzzy_matches_and_scores_equal_the_plain_rule(data):
    pool = ["Anna Miller", "Ana Müller", "Jo Li", "Theodore Smith", "Zoë Kravitz", "李 小龙", "Bo", "Anna-Lena Berg"]
    names = list(dict.fromkeys(data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5))))
    word = st.sampled_from(
        ["anna", "ana", "millers", "muller", "the", "theo", "smith", "smyth", "jo", "li", "bo", "zoe"]
    )
    piece = st.one_of(word, st.sampled_from(pool), st.text(CHARS, max_size=6))
    texts = data.draw(st.lists(st.lists(piece, max_size=6).map(" ".join) | st.none(), min_size=1, max_size=15))
    threshold = data.draw(st.sampled_from([60.0, 80.0, 90.0, 100.0]))
    ids = pa.table(
        {
            "identity_id": [f"id{i}" for i in range(len(names))],
            "name": names,
            "aliases": pa.array([[] for _ in names], pa.list_(pa.string())),
        }
    )
    got = Matcher(ids, "fuzzy", threshold).match(pa.array(texts, pa.string())).to_pylist()
    assert {(g["row"], g["identity_index"]): g["match_score"] for g in got} == _fuzzy_reference(texts, names, threshold)


def test_a_null_slot_that_owns_bytes_matches_nothing():
    # Arrow lets a null slot keep bytes ("anna müller" here, behind a null): readers rarely do it, the matcher copes.
    data = "anna müller" + "Anna Müller"
    offsets = np.array([0, len("anna müller".encode()), len(data.encode())], np.int32)
    arr = pa.Array.from_buffers(
        pa.string(),
        2,
        [pa.py_buffer(np.packbits([0, 1], bitorder="little")), pa.py_buffer(offsets), pa.py_buffer(data.encode())],
    )
    assert arr.to_pylist() == [None, "Anna Müller"]
    ids = pa.table({"identity_id": ["a"], "name": ["Anna Müller"], "aliases": pa.array([[]], pa.list_(pa.string()))})
    for mode in ("normalized", "fuzzy", "literal", "paper"):
        assert Matcher(ids, mode).match(arr).column("row").to_pylist() == [1], mode
    assert _rows(arr) == ["", "anna muller"]
