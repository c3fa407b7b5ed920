"""Read and validate a names list (CSV with header, or one name a line) into a `schemas.IDENTITIES` table.

Rules (every rejection raises InputFileError naming the file and the 1-based line):

- Encoding: UTF-8 (a leading BOM is ignored). Invalid UTF-8 -> error with the line number.
- Format: CSV when the first non-blank line is a header containing a column named exactly `name`
  (`identity_id,name[,aliases][,sex]`; extra columns are ignored, so the study's published counts CSV
  `,name,count,membership,bin` reads as a names list too). Otherwise plain text, one name a line.
- Each name and alias is normalised: Unicode NFC, leading/trailing whitespace stripped, every internal
  whitespace run (tabs, NBSP, ...) collapsed to one space. Case and accents are kept verbatim (the
  `paper` matching mode needs the name exactly as written).
- Zero-width and other invisible format characters (Unicode category Cf: U+200B, U+200D, U+FEFF, soft
  hyphen, bidi marks, ...) and control characters (Cc, other than whitespace) are REJECTED, not removed:
  they make two visually equal names differ, so the user must clean them.
- A name must contain at least one letter or digit and be at most 256 characters.
- Blank lines (and, in CSV, rows whose name field is blank after an all-blank row) are skipped and counted
  (`blank_lines` in the table's schema metadata and in `parse_names`' stats).
- Duplicate names (after the normalisation above), duplicate identity_ids, and an alias equal to another
  identity's name or alias -> error naming both line numbers.
- identity_id: given (CSV) or derived. Given ids must match `[A-Za-z0-9_-]{1,64}`. Derived ids (plain
  text, or an empty/absent identity_id column) are a slug of the ASCII-folded name plus 8 hex of the
  SHA-1 of the normalised name: stable across files and line order, e.g. `adrianne-leon-1c9e2f0a`.
- aliases: `|`-separated; blanks dropped; aliases equal to the name or repeated are dropped.
- sex: m/f (also male/female, any case); empty -> null; anything else is an error.

Names never become file or folder names; identity_id may (it is validated path-safe).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa

from idia.core.errors import InputFileError
from idia.core.stats import Stats
from schemas import ALIAS_SEPARATOR, IDENTITIES, NAMES_CSV_COLUMNS

MAX_NAME_CHARS = 256
_WS_RE = re.compile(r"\s+")
# ASCII characters of category Cc that are not whitespace: what normalize_name rejects, found by one regex search.
_ASCII_BAD_RE = re.compile(
    "["
    + "".join(re.escape(chr(c)) for c in range(128) if unicodedata.category(chr(c)) == "Cc" and not chr(c).isspace())
    + "]"
)
# Every ASCII character that is not a letter or digit: stripping them all leaves "" exactly when a text has neither.
_ASCII_NOT_ALNUM = "".join(chr(c) for c in range(128) if not chr(c).isalnum())
_SEX = {"m": "m", "male": "m", "f": "f", "female": "f"}


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode_utf8(data: bytes, where: str) -> str:
    """Decode strictly; an invalid byte sequence is reported with its line number."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"{where}: line {_line_of(data, exc.start)}: invalid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def normalize_name(raw: str, where: str, line: int, what: str = "name") -> str:
    """NFC + whitespace collapse; reject invisible format/control characters. Returns '' for blank."""
    if not raw:
        return ""
    if raw.isascii() and (raw.isprintable() or not _ASCII_BAD_RE.search(raw)):  # printable ASCII has no Cc at all
        # Fast path (most names): NFC leaves ASCII as it is, and str.split() splits on exactly what \s+ matches.
        text = " ".join(raw.split())
        if len(text) > MAX_NAME_CHARS:
            raise InputFileError(f"{where}: line {line}: {what} is {len(text)} characters long (max {MAX_NAME_CHARS})")
        if text and not text.strip(_ASCII_NOT_ALNUM):
            raise InputFileError(f"{where}: line {line}: {what} {text!r} has no letter or digit")
        return text
    for ch in raw:
        cat = unicodedata.category(ch)
        if cat == "Cf" or (cat == "Cc" and not ch.isspace()):
            raise InputFileError(
                f"{where}: line {line}: {what} {raw.strip()!r} contains the invisible character U+{ord(ch):04X} "
                f"({unicodedata.name(ch, 'control character')}); remove it"
            )
    text = _WS_RE.sub(" ", unicodedata.normalize("NFC", raw)).strip()
    if not text:
        return ""
    if len(text) > MAX_NAME_CHARS:
        raise InputFileError(f"{where}: line {line}: {what} is {len(text)} characters long (max {MAX_NAME_CHARS})")
    if not any(map(str.isalnum, text)):
        raise InputFileError(f"{where}: line {line}: {what} {text!r} has no letter or digit")
    return text


