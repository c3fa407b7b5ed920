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

import operator
import re
from dataclasses import dataclass
from re import _parser as sre_parser  # the stdlib's own regex parser: the exact tokens `re` matches with

import ahocorasick_rs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, process

from idia.core.errors import InputFileError
from idia.mine.normalize import Haystack, haystacks, normalize_array, ranges, string_buffers, without_null_bytes

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

#: Captions fuzzy mode blocks and scores at a time (a batch of the scan can be larger).
FUZZY_ROWS = 8192


class Matcher:
    """Built once per process from an IDENTITIES table; `match(texts)` on any number of batches.

    Patterns: one per distinct key (the normalised name or alias; the raw one in `paper` mode), numbered in order of
    first appearance. Each pattern lists its members, (identity, raw name or alias, rank), in CSR arrays; rank is the
    raw string's place in names-file order (identity by identity, name then aliases), and where one identity matches
    a caption through several of its names the lowest rank is reported.
    """

    def __init__(
        self, identities: pa.Table, mode: str = "normalized", fuzzy_threshold: float = 90.0, build: bool = True
    ):
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
            if build:
                self.automaton  # noqa: B018
            return
        # The automaton's strings: one per key (normalized: padded with spaces; literal: the raw key), except in
        # paper mode, where a key is found through its literal or its regex's prefilter (several keys may share one).
        self._regex: list[re.Pattern | None] = [None] * len(self.keys)
        self._check_all: list[int] = []  # paper keys with no prefilter: checked on every non-blank row
        if mode == "normalized":
            # Distinct keys padded are distinct strings: each key is its own automaton string.
            padded = (
                pc.binary_join_element_wise(" ", enc.dictionary, " ", "") if self.keys else pa.array([], pa.string())
            )
            self._set_automaton_strings(padded.cast(pa.binary()).to_pylist(), np.arange(len(self.keys)))
        elif mode == "literal":
            self._set_automaton_strings([k.encode("utf-8") for k in self.keys], np.arange(len(self.keys)))
        else:
            distinct: dict[str, int] = {}
            auto_of_key = np.full(len(self.keys), -1, np.int64)
            for ki, key in enumerate(self.keys):
                plan = paper_pattern(key)
                self._regex[ki] = plan.regex
                if plan.literal is None and plan.prefilter is None:
                    self._check_all.append(ki)
                    continue
                auto_of_key[ki] = distinct.setdefault(
                    plan.literal if plan.literal is not None else plan.prefilter, len(distinct)
                )
            self._set_automaton_strings([t.encode("utf-8") for t in distinct], auto_of_key)
        self._is_regex = np.array([r is not None for r in self._regex], bool)
        if build:
            self.automaton  # noqa: B018 (built now: a caller timing `match` times matching only)

    def _set_automaton_strings(self, strings: list[bytes], auto_of_key: np.ndarray) -> None:
        """The automaton's strings, and for each string the keys found through it (CSR; -1: a key not in it)."""
        has = np.flatnonzero(auto_of_key >= 0)
        self._auto_keys = has[np.argsort(auto_of_key[has], kind="stable")]
        self._auto_start = np.concatenate([[0], np.cumsum(np.bincount(auto_of_key[has], minlength=len(strings)))])
        self._automaton_strings = strings
        self._automaton = None

    @property
    def automaton(self) -> ahocorasick_rs.BytesAhoCorasick | None:
        """One Aho-Corasick automaton over the automaton strings, built on first use (None: no strings)."""
        if self._automaton is None and self._automaton_strings:
            self._automaton = ahocorasick_rs.BytesAhoCorasick(
                self._automaton_strings, matchkind=ahocorasick_rs.MatchKind.Standard
            )
        return self._automaton

    def __getstate__(self) -> dict:
        """Pickled without the automaton (ahocorasick_rs cannot pickle one): a matcher prepared on the driver is
        shipped to the workers, which build only the automaton, on first use, from its strings."""
        return {**self.__dict__, "_automaton": None}

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
        rows = keys = np.zeros(0, np.int64)
        if self.automaton is not None:
            found_rows, found_keys = [], []
            for hay in haystacks(texts) if self.mode == "normalized" else [_raw_haystack(texts)]:
                r, k = self._scan(hay)
                found_rows.append(r if hay.rows is None else hay.rows[r])
                found_keys.append(k)
            rows, keys = np.concatenate(found_rows), np.concatenate(found_keys)
        if self.mode == "paper" and self._is_regex.any():
            rows, keys = self._verify(texts, rows, keys, empty_mask(texts) if blank is None else blank)
        if not len(rows):
            return MATCH_SCHEMA.empty_table()
        # Each found key -> its members (CSR expansion), then one row per (row, identity), lowest rank kept.
        member, cnt = self._expand(keys)
        return self._table(np.repeat(rows, cnt), member, None)

    def _scan(self, hay: Haystack) -> tuple[np.ndarray, np.ndarray]:
        """One automaton pass over a haystack's whole buffer: (row, key) of every match inside one row."""
        found = self.automaton.find_matches_as_indexes(hay.data, overlapping=True)
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        arr = np.asarray(found, dtype=np.int64)
        rows = np.searchsorted(hay.starts, arr[:, 1], side="right") - 1
        keep = arr[:, 2] <= hay.ends[rows]  # not across two captions
        arr, rows = arr[keep], rows[keep]
        pos, cnt = _csr_positions(self._auto_start, arr[:, 0])  # each automaton string -> its keys
        return np.repeat(rows, cnt), self._auto_keys[pos]

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
        """Fuzzy blocking: a caption token shares a block with a name token when they are equal or (both 3 characters
        or longer) start with the same 3 characters. Blocks are found for ASCII captions by packing each token's
        first 3 bytes (or the short token whole) into an integer, for the others by one automaton over " abc" (a
        token starting with a long name token's prefix) and " ab " (a short name token whole); each block lists its
        (pattern, token position) pairs in CSR arrays."""
        self._n_tok = np.array([len(k.split(" ")) for k in self.keys], np.int64)
        self._key_chars = np.array([len(k) for k in self.keys], np.int64)
        self._key_bytes = [k.encode("utf-8") for k in self.keys]
        self._key_sig = np.array(
            [np.bitwise_or.reduce(_BIT[np.frombuffer(k, np.uint8)]) if k.isascii() else 0 for k in self._key_bytes],
            np.uint64,
        )
        longest = max((len(k) for k in self._key_bytes), default=0)
        # ASCII keys: bytes per group (byte & 15), in the narrowest type that holds them (moved once per pair).
        self._key_groups = np.zeros((len(self.keys), 16), np.int16 if longest < 2**15 else np.int32)
        for i, kb in enumerate(self._key_bytes):
            if kb.isascii():
                self._key_groups[i] = np.bincount(np.frombuffer(kb, np.uint8) & 15, minlength=16)
        where: dict[str, list[tuple[int, int]]] = {}
        for pidx, key in enumerate(self.keys):
            for pos, t in enumerate(key.split(" ")):
                where.setdefault(t[:3] if len(t) >= 3 else f"{t} ", []).append((pidx, pos))
        # Each block's (pattern, position) pairs in classes of one (position, name token count): a class proposes
        # one window per caption token, and its patterns sorted by length let the length bound pick a range of them.
        classes: list[tuple[int, int, list[tuple[int, int]]]] = []  # (position, token count, [(length, pattern)])
        per_block = []
        for v in where.values():
            by: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for pidx, pos in sorted(set(v)):
                by.setdefault((pos, int(self._n_tok[pidx])), []).append((int(self._key_chars[pidx]), pidx))
            per_block.append(len(by))
            classes += [(pos, n, sorted(members)) for (pos, n), members in sorted(by.items())]
        self._class_start = np.concatenate([[0], np.cumsum(per_block)]).astype(np.int64)
        self._class_pos = np.array([c[0] for c in classes], np.int64)
        self._class_ntok = np.array([c[1] for c in classes], np.int64)
        self._class_stride = int(self._key_chars.max()) + 2 if len(self.keys) else 1
        cls_of = np.repeat(np.arange(len(classes), dtype=np.int64), [len(c[2]) for c in classes])
        self._member_len = np.array([m[0] for c in classes for m in c[2]], np.int64)
        self._member_pat = np.array([m[1] for c in classes for m in c[2]], np.int64)
        # first_member[c * stride + n]: the first member of class c with length >= n (a table, no search per window)
        member_key = cls_of * self._class_stride + self._member_len  # sorted: class, then length
        cells = np.arange(len(classes) * self._class_stride + 1, dtype=np.int64)
        self._first_member = np.searchsorted(member_key, cells)
        # ASCII blocks in a direct table: a token's first 3 symbols ([a-z0-9]: 36 of them) and how many (<= 3).
        self._block_of = np.full(4 * 37**3, -1, np.int32)
        for i, b in enumerate(where):
            if b.isascii():
                self._block_of[_pack(np.frombuffer(b.rstrip(" ").encode(), np.uint8))] = i
        self._automaton_strings = [f" {b}".encode("utf-8") for b in where]
        self._automaton = None

    def _ascii_blocks(self, data: np.ndarray, tok_start: np.ndarray, tok_end: np.ndarray) -> tuple[np.ndarray, ...]:
        """(token, block) of every ASCII caption token that is in a block: its first 3 symbols looked up."""
        size = np.minimum(tok_end - tok_start, 3)
        key = size * 37**3
        for j in range(3):
            sym = _SYMBOL[data[np.minimum(tok_start + j, len(data) - 1)]]
            key += np.where(size > j, sym, 0) * 37 ** (2 - j)
        block = self._block_of[key]
        hit = np.flatnonzero(block >= 0)
        return hit, block[hit]

    def _match_fuzzy(self, texts: pa.Array) -> pa.Table:
        """Fuzzy matches of a batch, FUZZY_ROWS captions at a time: its blocking costs more per caption on larger
        batches (8,192 -> 65,536 rows: 1.4-1.7x slower per caption here), while the exact modes gain from them."""
        if len(texts) <= FUZZY_ROWS:
            return self._match_fuzzy_part(texts)
        parts = []
        for start in range(0, len(texts), FUZZY_ROWS):
            part = self._match_fuzzy_part(texts.slice(start, FUZZY_ROWS))
            parts.append(
                part.set_column(0, MATCH_SCHEMA.field("row"), pc.add(part.column("row"), start)) if start else part
            )
        return pa.concat_tables(parts)

    def _match_fuzzy_part(self, texts: pa.Array) -> pa.Table:
        """Every caption window of a name's token length that shares a block with the name (by the same token
        position) is scored with rapidfuzz's ratio on the normalised strings, all windows of a batch in one call."""
        hit_rows, hit_pats, hit_scores = [], [], []
        for hay in haystacks(texts) if self.automaton is not None else []:
            rows, pats, scores = self._fuzzy_windows(hay)
            hit_rows.append(rows if hay.rows is None else hay.rows[rows])
            hit_pats.append(pats)
            hit_scores.append(scores)
        if not hit_rows or not sum(len(r) for r in hit_rows):
            return MATCH_SCHEMA.empty_table()
        rows, pats, scores = np.concatenate(hit_rows), np.concatenate(hit_pats), np.concatenate(hit_scores)
        member, cnt = self._expand(pats)
        return self._table(np.repeat(rows, cnt), member, np.repeat(scores, cnt))

    def _fuzzy_windows(self, hay: Haystack) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, pattern, score) of the windows of one haystack that reach the threshold."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
        data = hay.data
        space = data == ord(" ")
        tok_start = np.flatnonzero(~space & np.r_[True, space[:-1]])  # every token's first byte
        tok_end = np.flatnonzero(~space & np.r_[space[1:], True]) + 1  # one past its last byte
        ascii_only = not len(data) or int(data.max()) < 0x80
        if ascii_only:
            token, block = self._ascii_blocks(data, tok_start, tok_end)
        else:
            found = self.automaton.find_matches_as_indexes(data, overlapping=True)
            arr = np.asarray(found, dtype=np.int64).reshape(-1, 3)
            token, block = np.searchsorted(tok_start, arr[:, 1] + 1), arr[:, 0]
        if not len(token):
            return empty
        per_row = np.diff(np.searchsorted(tok_start, np.append(hay.starts, len(data))))
        tok_row = np.repeat(np.arange(len(hay.starts), dtype=np.int64), per_row)  # each token's row
        cls, cnt = _csr_positions(self._class_start, block)  # each block -> its classes
        g = np.repeat(token, cnt) - self._class_pos[cls]  # the window's first token (global numbering)
        last = g + self._class_ntok[cls] - 1
        ok = (g >= 0) & (last < len(tok_start))
        g, last, cls = g[ok], last[ok], cls[ok]
        ok = tok_row[g] == tok_row[last]  # the whole window inside one caption
        g, last, cls = g[ok], last[ok], cls[ok]
        a, b = tok_start[g], tok_end[last]
        # ratio = 200 * matches / (len1 + len2) <= 200 * min(len1, len2) / (len1 + len2), in characters: windows whose
        # length alone keeps them under the threshold are never scored (their score would be 0 at this cutoff).
        if ascii_only:
            w_len = b - a
        else:
            chars = np.cumsum((data & 0xC0) != 0x80, dtype=np.int64)
            w_len = chars[b - 1] - chars[a - 1]
        # The class's patterns whose length can fit (a range of its length-sorted members, taken a little wide; the
        # exact test follows).
        if self.threshold > 0:
            lo_len = np.floor(self.threshold * w_len / (200.0 - self.threshold)) - 1
            hi_len = np.ceil(w_len * (200.0 - self.threshold) / self.threshold) + 1
        else:
            lo_len, hi_len = np.zeros(len(w_len)), np.full(len(w_len), self._class_stride - 1)
        base = cls * self._class_stride
        lo = self._first_member[base + np.clip(lo_len, 0, self._class_stride - 1).astype(np.int64)]
        hi = self._first_member[base + np.clip(hi_len + 1, 0, self._class_stride).astype(np.int64)]
        cnt = hi - lo
        member = ranges(lo, cnt)
        pat, k_len = self._member_pat[member], self._member_len[member]
        g, a, b, w_len = np.repeat(g, cnt), np.repeat(a, cnt), np.repeat(b, cnt), np.repeat(w_len, cnt)
        fits = 200.0 * np.minimum(w_len, k_len) >= self.threshold * (w_len + k_len) - 1e-9
        # Each (window, pattern) scored once (several blocks can propose it).
        _, once = np.unique(g[fits] * len(self.keys) + pat[fits], return_index=True)
        pick = np.flatnonzero(fits)[once]
        if not len(pick):
            return empty
        if ascii_only and self.threshold > 0:
            # Cheapest exact bound first: every symbol one string has and the other lacks costs at least one
            # deletion or insertion (a 36-bit presence signature per token, OR-ed over the window's tokens).
            tok_sig = np.bitwise_or.reduceat(_BIT[data], tok_start) if len(tok_start) else np.zeros(0, np.uint64)
            sig = tok_sig[g[pick]]
            n = self._n_tok[pat[pick]]
            for j in range(1, int(n.max()) if len(n) else 1):
                more = n > j
                sig[more] |= tok_sig[g[pick][more] + j]
            lower = np.bitwise_count(sig ^ self._key_sig[pat[pick]]).astype(np.int64)
            wl, kl = w_len[pick], k_len[pick]
            pick = pick[100.0 * (1.0 - lower / (wl + kl)) >= self.threshold - 1e-6]
            if not len(pick):
                return empty
        pat, a, b = pat[pick], a[pick], b[pick]
        row = tok_row[g[pick]]
        # One string per distinct window (several names propose the same one), gathered per pair at C speed.
        span, inv = np.unique(a * (len(data) + 1) + b, return_inverse=True)
        x, y = span // (len(data) + 1), span % (len(data) + 1)
        if ascii_only and self.threshold > 0:
            # A lower bound of the Indel distance: characters in 16 groups (byte & 15), sum |count difference| per
            # group; a pair whose best possible ratio with it stays under the threshold is not scored.
            keep = _within_bound(data, x, y, inv, self._key_groups[pat], w_len[pick], k_len[pick], self.threshold)
            row, pat, inv = row[keep], pat[keep], inv[keep]
            used = np.unique(inv)
            x, y, inv = x[used], y[used], np.searchsorted(used, inv)
            if not len(row):
                return empty
        raw = data.tobytes()
        x, y = x.tolist(), y.tolist()
        if ascii_only:  # bytes are characters here: rapidfuzz compares them as they are, no decoding
            distinct = [raw[i:j] for i, j in zip(x, y)]
            keys = _gather(self._key_bytes, pat)
        else:
            distinct = [raw[i:j].decode("utf-8") for i, j in zip(x, y)]
            keys = _gather(self.keys, pat)
        windows = _gather(distinct, inv)
        scores = process.cpdist(
            keys, windows, scorer=fuzz.ratio, score_cutoff=self.threshold, dtype=np.float64, workers=1
        )
        hit = (scores >= self.threshold) & (scores > 0)
        return row[hit], pat[hit], scores[hit]


