"""Find which identities a batch of captions mentions: normalized / paper / fuzzy matching over Arrow arrays.

A Matcher is built once from the identities table (one automaton over every name and alias) and applied to
record batches; it returns one row per (caption row, identity), the name or alias that matched, and a score.
Pure and engine-free: the Spark job calls it inside mapInArrow, the benchmark's floor calls it directly.

Modes:
- normalized: names and captions normalised (idia.normalize), both padded with a space, one Aho-Corasick
  automaton over the padded names run over the whole batch's byte buffer at once: whole-token matches only,
  overlapping names all reported ("Barack Obama" also reports "Obama" if both are names).
- paper: the study's semantics, a case-sensitive literal substring of the raw caption (pandas
  str.contains without its regex side effects), also one automaton over the raw batch buffer.
- fuzzy: tokens of each name are blocked on (exact token, and 3-character token prefix); every caption
  window of the name's token length that shares a block with it is scored with rapidfuzz's ratio on the
  normalised strings; matches >= threshold are kept with their best score.
"""

from __future__ import annotations

from dataclasses import dataclass

import ahocorasick_rs
import numpy as np
import pyarrow as pa
from rapidfuzz import fuzz

from idia.normalize import normalize_array

MODES = ("normalized", "paper", "fuzzy")

#: Columns of a match table: row index in the batch, identity index in the identities table.
MATCH_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64()),
        pa.field("identity_index", pa.int32()),
        pa.field("matched_alias", pa.string()),
        pa.field("match_score", pa.float64()),
    ]
)