def derive_identity_id(name: str) -> str:
    """Stable, path-safe id from a (normalised) name: ascii slug + 8 hex of its SHA-1."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:48].strip("-")
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"id-{digest}"


def _is_csv_header(line: str) -> bool:
    try:
        fields = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return False
    return len(fields) >= 2 and "name" in [f.strip() for f in fields]


def valid_identity_id(rid: str) -> bool:
    """The path-safe identity_id rule: 1-64 of A-Z a-z 0-9 _ - (string methods: a regex per row cost ~2 us here)."""
    if not (0 < len(rid) <= 64 and rid.isascii()):
        return False
    rest = rid.replace("-", "").replace("_", "")
    return not rest or rest.isalnum()


def _csv_records(lines: list[str], first: int, where: str, stats: Stats):
    """(line, identity_id or None, name, raw aliases, sex) per non-blank CSV record; blank records counted."""
    reader = csv.reader(io.StringIO("\n".join(lines[first:]) + "\n"))
    header = [h.strip() for h in next(reader)]
    col = {h: i for i, h in reversed(list(enumerate(header)))}
    absent = 1 << 30  # an index no row reaches: the column reads as ""
    i_id, i_name, i_al, i_sex = (col.get(c, absent) for c in NAMES_CSV_COLUMNS)
    stats["lines"] += first + 1
    prev_end = 1  # reader.line_num after the header, relative to `first`
    n_lines = n_blank = 0
    for fields in reader:
        line = first + prev_end + 1  # first physical line of this record
        prev_end = reader.line_num
        n_lines += 1
        nf = len(fields)
        name = normalize_name(fields[i_name] if i_name < nf else "", where, line)
        if not name:
            if not "".join(fields).strip():
                n_blank += 1
                continue
            raise InputFileError(f"{where}: line {line}: empty name")
        rid = (fields[i_id].strip() if i_id < nf else "") or None
        al_raw = fields[i_al] if i_al < nf else ""
        aliases = [normalize_name(a, where, line, "alias") for a in al_raw.split(ALIAS_SEPARATOR)] if al_raw else ()
        sex_raw = fields[i_sex].strip().lower() if i_sex < nf else ""
        if sex_raw and sex_raw not in _SEX:
            raise InputFileError(f"{where}: line {line}: sex must be m/f/male/female or empty, got {sex_raw!r}")
        yield line, rid, name, aliases, _SEX.get(sex_raw)
    stats["lines"] += n_lines
    stats["blank_lines"] += n_blank


def _text_records(lines: list[str], first: int, where: str, stats: Stats):
    """(line, None, name, (), None) per non-blank line of a one-name-a-line file; blank lines counted."""
    stats["lines"] += len(lines)
    for i in range(first, len(lines)):
        name = normalize_name(lines[i], where, i + 1)
        if not name:
            stats["blank_lines"] += 1
            continue
        yield i + 1, None, name, (), None


def parse_names(path: str | Path) -> tuple[pa.Table, Stats]:
    """Parse a names file; returns the IDENTITIES table and stats (lines, blank_lines, identities, aliases)."""
    path = Path(path)
    where = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{where}: names file not found") from None
    except IsADirectoryError:
        raise InputFileError(f"{where}: is a folder, expected a names file") from None
    text = decode_utf8(data, where)
    stats = Stats()

    # Split on line breaks only (not str.splitlines, which also splits on U+2028, \x1c, ...) so line
    # numbers agree with editors and with the invalid-UTF-8 report.
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise InputFileError(f"{where}: names file is empty")
    stats["blank_lines"] += first
    records = (_csv_records if _is_csv_header(lines[first]) else _text_records)(lines, first, where, stats)

    ids, names_out, aliases_out, sexes, src = [], [], [], [], []
    seen_name: dict[str, int] = {}  # name or alias -> line
    seen_id: dict[str, int] = {}
    n_aliases = 0
    for line, rid, name, aliases, sex in records:
        if name in seen_name:
            raise InputFileError(f"{where}: line {line}: name {name!r} duplicates line {seen_name[name]}")
        seen_name[name] = line
        if rid is None:
            rid = derive_identity_id(name)
        elif not valid_identity_id(rid):
            raise InputFileError(
                f"{where}: line {line}: identity_id {rid!r} is not path-safe (allowed: A-Z a-z 0-9 _ -, 1-64 chars)"
            )
        if rid in seen_id:
            raise InputFileError(f"{where}: line {line}: identity_id {rid!r} duplicates line {seen_id[rid]}")
        seen_id[rid] = line
        kept: list[str] = []
        for a in aliases:
            if not a or a == name or a in kept:
                continue
            if a in seen_name:
                raise InputFileError(
                    f"{where}: line {line}: alias {a!r} is already a name or alias on line {seen_name[a]}"
                )
            kept.append(a)
        for a in kept:
            seen_name[a] = line
        n_aliases += len(kept)
        ids.append(rid)
        names_out.append(name)
        aliases_out.append(kept)
        sexes.append(sex)
        src.append(line)
    # Aliases seen before a later identical name are caught when that name arrives (seen_name holds both).
    stats["aliases"] += n_aliases
    stats["identities"] = len(ids)
    if not ids:
        raise InputFileError(f"{where}: no names found (only blank lines)")
    n_alias = [len(a) for a in aliases_out]
    table = pa.Table.from_arrays(
        [
            _strings(ids),
            _strings(names_out),
            pa.ListArray.from_arrays(
                pa.Array.from_buffers(pa.int32(), len(n_alias) + 1, [None, _offsets(n_alias)]),
                _strings([a for al in aliases_out for a in al]),
            ),
            _strings(sexes),
            pa.Array.from_buffers(pa.int32(), len(src), [None, pa.py_buffer(np.asarray(src, np.int32))]),
        ],
        schema=IDENTITIES,
    )
    meta = {b"source": where.encode(), b"blank_lines": str(stats["blank_lines"]).encode()}
    return table.replace_schema_metadata(meta), stats


def _offsets(lengths) -> pa.Buffer:
    return pa.py_buffer(np.concatenate([[0], np.cumsum(np.fromiter(lengths, np.int64))]).astype(np.int32))


def _strings(values: list[str | None]) -> pa.Array:
    """A string array built from its buffers: pyarrow's pa.array() on Python objects imports pandas first (~0.2 s,
    on the path before the engine starts), these calls do not."""
    has_null = None in values
    texts = ["" if v is None else v for v in values] if has_null else values
    joined = "".join(texts)
    data = joined.encode("utf-8")
    # ASCII text: a string's bytes are its characters; otherwise each string's UTF-8 length.
    lengths = map(len, texts) if len(data) == len(joined) else (len(t.encode("utf-8")) for t in texts)
    validity = None
    if has_null:
        valid = np.fromiter((v is not None for v in values), bool, len(values))
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.string(), len(values), [validity, _offsets(lengths), pa.py_buffer(data)], null_count=values.count(None)
    )


def read_names(path: str | Path) -> pa.Table:
    """Parse a names file into a `schemas.IDENTITIES` table (see the module docstring for the rules)."""
    return parse_names(path)[0]