def _within_bound(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    inv: np.ndarray,
    key_groups: np.ndarray,
    w_len: np.ndarray,
    k_len: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """Pairs (window inv[i] = data[x:y], a name with per-group counts key_groups[i]) whose ratio can still reach the
    threshold. Indel distance >= sum over any grouping of characters of |count in one - count in the other| (each
    character only one string has costs one deletion or insertion), and ratio = 100 * (1 - distance / lensum); kept
    with a margin, so no pair rapidfuzz would keep is dropped. ASCII windows only (a byte is a character)."""
    # Per-group counts of each distinct window, from all its bytes at once (one bincount).
    size = y - x
    cell = np.repeat(np.arange(len(x), dtype=np.int64) * 16, size) + (data[ranges(x, size)] & 15)
    small = np.int16 if not len(size) or int(size.max()) < 2**15 else np.int32  # counts fit: 4x less to move
    window_groups = np.bincount(cell, minlength=len(x) * 16).astype(small).reshape(len(x), 16)
    lower = np.abs(window_groups[inv] - key_groups).sum(axis=1, dtype=np.int64)
    best = 100.0 * (1.0 - lower / (w_len + k_len))
    return best >= threshold - 1e-6


def _gather(items: list, idx: np.ndarray) -> list:
    """[items[i] for i in idx], in C (operator.itemgetter)."""
    if len(idx) == 0:
        return []
    got = operator.itemgetter(*idx.tolist())(items)
    return [got] if len(idx) == 1 else list(got)


#: Symbols of normalised ASCII tokens: a-z -> 0-25, 0-9 -> 26-35 (a token holds nothing else).
_SYMBOL = np.zeros(256, np.int64)
_SYMBOL[ord("a") : ord("z") + 1] = np.arange(26)
_SYMBOL[ord("0") : ord("9") + 1] = np.arange(26, 36)


#: Presence bits of normalised ASCII text: one bit per symbol, none for the space.
_BIT = np.zeros(256, np.uint64)
_BIT[ord("a") : ord("z") + 1] = np.left_shift(np.uint64(1), np.arange(26, dtype=np.uint64))
_BIT[ord("0") : ord("9") + 1] = np.left_shift(np.uint64(1), np.arange(26, 36, dtype=np.uint64))


def _pack(token: np.ndarray) -> int:
    """An ASCII token's block key: its first 3 symbols (fewer for a short token) and how many, as one integer."""
    head = token[:3]
    return len(head) * 37**3 + sum(int(_SYMBOL[b]) * 37 ** (2 - j) for j, b in enumerate(head))


def _csr_positions(start: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR lookup: for each entry i of `idx`, the positions start[i] .. start[i + 1] - 1, all concatenated; and how
    many each entry had."""
    cnt = start[idx + 1] - start[idx]
    return ranges(start[idx], cnt), cnt


def _raw_haystack(texts: pa.Array) -> Haystack:
    """The raw captions as one haystack (paper and literal modes): rows back to back, no boundary bytes."""
    offsets, data = string_buffers(without_null_bytes(texts))
    return Haystack(data, offsets[:-1], offsets[1:], None)


def empty_mask(texts: pa.Array) -> np.ndarray:
    """True where a caption is null, empty or whitespace-only (counted, never matched)."""
    # utf8_is_space is true for non-empty all-whitespace strings; it allocates no new strings (3x cheaper than trim).
    blank = pc.or_kleene(pc.equal(pc.binary_length(texts), 0), pc.utf8_is_space(texts))
    return np.asarray(pc.fill_null(blank, True))
