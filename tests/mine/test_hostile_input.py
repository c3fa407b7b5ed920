"""Hostile and arbitrary input, property-based (hypothesis): the names parser, the caption normaliser and the
matcher never crash on what a file can hold, account for every line and row, and agree with their references.

A names file of any bytes is parsed or refused with an InputFileError naming the file (never another exception);
normalisation is idempotent and the vectorised (Arrow) path equals the reference one; the automaton's counts equal
the brute-force oracle's on captions built from names, their variants and noise, 1 MB captions and NUL bytes
included."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idia.core.errors import InputFileError
from idia.mine.match import Matcher
from idia.mine.names import parse_names
from idia.mine.normalize import normalize_array, normalize_text
from idia.mine.sample import expected_counts

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text a caption or a names file can hold: any Unicode but lone surrogates (UTF-8 cannot carry them), weighted
# towards the characters the rules treat specially (separators, marks, case, CJK, NUL, line breaks). KNOWN_TEXT, for
# the comparison with the reference, leaves out code points this Python's Unicode tables leave unassigned (Cn): 3.11
# knows Unicode 14, Arrow's RE2 and utf8proc a later one, so a letter assigned since (U+31350, CJK Extension H, found
# by this test) is a separator to the reference and a letter to the Arrow path the job uses for names and captions.
TRICKY = "aAéÉöØßİıſﬁ-_'’.,;:!?@#/\\ \t\n\r\x00\u00a0\u2028\u200b\u0301\u0308漢字かな한글Ωω٣"
CHARS = st.one_of(st.sampled_from(list(TRICKY)), st.characters(blacklist_categories=("Cs",)))
TEXT = st.text(CHARS, max_size=60)
KNOWN_TEXT = st.text(
    st.one_of(st.sampled_from(list(TRICKY)), st.characters(blacklist_categories=("Cs", "Cn"))), max_size=60
)


@SETTINGS
@given(KNOWN_TEXT)
def test_normalisation_is_idempotent_and_the_arrow_path_equals_the_reference(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert normalize_array(pa.array([text])).to_pylist() == [once]


def test_normalisation_of_a_one_megabyte_caption_and_of_nul_bytes():
    big = ("Anna Müller\x00 and friends — " * 40_000)[:1_000_000]
    assert normalize_array(pa.array([big])).to_pylist() == [normalize_text(big)]
    assert normalize_text("a\x00b") == "a b"


@SETTINGS
@given(st.binary(max_size=400) | st.text(CHARS, max_size=300).map(lambda t: t.encode("utf-8")))
def test_a_names_file_of_any_bytes_is_parsed_or_refused_naming_the_file(tmp_path, data):
    path = tmp_path / "names.txt"
    path.write_bytes(data)
    try:
        table, stats = parse_names(path)
    except InputFileError as exc:
        assert str(path) in str(exc)
        return
    # parsed: every identity has a non-empty, normalised name and a path-safe id; the lines add up
    names = table.column("name").to_pylist()
    assert all(n and n == n.strip() for n in names)
    assert stats["identities"] == table.num_rows <= stats["lines"] - stats["blank_lines"]
    assert all(i and "/" not in i and ".." not in i for i in table.column("identity_id").to_pylist())


NAMES = ["Anna Müller", "José Ramos", "Li Wei", "O'Brien Kate", "Ann"]
IDENTS = [(f"id{i}", n, [], None) for i, n in enumerate(NAMES)]
PIECES = st.sampled_from(
    NAMES
    + ["anna muller", "ANNA MÜLLER", "Anna-Müller", "Annabel", "josé  ramos", "JoseRamos", "li wei's", "O’Brien Kate"]
    + [" ", ", ", " - ", "\x00", "\n", "漢字", "the", "photo of", "é", "\u0301"]
)
CAPTION = st.one_of(st.none(), st.lists(PIECES, max_size=8).map("".join), TEXT)


@SETTINGS
@given(st.lists(CAPTION, max_size=25))
def test_the_matcher_counts_what_the_oracle_counts(captions):
    table = pa.table(
        {
            "identity_id": [i[0] for i in IDENTS],
            "name": [i[1] for i in IDENTS],
            "aliases": pa.array([[] for _ in IDENTS], pa.list_(pa.string())),
            "sex": pa.array([None] * len(IDENTS), pa.string()),
            "source_line": pa.array(range(1, len(IDENTS) + 1), pa.int32()),
        }
    )
    texts = pa.array(captions, pa.string())
    urls = [f"u{r}" for r in range(len(captions))]
    want = expected_counts(IDENTS, captions, urls)
    for mode in ("normalized", "literal", "paper"):
        found = Matcher(table, mode).match(texts).to_pydict()
        got = {i[0]: set() for i in IDENTS}
        for row, ident in zip(found["row"], found["identity_index"]):
            got[IDENTS[ident][0]].add(row)
        assert {k: len(v) for k, v in got.items()} == {k: v[0] for k, v in want[mode].items()}, mode


@pytest.mark.parametrize("bad", [b"\xff\xfe broken", "Anna\udcff".encode("utf-8", "surrogatepass")])
def test_invalid_utf8_in_a_names_file_names_the_line(tmp_path, bad):
    path = tmp_path / "names.txt"
    path.write_bytes(b"Good Name\n" + bad + b"\n")
    with pytest.raises(InputFileError, match=r"names.txt.*line 2"):
        parse_names(path)
