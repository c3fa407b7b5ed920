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

The matcher scans `haystacks`: a batch's normalised captions in one buffer, one boundary space between rows. For
ASCII captions (most of LAION) rules 1-4 are identities and rule 5 folds every byte that is not [A-Za-z0-9], so a
byte-level path does it on the batch's whole buffer with numpy (a 256-entry table, one collapse of separator runs,
boundaries moved by the bytes dropped); the other captions go through the Arrow path (`normalize_array`). Both give
`normalize_text`'s strings (tests/mine/test_fast_path.py).
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import numpy as np
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


# Rule 5 on ASCII bytes: letters lower-cased, digits kept, every other byte a separator (a space, collapsed below).
_ASCII_FOLD = np.full(256, ord(" "), np.uint8)
_ASCII_FOLD[ord("a") : ord("z") + 1] = np.arange(ord("a"), ord("z") + 1)
_ASCII_FOLD[ord("A") : ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1)
_ASCII_FOLD[ord("0") : ord("9") + 1] = np.arange(ord("0"), ord("9") + 1)
_SPACE = ord(" ")


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64, len + 1, from 0) and the data bytes (uint8) of a string array, zero-copy."""
    dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=dtype)[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    if not len(offsets) or bufs[2] is None:
        return np.zeros(len(arr) + 1, np.int64), np.zeros(0, np.uint8)
    base = int(offsets[0])
    return offsets - base, np.frombuffer(bufs[2], np.uint8)[base : int(offsets[-1])]


def ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """start[i], start[i] + 1, ..., start[i] + count[i] - 1 for every i, concatenated (int64): the positions of many
    byte runs, or CSR members, at once."""
    total = int(count.sum()) if len(count) else 0
    return np.arange(total, dtype=np.int64) + np.repeat(start - (np.cumsum(count) - count), count)


class Haystack(NamedTuple):
    """Normalised captions laid out for one automaton pass: `data` holds every row's normalised text, each row
    between two boundary spaces (one shared by neighbouring rows), so a padded name " john smith " found at
    [s, e) lies in row r = searchsorted(starts, s, "right") - 1 if e <= ends[r] (else it spans two rows).
    `rows`: each row's position in the caller's array (None: all rows, in order)."""

    data: np.ndarray  # uint8
    starts: np.ndarray  # int64 per row: its opening boundary space
    ends: np.ndarray  # int64 per row: one past its closing boundary space
    rows: np.ndarray | None

    def texts(self) -> list[str]:
        """Each row's normalised text (the reference form `normalize_text` gives), for tests and fuzzy scoring."""
        raw = self.data.tobytes()
        return [raw[s:e].decode("utf-8").strip(" ") for s, e in zip(self.starts.tolist(), self.ends.tolist())]


def without_null_bytes(texts: pa.Array) -> pa.Array:
    """The array with its nulls as empty strings where a null slot owns bytes (Arrow allows it; readers rarely do
    it), else as it is: the byte paths then treat a null as an empty row, at no copy in the usual case."""
    if not texts.null_count:
        return texts
    offsets, _ = string_buffers(texts)
    if not np.diff(offsets)[~np.asarray(texts.is_valid())].any():
        return texts
    return pc.fill_null(texts, "")


def _join(data: np.ndarray, offsets: np.ndarray, fold: bool) -> Haystack:
    """Rows (`data` cut at `offsets`) joined with one boundary space before each row and after the last, each run of
    spaces inside a row collapsed to one; with `fold`, the bytes first go through the ASCII table. Boundary spaces
    are always kept, so a row's own trailing space may stand next to one: harmless for the match rule."""
    n = len(offsets) - 1
    bounds = offsets + np.arange(n + 1, dtype=np.int64)  # where the boundary spaces go
    out = np.full(len(data) + n + 1, _SPACE, np.uint8)
    is_bound = np.zeros(len(out), bool)
    is_bound[bounds] = True
    out[~is_bound] = _ASCII_FOLD[data] if fold else data
    if len(data):
        space = out == _SPACE
        drop = np.zeros(len(out), bool)
        np.logical_and(space[1:], space[:-1], out=drop[1:])
        drop[bounds] = False
        dropped = np.add.reduceat(drop, bounds[:-1], dtype=np.int64) if n else np.zeros(0, np.int64)
        bounds = bounds - np.concatenate([[0], np.cumsum(dropped)])
        out = out[~drop]
    return Haystack(out, bounds[:-1], bounds[1:] + 1, None)


# What each non-ASCII character (by its UTF-8 bytes, as an integer) normalises to, separators written as spaces;
# None: a character whose row must go through the Arrow path whole (see _char_maps).
_CHARS: dict[int, bytes | None] = {}