@dataclass
class _Pattern:
    identities: list[int]  # identity indexes sharing this key (two names can normalise alike)
    aliases: list[str]  # the raw name/alias per identity, same order


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Offsets (int64, len+1, relative to the data start) and data buffer of a string array, zero-copy."""
    if pa.types.is_large_string(arr.type):
        dtype = np.int64
    else:
        dtype = np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=dtype)[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = memoryview(bufs[2]).cast("B") if bufs[2] is not None else memoryview(b"")
    base = int(offsets[0]) if len(offsets) else 0
    return offsets - base, data[base : int(offsets[-1]) if len(offsets) else 0]


class Matcher:
    """Built once per process from an IDENTITIES table; `match(texts)` on any number of batches."""

    def __init__(self, identities: pa.Table, mode: str = "normalized", fuzzy_threshold: float = 90.0):
        if mode not in MODES:
            raise ValueError(f"unknown match mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode = mode
        self.threshold = float(fuzzy_threshold)
        self.n_identities = identities.num_rows
        names = identities.column("name").to_pylist()
        aliases = identities.column("aliases").to_pylist()
        raws = [(i, raw) for i, (name, al) in enumerate(zip(names, aliases)) for raw in [name, *(al or [])]]
        if mode == "paper":
            keys = [raw for _, raw in raws]
        else:  # the same vectorised normalisation the captions get
            keys = normalize_array(pa.array([raw for _, raw in raws], pa.string())).to_pylist()
        keyed: dict[str, _Pattern] = {}
        for (i, raw), key in zip(raws, keys):
            if not key:
                continue
            p = keyed.setdefault(key, _Pattern([], []))
            if i not in p.identities:  # the name comes first, so it wins over an alias with the same key
                p.identities.append(i)
                p.aliases.append(raw)
        self.keys = list(keyed)
        self.patterns = [keyed[k] for k in self.keys]
        if mode == "fuzzy":
            self._build_blocks()
        elif self.keys:
            enc = [(k if mode == "paper" else f" {k} ").encode("utf-8") for k in self.keys]
            self.automaton = ahocorasick_rs.BytesAhoCorasick(enc, matchkind=ahocorasick_rs.MatchKind.Standard)
        else:
            self.automaton = None

    # ---------------------------------------------------------------- exact modes
    def match(self, texts: pa.Array | pa.ChunkedArray) -> pa.Table:
        """Matches in a string array: one row per (row, identity), sorted by row then identity."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        if self.mode == "fuzzy":
            return self._match_fuzzy(texts)
        if not self.keys or len(texts) == 0:
            return MATCH_SCHEMA.empty_table()
        hay = texts if self.mode == "paper" else normalize_array(texts, pad=True)
        offsets, data = _string_buffers(hay)
        found = self.automaton.find_matches_as_indexes(data, overlapping=True)
        if not found:
            return MATCH_SCHEMA.empty_table()
        arr = np.asarray(found, dtype=np.int64)
        rows = np.searchsorted(offsets, arr[:, 1], side="right") - 1
        if self.mode == "paper":
            # The raw buffer has no separators: drop matches that run across two captions.
            keep = arr[:, 2] <= offsets[rows + 1]
            arr, rows = arr[keep], rows[keep]
        # Nulls occupy no bytes, so no match can land in one; valid rows only.
        best: dict[tuple[int, int], str] = {}
        for (pidx, _s, _e), r in zip(arr.tolist(), rows.tolist()):
            p = self.patterns[pidx]
            for ident, alias in zip(p.identities, p.aliases):
                k = (r, ident)
                prev = best.get(k)
                # Deterministic choice when several names/aliases of one identity match: the first in
                # names-file order (name, then aliases), i.e. the smallest pattern position.
                if prev is None or self._order(ident, alias) < self._order(ident, prev):
                    best[k] = alias
        return self._table(best, {})

    def _order(self, ident: int, alias: str) -> int:
        if not hasattr(self, "_orders"):
            self._orders: dict[tuple[int, str], int] = {}
            for pos, p in enumerate(self.patterns):
                for i, a in zip(p.identities, p.aliases):
                    self._orders.setdefault((i, a), pos)
        return self._orders[(ident, alias)]

    def _table(self, best: dict[tuple[int, int], str], scores: dict[tuple[int, int], float]) -> pa.Table:
        items = sorted(best.items())
        return pa.Table.from_arrays(
            [
                pa.array([k[0] for k, _ in items], pa.int64()),
                pa.array([k[1] for k, _ in items], pa.int32()),
                pa.array([a for _, a in items], pa.string()),
                pa.array([scores.get(k, 100.0) for k, _ in items], pa.float64()),
            ],
            schema=MATCH_SCHEMA,
        )

    # ---------------------------------------------------------------- fuzzy mode
    def _build_blocks(self) -> None:
        self._tok = [k.split(" ") for k in self.keys]
        self._blocks: dict[str, set[tuple[int, int]]] = {}  # block key -> {(pattern, token position)}
        for pidx, toks in enumerate(self._tok):
            for pos, t in enumerate(toks):
                for b in {t, t[:3] + "\x00"}:
                    self._blocks.setdefault(b, set()).add((pidx, pos))

    def _match_fuzzy(self, texts: pa.Array) -> pa.Table:
        normed = normalize_array(texts).to_pylist()
        best: dict[tuple[int, int], str] = {}
        scores: dict[tuple[int, int], float] = {}
        for r, text in enumerate(normed):
            if not text:
                continue
            toks = text.split(" ")
            tried: set[tuple[int, int]] = set()  # (pattern, window start)
            for j, t in enumerate(toks):
                for b in (t, t[:3] + "\x00"):
                    for pidx, pos in self._blocks.get(b, ()):
                        start = j - pos
                        n = len(self._tok[pidx])
                        if start < 0 or start + n > len(toks) or (pidx, start) in tried:
                            continue
                        tried.add((pidx, start))
                        window = " ".join(toks[start : start + n])
                        score = fuzz.ratio(self.keys[pidx], window, score_cutoff=self.threshold)
                        if not score:
                            continue
                        p = self.patterns[pidx]
                        for ident, alias in zip(p.identities, p.aliases):
                            k = (r, ident)
                            if score > scores.get(k, -1.0) or (
                                score == scores[k] and self._order(ident, alias) < self._order(ident, best[k])
                            ):
                                scores[k] = float(score)
                                best[k] = alias
        return self._table(best, scores)


def empty_mask(texts: pa.Array) -> np.ndarray:
    """True where a caption is null, empty or whitespace-only (counted, never matched)."""
    import pyarrow.compute as pc

    # utf8_is_space is true for non-empty all-whitespace strings; it allocates no new strings (3x cheaper than trim).
    blank = pc.or_kleene(pc.equal(pc.binary_length(texts), 0), pc.utf8_is_space(texts))
    return np.asarray(pc.fill_null(blank, True))
