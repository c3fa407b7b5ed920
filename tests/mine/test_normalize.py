"""Normalisation rules: the vectorised Arrow path equals the pure-Python reference; token map back to the caption."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from idia.mine.normalize import normalize_array, normalize_text, tokenize_with_offsets

CASES = [
    ("Adrianne León", "adrianne leon"),
    ("ADRIANNE LEON", "adrianne leon"),
    ("Bernhard Hoe\u0308cker", "bernhard hoecker"),  # NFD input
    ("Obama's", "obama s"),
    ("Harriet Herbig-Matten", "harriet herbig matten"),
    ("Johannes B. Kerner", "johannes b kerner"),
    ("  --Chris__Evans!!  ", "chris evans"),
    ("Straße ﬁnal", "strasse final"),  # casefold-only fold, ligature (NFKD)
    ("ＦＵＬＬ　ＷＩＤＴＨ", "full width"),
    ("Владимир Высоцкий", "владимир высоцкии"),  # й = и + breve: marks go in every script
    ("ΟΔΥΣΣΕΥΣ", "οδυσσευσ"),
    ("我爱李小龙", "我 爱 李 小 龙"),  # Han: one token per character
    ("", ""),
    ("!!!", ""),
]


@pytest.mark.parametrize("raw, norm", CASES)
def test_rules(raw, norm):
    assert normalize_text(raw) == norm
    assert normalize_array(pa.array([raw])).to_pylist() == [norm]


def test_arrow_path_equals_reference_on_random_unicode():
    rng = random.Random(3)
    alphabet = "aAéÉöÖßſ ﬁ-_.,'’\t\n0123456789ǅΣσςЖжの日本語한국\u0301\u0308\u200b\u00a0İıŁł①½"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    got = normalize_array(pa.array(texts + [None])).to_pylist()
    assert got[:-1] == [normalize_text(t) for t in texts]
    assert got[-1] is None


def test_pad_and_large_string_and_chunked():
    arr = pa.chunked_array([pa.array(["A b"], pa.large_string()), pa.array([None], pa.large_string())])
    assert normalize_array(arr, pad=True).to_pylist() == [" a b ", None]


def test_token_offsets_map_back_to_raw_text():
    raw = "Hi, Adrianne León's cat"
    toks = tokenize_with_offsets(raw)
    assert [t.text for t in toks] == normalize_text(raw).split(" ")
    assert [raw[t.start : t.end] for t in toks] == ["Hi", "Adrianne", "León", "s", "cat"]
    nfd = "Leo\u0301n!"
    (tok,) = tokenize_with_offsets(nfd)
    assert tok.text == "leon" and nfd[tok.start : tok.end] == "Leo\u0301n"