def _char_maps(keys: list[int]) -> None:
    """Fill _CHARS for new characters, with the Arrow path itself: "a" + c + "a" normalises to "a" + m + "a".
    The rules act on each character alone (NFKD decomposes without composing, the marks it yields are dropped, Arrow
    lower-cases codepoint by codepoint, the other rules are character classes), except canonical reordering, which
    can swap two marks that stay (a non-Mn mark with a combining class): such characters are None."""
    new = [k for k in keys if k not in _CHARS]
    if not new:
        return
    chars: list[str | None] = []
    for k in new:
        try:
            chars.append(k.to_bytes((k.bit_length() + 7) // 8, "big").decode("utf-8"))
        except UnicodeDecodeError:  # not valid UTF-8 here: the whole row goes to Arrow, which says what it makes of it
            chars.append(None)
    probe = normalize_array(pa.array([f"a{c}a" for c in chars if c is not None], pa.string())).to_pylist()
    it = iter(probe)
    for k, c in zip(new, chars):
        if c is None:
            _CHARS[k] = None
            continue
        r = next(it)
        kept = [d for d in unicodedata.normalize("NFKD", c) if unicodedata.category(d) != "Mn"]
        if len(r) < 2 or r[0] != "a" or r[-1] != "a" or any(unicodedata.combining(d) for d in kept):
            _CHARS[k] = None
        else:
            _CHARS[k] = r[1:-1].encode("utf-8")


def _expand(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with non-ASCII text, normalised on bytes: ASCII bytes through the table, each other character replaced by
    its normalisation (_CHARS). Returns the new bytes and offsets, and the rows that hold a character without one."""
    hi = data >= 0x80
    lead = np.flatnonzero(data >= 0xC0)  # first byte of each multi-byte character
    size = 2 + (data[lead] >= 0xE0) + (data[lead] >= 0xF0)
    key = data[lead].astype(np.int64)
    for j in (1, 2, 3):
        more = size > j
        key[more] = key[more] * 256 + data[np.minimum(lead[more] + j, len(data) - 1)]
    uniq, inv = np.unique(key, return_inverse=True)
    keys = uniq.tolist()
    _char_maps(keys)
    mapped = [_CHARS[k] for k in keys]
    odd_char = np.array([m is None for m in mapped], bool)
    table = [m or b"" for m in mapped]
    tlen = np.array([len(m) for m in table], np.int64)
    tstart = np.concatenate([[0], np.cumsum(tlen)[:-1]]).astype(np.int64)
    tbytes = np.frombuffer(b"".join(table), np.uint8) if any(table) else np.zeros(0, np.uint8)
    # Output length of each input byte: 1 for ASCII, the mapped length at a lead byte, 0 for continuation bytes.
    olen = (~hi).astype(np.int64)
    occ_len = tlen[inv]
    olen[lead] = occ_len
    ends = np.cumsum(olen)
    pos = ends - olen
    out = np.empty(int(ends[-1]) if len(ends) else 0, np.uint8)
    out[pos[~hi]] = _ASCII_FOLD[data[~hi]]
    out[ranges(pos[lead], occ_len)] = tbytes[ranges(tstart[inv], occ_len)]
    new_offsets = np.concatenate([[0], ends])[offsets]
    odd_rows = np.unique(np.searchsorted(offsets, lead[odd_char[inv]], side="right") - 1)
    return out, new_offsets, odd_rows


def haystacks(texts: pa.Array | pa.ChunkedArray) -> list[Haystack]:
    """The captions normalised for matching, as one to three haystacks: ASCII rows folded on bytes (rules 1-4 are
    identities for ASCII), rows with other characters normalised character by character on bytes, and the rare row
    with a character that must be normalised in context through `normalize_array`. Nulls become empty rows."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = without_null_bytes(texts)
    is_ascii = np.asarray(pc.fill_null(pc.string_is_ascii(texts), True))
    if is_ascii.all():
        return [_join(*_parts(texts), fold=True)]
    out = []
    if is_ascii.any():
        out.append(_join(*_parts(texts.filter(pa.array(is_ascii))), fold=True)._replace(rows=np.flatnonzero(is_ascii)))
    rows = np.flatnonzero(~is_ascii)
    data, offsets, odd = _expand(*_parts(texts.take(pa.array(rows))))
    if len(odd):  # rare: redo without the odd rows, which go through Arrow whole
        keep = np.ones(len(rows), bool)
        keep[odd] = False
        out.append(
            _join(*_parts(normalize_array(texts.take(pa.array(rows[odd])))), fold=False)._replace(rows=rows[odd])
        )
        rows = rows[keep]
        data, offsets, _ = _expand(*_parts(texts.take(pa.array(rows))))
    out.append(_join(data, offsets, fold=False)._replace(rows=rows))
    return out


def _parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    offsets, data = string_buffers(arr)
    return data, offsets


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
