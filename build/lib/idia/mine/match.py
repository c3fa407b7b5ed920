"""Find which identities a batch of captions mentions: normalized / paper / fuzzy matching over Arrow arrays.

A Matcher is built once from the identities table (one automaton over every name and alias) and applied to
record batches; it returns one row per (caption row, identity), the name or alias that matched, and a score.
Pure and engine-free: the Spark job's scan tasks call it on each record batch, the benchmark's floor directly.

Modes:
- normalized: names and captions normalised (idia.mine.normalize), both padded with a space, one Aho-Corasick
  automaton over the padded names run over the whole batch's byte buffer at once: whole-token matches only,
  overlapping names all reported ("Barack Obama" also reports "Obama" if both are names).
- paper: the study's semantics exactly, pandas `str.contains(name)`: each name is a case-sensitive regular expression
  searched in the raw caption (Python `re`, so `.` in "Johannes B. Kerner" matches any character). A name that
  parses to literal characters only goes into the automaton as that literal; any other name goes in as the longest
  run of literal characters its pattern requires (a prefilter), and only the rows that contain it are checked with
  `re.search`. A name whose pattern has no required literal (or matches case-insensitively) is checked on every row.
- literal: a case-sensitive literal substring of the raw caption (the study's search without its regex side
  effects), one automaton over the raw batch buffer.
- fuzzy: tokens of each name are blocked on (exact token, and 3-character token prefix); every caption
  window of the name's token length that shares a block with it is scored with rapidfuzz's ratio on the
  normalised strings; matches >= threshold are kept with their best score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _parser as sre_parser  # the stdlib's own regex parser: the exact tokens `re` matches with

import ahocorasick_rs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz

from idia.core.errors import InputFileError
from idia.mine.normalize import normalize_array

MODES = ("normalized", "paper", "literal", "fuzzy")


class PatternError(InputFileError, ValueError):
    """A name that is not a valid regular expression, in `paper` mode (the study searched names as regexes)."""


@dataclass(frozen=True)
class PaperPattern:
    """How `paper` mode finds one name: `literal` when the pattern matches only that exact text; otherwise the
    compiled `regex`, with `prefilter` a text every match must contain (None: check every row)."""

    literal: str | None
    regex: re.Pattern | None
    prefilter: str | None


def paper_pattern(name: str) -> PaperPattern:
    """The plan for one name as pandas `str.contains(name)` (case-sensitive `re.search`) would match it."""
    try:
        compiled = re.compile(name)
        parsed = sre_parser.parse(name)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PatternError(
            f"name {name!r} is not a valid regular expression ({exc}); --match paper searches every name as a regex, "
            "as the study did: fix the name, or use --match literal"
        ) from None
    items = list(parsed)
    if compiled.flags & re.IGNORECASE:
        return PaperPattern(None, compiled, None)  # (?i): the literal characters do not bound the match
    if items and all(op is sre_parser.LITERAL for op, _ in items):
        return PaperPattern("".join(chr(av) for _, av in items), None, None)
    # Top-level items match in sequence (an alternation is one BRANCH item), so every top-level literal run is required.
    best, run = "", []
    for op, av in [*items, (None, None)]:
        if op is sre_parser.LITERAL:
            run.append(chr(av))
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    return PaperPattern(None, compiled, best or None)


def check_patterns(identities: pa.Table, mode: str) -> None:
    """Fail before any work starts if a name or alias cannot be searched in this mode (paper: not a valid regex)."""
    if mode != "paper":
        return
    for row in identities.select(["identity_id", "name", "aliases", "source_line"]).to_pylist():
        for raw in [row["name"], *(row["aliases"] or [])]:
            try:
                paper_pattern(raw)
            except PatternError as exc:
                where = f"line {row['source_line']}, " if row.get("source_line") else ""
                raise PatternError(f"names list {where}identity {row['identity_id']!r}: {exc}") from None


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
        keys = (
            raws if mode in ("paper", "literal") else normalize_array(raws)
        )  # the same vectorised normalisation as captions
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
            return
        # The automaton's strings: one per key (normalized: padded with spaces; literal: the raw key), except in
        # paper mode, where a key is found through its literal or its regex's prefilter (several keys may share one).
        self._regex: list[re.Pattern | None] = [None] * len(self.keys)
        self._check_all: list[int] = []  # paper keys with no prefilter: checked on every non-blank row
        if mode == "normalized":
            strings = pc.binary_join_element_wise(" ", enc.dictionary, " ", "").to_pylist() if self.keys else []
        elif mode == "literal":
            strings = list(self.keys)
        else:
            strings = []
            for ki, key in enumerate(self.keys):
                plan = paper_pattern(key)
                self._regex[ki] = plan.regex
                if plan.literal is None and plan.prefilter is None:
                    self._check_all.append(ki)
                strings.append(plan.literal if plan.literal is not None else plan.prefilter)
        self._is_regex = np.array([r is not None for r in self._regex], bool)
        distinct: dict[str, int] = {}
        auto_of_key = np.full(len(self.keys), -1, np.int64)
        for ki, text in enumerate(strings):
            if text is not None:
                auto_of_key[ki] = distinct.setdefault(text, len(distinct))
        has = np.flatnonzero(auto_of_key >= 0)
        by_auto = has[np.argsort(auto_of_key[has], kind="stable")]
        self._auto_keys = by_auto  # CSR: the keys found through each automaton string
        self._auto_start = np.concatenate([[0], np.cumsum(np.bincount(auto_of_key[has], minlength=len(distinct)))])
        self.automaton = (
            ahocorasick_rs.BytesAhoCorasick(
                [t.encode("utf-8") for t in distinct], matchkind=ahocorasick_rs.MatchKind.Standard
            )
            if distinct
            else None
        )

    # ---------------------------------------------------------------- exact modes
    def match(self, texts: pa.Array | pa.ChunkedArray, blank: np.ndarray | None = None) -> pa.Table:
        """Matches in a string array: one row per (row, identity), sorted by row then identity. `blank`: the
        caller's `empty_mask(texts)`, when it has one (paper mode needs it; computed here otherwise)."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        if self.mode == "fuzzy":
            return self._match_fuzzy(texts)
        if not self.keys or len(texts) == 0:
            return MATCH_SCHEMA.empty_table()
        raw = self.mode in ("paper", "literal")
        hay = texts if raw else normalize_array(texts, pad=True)
        rows = keys = np.zeros(0, np.int64)
        if self.automaton is not None:
            offsets, data = _string_buffers(hay)
            found = self.automaton.find_matches_as_indexes(data, overlapping=True)
            if found:
                arr = np.asarray(found, dtype=np.int64)
                rows = np.searchsorted(offsets, arr[:, 1], side="right") - 1
                if raw:
                    # The raw buffer has no separators: drop matches that run across two captions.
                    keep = arr[:, 2] <= offsets[rows + 1]
                    arr, rows = arr[keep], rows[keep]
                # Nulls occupy no bytes, so no match can land in one; valid rows only.
                pos, cnt = _csr_positions(self._auto_start, arr[:, 0])  # each automaton string -> its keys
                keys, rows = self._auto_keys[pos], np.repeat(rows, cnt)
        if self.mode == "paper" and self._is_regex.any():
            rows, keys = self._verify(texts, rows, keys, empty_mask(texts) if blank is None else blank)
        if not len(rows):
            return MATCH_SCHEMA.empty_table()
        # Each found key -> its members (CSR expansion), then one row per (row, identity), lowest rank kept.
        member, cnt = self._expand(keys)
        return self._table(np.repeat(rows, cnt), member, None)

    def _verify(
        self, texts: pa.Array, rows: np.ndarray, keys: np.ndarray, blank: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Paper mode: regex keys found by their prefilter, and keys without one on every row, checked with `re.search`
        on the row's caption; literal keys pass as found. Blank captions (`blank`) never match: counted apart."""
        lit = ~self._is_regex[keys]
        cand_rows, cand_keys = rows[~lit], keys[~lit]
        if self._check_all:
            every = np.flatnonzero(~blank)
            cand_rows = np.concatenate([cand_rows, np.repeat(every, len(self._check_all))])
            cand_keys = np.concatenate([cand_keys, np.tile(np.asarray(self._check_all, np.int64), len(every))])
        pairs = np.unique(cand_rows * len(self.keys) + cand_keys)
        cand_rows, cand_keys = pairs // len(self.keys), pairs % len(self.keys)
        ok = np.zeros(len(pairs), bool)
        if len(pairs):
            urows, inv = np.unique(cand_rows, return_inverse=True)
            text = texts.take(pa.array(urows)).to_pylist()
            for i, (t, k) in enumerate(zip(inv.tolist(), cand_keys.tolist())):
                ok[i] = text[t] is not None and self._regex[k].search(text[t]) is not None
        rows = np.concatenate([rows[lit], cand_rows[ok]])
        keys = np.concatenate([keys[lit], cand_keys[ok]])
        keep = ~blank[rows]
        return rows[keep], keys[keep]

    def _expand(self, pat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Found patterns -> the CSR positions of all their members, and the member count of each found pattern."""
        return _csr_positions(self._start, pat)

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


def _csr_positions(start: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR lookup: for each entry i of `idx`, the positions start[i] .. start[i + 1] - 1, all concatenated; and how
    many each entry had."""
    cnt = start[idx + 1] - start[idx]
    ends = np.cumsum(cnt)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - cnt, cnt) + np.repeat(start[idx], cnt), cnt


def empty_mask(texts: pa.Array) -> np.ndarray:
    """True where a caption is null, empty or whitespace-only (counted, never matched)."""
    # utf8_is_space is true for non-empty all-whitespace strings; it allocates no new strings (3x cheaper than trim).
    blank = pc.or_kleene(pc.equal(pc.binary_length(texts), 0), pc.utf8_is_space(texts))
    return np.asarray(pc.fill_null(blank, True))
