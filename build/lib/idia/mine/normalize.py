"""Caption/name normalisation for whole-token matching: one vectorised Arrow path and a pure-Python reference.

Rules (the `normalized` matching mode; names and captions go through the same function):
1. Unicode NFKD (compatibility decomposition: ligatures, full-width forms, superscripts folded, and
   accented letters split into base + combining mark),
2. combining marks (category Mn) removed: "León" -> "Leon", "Hoëcker" -> "Hoecker",
3. lower-cased, plus the casefold-only foldings "ß" -> "ss" and final "ς" -> "σ",
4. each Han / Hiragana / Katakana character becomes a token of its own (no spaces between words there),
5. every run of characters that are not letters, digits or spacing marks (L*, N*, Mc) becomes ONE space,
   leading/trailing separators dropped.
A normalised text is a sequence of tokens separated by single spaces. Matching pads both the name and the
caption with one space each side, so a name only matches as a whole token sequence: "Obama's" -> "obama s"
contains the token "obama"; "Chris Evansville" does not contain "chris evans".
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

_CASEFOLD_EXTRA = {"ß": "ss", "ς": "σ", "ẞ": "ss"}
# RE2 (Arrow) and Python `re` spell the same classes differently; both mean "not a token character".
_SEP_RE2 = r"[^\p{L}\p{N}\p{Mc}]+"
_MN_RE2 = r"\p{Mn}+"
# Scripts written without spaces between words (Han, Hiragana, Katakana): every character is its own token,
# so a name written in them can match inside a longer run. Explicit ranges, identical for RE2 and Python.
_CJK_RANGES = [(0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F)]
_CJK_RE2 = "([" + "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in _CJK_RANGES) + "])"
_CJK_PY = re.compile("([" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _CJK_RANGES) + "])")


def _is_token_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LN" or cat == "Mc"


def normalize_text(text: str | None) -> str:
    """Reference implementation (pure Python) of the rules in the module docstring."""
    if not text:
        return ""
    s = unicodedata.normalize("NFKD", text)
    s = "".join(ch for ch in s if unicodedata.category(ch) != "Mn").lower()
    for k, v in _CASEFOLD_EXTRA.items():
        s = s.replace(k, v)
    s = _CJK_PY.sub(r" \1 ", s)
    out: list[str] = []
    pending_sep = False
    for ch in s:
        if _is_token_char(ch):
            if pending_sep and out:
                out.append(" ")
            pending_sep = False
            out.append(ch)
        else:
            pending_sep = True
    return "".join(out)


def normalize_array(texts: pa.Array | pa.ChunkedArray, pad: bool = False) -> pa.Array:
    """Vectorised normalisation of a string array (nulls stay null). pad=True adds one space each side."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    s = pc.utf8_normalize(texts, form="NFKD")
    s = pc.replace_substring_regex(s, _MN_RE2, "")
    s = pc.utf8_lower(s)
    for k, v in _CASEFOLD_EXTRA.items():
        s = pc.replace_substring(s, k, v)
    s = pc.replace_substring_regex(s, _CJK_RE2, r" \1 ")
    s = pc.replace_substring_regex(s, _SEP_RE2, " ")
    s = pc.utf8_trim(s, " ")
    if pad:
        s = pc.binary_join_element_wise(" ", s, " ", "")
    return s


class Token(NamedTuple):
    text: str  # normalised token
    start: int  # character offset in the raw text
    end: int


def tokenize_with_offsets(text: str | None) -> list[Token]:
    """Normalised tokens with their character span in the raw text: the map back from a match to the caption.

    Raw runs of token characters (plus their combining marks) are normalised one by one; where the
    normalisation of a run yields several tokens (e.g. a compatibility character that decomposes into a
    separator), each gets the run's span.
    """
    if not text:
        return []
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        if not _is_token_char(text[i]):
            i += 1
            continue
        j = i + 1
        while j < n and (_is_token_char(text[j]) or unicodedata.category(text[j]) == "Mn"):
            j += 1
        for t in normalize_text(text[i:j]).split(" "):
            if t:
                tokens.append(Token(t, i, j))
        i = j
    return tokens


def name_key(name: str) -> str:
    """The one "is this the same name" key of the project: the name under the matching normalisation (accents, case,
    punctuation and spacing folded). Two names with the same key cannot be told apart in a caption, so they must
    not both be candidates, and a fake candidate must not share a real identity's key."""
    return normalize_text(name)
