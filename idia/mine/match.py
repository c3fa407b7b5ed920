"""Find which identities a batch of captions mentions: normalized / paper / fuzzy matching over Arrow arrays.

A Matcher is built once from the identities table (one automaton over every name and alias) and applied to
record batches; it returns one row per (caption row, identity), the name or alias that matched, and a score.
Pure and engine-free: the Spark job's scan tasks call it on each record batch, the benchmark's floor directly.

Modes:
- normalized: names and captions normalised (idia.mine.normalize), both padded with a space, one Aho-Corasick
  automaton over the padded names run over the whole batch's byte buffer at once: whole-token matches only,
  overlapping names all reported ("Barack Obama" also reports "Obama" if both are names).
- paper: the study's semantics, a case-sensitive literal substring of the raw caption (pandas
  str.contains without its regex side effects), also one automaton over the raw batch buffer.
- fuzzy: tokens of each name are blocked on (exact token, and 3-character token prefix); every caption
  window of the name's token length that shares a block with it is scored with rapidfuzz's ratio on the
  normalised strings; matches >= threshold are kept with their best score.
"""

from __future__ import annotations

import ahocorasick_rs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz

from idia.mine.normalize import normalize_array

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
    """Built once per process from an IDENTITIES table; `match(texts)` on any number of batches.

    Patterns: one per distinct key (the normalised name or alias; the raw one in `paper` mode), numbered in order of
    first appearance. Each pattern lists its members, (identity, raw name or alias, rank), in CSR arrays; rank is the
    raw string's place in names-file order (identity by identity, name then aliases), and where one identity matches
    a caption through several of its names the lowest rank is reported.
    """

    def __init__(self, identities: pa.Table, mode: str = "normalized", fuzzy_threshold: float = 90.0):
        if mode not in MODES:
            raise ValueError(f"unknown match mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode = mode
        self.threshold = float(fuzzy_threshold)
        self.n_identities = n = identities.num_rows
        names = identities.column("name").combine_chunks().cast(pa.string())
        aliases = identities.column("aliases").combine_chunks()
        # Every name and alias in names-file order: identity by identity, the name first (a stable sort keeps it so).
        raw_ident = np.concatenate([np.arange(n), pc.list_parent_indices(aliases).to_numpy()]).astype(np.int64)
        order = np.argsort(raw_ident, kind="stable")
        raws = pa.concat_arrays([names, pc.list_flatten(aliases).cast(pa.string())]).take(pa.array(order))
        raw_ident = raw_ident[order]
        keys = raws if mode == "paper" else normalize_array(raws)  # the same vectorised normalisation as captions
        ok = np.asarray(pc.fill_null(pc.greater(pc.binary_length(keys), 0), False))
        rank = np.flatnonzero(ok)
        enc = pc.dictionary_encode(keys.filter(pa.array(ok)))  # pattern numbers in order of first appearance
        pattern = enc.indices.to_numpy().astype(np.int64)
        ident = raw_ident[rank]
        # An identity joins a pattern once, with its first raw string of that key.
        _, first = np.unique(pattern * max(n, 1) + ident, return_index=True)
        first.sort()
        pattern, ident, rank = pattern[first], ident[first], rank[first]
        by = np.lexsort((rank, pattern))
        self.keys: list[str] = enc.dictionary.to_pylist()
        self._start = np.concatenate([[0], np.cumsum(np.bincount(pattern, minlength=len(self.keys)))]).astype(np.int64)
        self._ident = ident[by].astype(np.int32)
        self._rank = rank[by]
        self._alias = raws.take(pa.array(self._rank))
        if mode == "fuzzy":
            self._build_blocks()
        elif self.keys:
            padded = self.keys if mode == "paper" else pc.binary_join_element_wise(" ", enc.dictionary, " ", "")
            enc_keys = pa.array(padded, pa.string()).cast(pa.binary()).to_pylist()
            self.automaton = ahocorasick_rs.BytesAhoCorasick(enc_keys, matchkind=ahocorasick_rs.MatchKind.Standard)
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
        # Each found pattern -> its members (CSR expansion), then one row per (row, identity), lowest rank kept.
        member, cnt = self._expand(arr[:, 0])
        return self._table(np.repeat(rows, cnt), member, None)

    def _expand(self, pat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Found patterns -> the CSR positions of all their members, and the member count of each found pattern."""
        cnt = self._start[pat + 1] - self._start[pat]
        ends = np.cumsum(cnt)
        return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - cnt, cnt) + np.repeat(
            self._start[pat], cnt
        ), cnt

    def _table(self, rows: np.ndarray, member: np.ndarray, scores: np.ndarray | None) -> pa.Table:
        """One row per (row, identity): the member with the best score, then the lowest rank; sorted by row, identity."""
        ident = self._ident[member]
        keys = [self._rank[member], ident, rows] if scores is None else [self._rank[member], -scores, ident, rows]
        order = np.lexsort(keys)
        rows, ident, member = rows[order], ident[order], member[order]
        first = np.r_[True, (rows[1:] != rows[:-1]) | (ident[1:] != ident[:-1])] if len(rows) else np.zeros(0, bool)
        member = member[first]
        return pa.Table.from_arrays(
            [
                pa.array(rows[first], pa.int64()),
                pa.array(ident[first], pa.int32()),
                self._alias.take(pa.array(member, pa.int64())),
                pa.array(np.full(len(member), 100.0) if scores is None else scores[order][first], pa.float64()),
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
        hit_rows: list[int] = []
        hit_pats: list[int] = []
        hit_scores: list[float] = []
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
                        if score:
                            hit_rows.append(r)
                            hit_pats.append(pidx)
                            hit_scores.append(float(score))
        if not hit_rows:
            return MATCH_SCHEMA.empty_table()
        member, cnt = self._expand(np.asarray(hit_pats, np.int64))
        rows = np.repeat(np.asarray(hit_rows, np.int64), cnt)
        return self._table(rows, member, np.repeat(np.asarray(hit_scores, np.float64), cnt))


def empty_mask(texts: pa.Array) -> np.ndarray:
    """True where a caption is null, empty or whitespace-only (counted, never matched)."""
    # utf8_is_space is true for non-empty all-whitespace strings; it allocates no new strings (3x cheaper than trim).
    blank = pc.or_kleene(pc.equal(pc.binary_length(texts), 0), pc.utf8_is_space(texts))
    return np.asarray(pc.fill_null(blank, True))
