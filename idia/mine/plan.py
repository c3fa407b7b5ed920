"""Mining inputs and work units: resolve paths/globs on any fsspec filesystem, check every footer on the driver,
and cut files into scan units of whole row groups."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from idia.core.errors import InputFileError, UserError
from schemas import LAION_400M
from schemas.validate import check_mapping

GLOB_CHARS = set("*?[")
#: Upper bound of an automatic scan unit: ~1 s of matching per core here (BENCHMARKS.md), so stragglers stay short and
#: a killed run redoes little; an engine with a fixed cost per task runs several units in one (jobs/mine.py).
AUTO_TASK_ROWS = 1_000_000


@dataclass(frozen=True)
class InputFile:
    """One readable input file, as its footer describes it."""

    url: str
    index: int  # position in the run's file list
    size: int
    footer_bytes: int
    row_groups: tuple[int, ...]  # rows per row group

    @property
    def rows(self) -> int:
        return sum(self.row_groups)


@dataclass(frozen=True)
class ScanUnit:
    """One scan task: row groups rg0..rg1 (inclusive) of one file, whose first row is `first_row` in that file."""

    file_index: int
    rg0: int
    rg1: int
    first_row: int
    n_rows: int

    @property
    def name(self) -> str:
        return f"u{self.file_index:06d}-rg{self.rg0:06d}-{self.rg1:06d}"


def resolve_inputs(patterns: list[str]) -> list[str]:
    """Expand paths/globs on any fsspec filesystem into a sorted, de-duplicated list of file URLs."""
    import fsspec.core

    from idia.core.storage import normalize_url

    files: list[str] = []
    for pat in map(normalize_url, patterns):
        try:
            fs, path = fsspec.core.url_to_fs(pat)
        except (ImportError, ValueError) as exc:
            raise UserError(f"{pat}: cannot open this filesystem: {exc}") from None
        if GLOB_CHARS & set(path):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not found:
                raise UserError(f"{pat}: no input files match this pattern")
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
            if not found:
                raise UserError(f"{pat}: folder holds no .parquet files")
        elif fs.exists(path):
            found = [path]
        else:
            raise UserError(f"{pat}: input file not found")
        proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files += [p if proto in ("file", "local") else fs.unstrip_protocol(p) for p in found]
    return list(dict.fromkeys(files))


def open_input(url: str):
    """An input file opened for reading: a local one as Arrow's own file, so a worker on local files never imports
    fsspec (0.09-0.13 s in a fresh interpreter here, paid by every worker's first task; reading a shard is as fast
    either way, BENCHMARKS.md), a URL through fsspec."""
    from idia.core.storage import location, normalize_url, remote

    if not remote(url):
        return pa.OSFile(str(location(url)))
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(normalize_url(url))
    return fs.open(path, "rb")


def inspect_footers(files: list[str], mapping: dict, skip_bad: bool) -> tuple[list[InputFile], list[dict]]:
    """Read every footer: row groups, and the schema checked against the column mapping. A corrupt file is an
    InputFileError naming it, or (skip_bad) listed with its reason; a missing column is always an error."""
    ok, bad = [], []
    for index, url in enumerate(files):
        try:
            with open_input(url) as f:
                pf = pq.ParquetFile(f)
                schema = pf.schema_arrow
                md = pf.metadata
                rgs = tuple(md.row_group(i).num_rows for i in range(md.num_row_groups))
                size = f.seek(0, os.SEEK_END)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt or truncated files
            reason = f"not a readable parquet file ({type(exc).__name__}: {exc})"
            if not skip_bad:
                raise InputFileError(f"{url}: {reason}; use --skip-bad-files to skip it") from None
            bad.append({"file": url, "reason": reason})
            continue
        # Missing column / wrong type is the user's layout choice (--columns): always an error, never skipped.
        check_mapping(schema, mapping, LAION_400M, url)
        ok.append(InputFile(url, index, size, md.serialized_size, rgs))
    return ok, bad


def task_rows_for(inputs: list[InputFile], cores: int, task_rows: int) -> int:
    """Rows per scan task: the configured number, or (0 = auto) enough tasks for 2 per core, at most AUTO_TASK_ROWS.

    Each Python task costs Spark a fixed ~50-70 ms here (BENCHMARKS.md), so a task per small row group wastes time.
    """
    if task_rows:
        return task_rows
    total = sum(f.rows for f in inputs)
    return max(1, min(AUTO_TASK_ROWS, -(-total // max(1, 2 * cores))))


def plan_units(inputs: list[InputFile], task_rows: int) -> list[ScanUnit]:
    """Consecutive row groups of one file grouped while a unit stays within task_rows (a row group is never split,
    a unit never spans two files)."""
    units = []
    for info in inputs:
        first = 0
        cur: list | None = None
        for rg, n in enumerate(info.row_groups):
            if cur is not None and cur[4] + n <= task_rows:
                cur[2], cur[4] = rg, cur[4] + n
            else:
                if cur is not None:
                    units.append(ScanUnit(*cur))
                cur = [info.index, rg, rg, first, n]
            first += n
        if cur is not None:
            units.append(ScanUnit(*cur))
    return units
