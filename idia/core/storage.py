"""Where a stage's files live: a local path, or any fsspec URL (s3://, gs://, hdfs://, ...), behind one Path-like type.

`location(x)` gives a `pathlib.Path` for local paths (so local runs behave exactly as before) and a
`universal_pathlib` UPath for URLs (the same `/`, `read_text`, `exists`, `glob`, `open` API over fsspec).
`s3a://` and `s3n://` (Hadoop's names) are read as `s3://`.

Credentials, endpoints and other filesystem options are fsspec's own configuration (`fsspec.config.conf`, which
fsspec also fills from `FSSPEC_<PROTOCOL>_<OPTION>` environment variables, e.g. `FSSPEC_S3_ENDPOINT_URL`), plus
a stage's `storage_options` ({protocol: {option: value}}) merged over it by `configure`. Task contexts carry
`shipped_conf()` to executors and workers, which `apply_shipped` it before touching a file: a cluster's nodes need
no environment of their own.

Object stores have no rename. Writes that must appear whole (every file the project writes) go to a local temporary
file first and are uploaded in one put (a single PUT, or a multipart upload that only appears when completed):
nothing half-written is ever visible under the final name (`idia.core.atomic`). Folder swaps are not available
there; stages that swap folders locally copy instead and rely on their completion record, written last.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

ALIASES = {"s3a": "s3", "s3n": "s3"}
#: Listing caches off where other processes write the same prefixes (executors write, the driver lists).
_NO_LISTING_CACHE = {"s3": {"use_listings_cache": False}, "gcs": {"use_listings_cache": False}}


def normalize_url(url: str) -> str:
    """Hadoop's s3a:// / s3n:// as s3://; everything else unchanged."""
    scheme, sep, rest = str(url).partition("://")
    return f"{ALIASES.get(scheme.lower(), scheme)}://{rest}" if sep else str(url)


def remote(x: Any) -> bool:
    """True for a location on a remote filesystem: a URL with a scheme other than file://, or such a UPath."""
    if hasattr(x, "protocol") and hasattr(x, "fs"):  # a UPath
        return getattr(x, "protocol", "") not in ("", "file", "local")
    scheme, sep, _ = str(x).partition("://")
    return bool(sep) and scheme.lower() not in ("file", "local")


def absolute(x: str | os.PathLike) -> str:
    """A location as the absolute path or URL that every process resolves the same way (whatever its cwd)."""
    return str(x) if remote(x) else os.path.abspath(os.fspath(x))


def location(x: str | os.PathLike) -> Path:
    """A local `Path`, or a UPath for a URL (file:// URLs become local paths)."""
    if hasattr(x, "protocol") and hasattr(x, "fs"):  # already a UPath
        return x  # type: ignore[return-value]
    text = normalize_url(os.fspath(x))
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if remote(text):
        _object_store_defaults()
        from upath import UPath

        return UPath(text)
    return Path(text)


def _object_store_defaults() -> None:
    """The listing cache off for object stores, unless the configuration says otherwise (idempotent)."""
    import fsspec.config

    for proto, opts in _NO_LISTING_CACHE.items():
        for k, v in opts.items():
            fsspec.config.conf.setdefault(proto, {}).setdefault(k, v)


def configure(options: dict[str, dict] | None) -> None:
    """Merge {protocol: {option: value}} into fsspec's configuration (over what it holds; the listing cache off for
    object stores)."""
    import fsspec.config

    _object_store_defaults()
    for proto, opts in (options or {}).items():
        if not isinstance(opts, dict):
            from idia.core.errors import ConfigError

            raise ConfigError(f"storage_options.{proto}: expected a mapping of option: value, got {opts!r}")
        fsspec.config.conf.setdefault(ALIASES.get(proto, proto), {}).update(opts)


def shipped_conf() -> tuple:
    """fsspec's configuration as a picklable, hashable value for a task context: ((protocol, ((option, value), ...)),
    ...). Executors and workers `apply_shipped` it."""
    import fsspec.config

    return tuple(sorted((k, tuple(sorted(v.items()))) for k, v in fsspec.config.conf.items() if isinstance(v, dict)))


def apply_shipped(conf: tuple, *where: str | os.PathLike) -> None:
    """Configure this process's fsspec with what `shipped_conf` gave the driver. Given the locations a task touches
    (`where`), only when one of them is remote: a task on local files then never imports fsspec (0.09-0.13 s here,
    most of it scanning every installed package's entry points; BENCHMARKS.md)."""
    if where and not any(remote(w) for w in where):
        return
    configure({proto: dict(opts) for proto, opts in conf})


def makedirs(p: Path) -> None:
    """mkdir -p locally; nothing on an object store (prefixes need no creating)."""
    if not remote(p):
        p.mkdir(parents=True, exist_ok=True)


def rmtree(p: Path) -> None:
    """Remove a folder and everything under it, if it exists."""
    if not remote(p):
        shutil.rmtree(p, ignore_errors=True)
        return
    try:
        if p.fs.exists(p.path):
            p.fs.rm(p.path, recursive=True)
    except FileNotFoundError:
        pass


def copytree(src: Path, dest: Path) -> list[str]:
    """Copy every file under `src` to the same relative place under `dest` (server-side on an object store)."""
    done = []
    for f in sorted(q for q in src.rglob("*") if q.is_file()):
        target = dest / str(f.relative_to(src))
        if remote(src) and remote(dest) and src.fs is dest.fs:
            src.fs.copy(f.path, target.path)
        else:
            with f.open("rb") as a, target.open("wb") as b:
                shutil.copyfileobj(a, b)
        done.append(str(target))
    return done


def _read(path: str | os.PathLike, reader, **kwargs: Any):
    """`reader(path_or_file, **kwargs)` on a local path, or on the file object of a URL / UPath."""
    p = location(path)
    if not remote(p):
        return reader(p, **kwargs)
    with p.open("rb") as fh:
        return reader(fh, **kwargs)


def read_parquet(path: str | os.PathLike, **kwargs: Any):
    """pyarrow.parquet.read_table of a local path or a URL / UPath (read through its filesystem's file object)."""
    import pyarrow.parquet as pq

    return _read(path, pq.read_table, **kwargs)


def read_csv(path: str | os.PathLike, **kwargs: Any):
    """pandas.read_csv of a local path or a URL / UPath."""
    import pandas as pd

    return _read(path, pd.read_csv, **kwargs)


def read_schema(path: str | os.PathLike):
    """The Arrow schema in a parquet file's footer (local path or URL)."""
    import pyarrow.parquet as pq

    return _read(path, pq.read_schema)


def parquet_rows(path: str | os.PathLike) -> int:
    """The row count in a parquet file's footer (local path or URL)."""
    import pyarrow.parquet as pq

    return _read(path, pq.read_metadata).num_rows


def local_only(x: str | os.PathLike, what: str) -> Path:
    """`x` as a local Path, or a ConfigError saying that `what` must be on a local or shared filesystem."""
    if remote(x):
        from idia.core.errors import ConfigError

        raise ConfigError(f"{what}: {x} is a URL, but {what} must be a local (or shared, mounted) folder")
    return location(x)


def as_uri(p: Path) -> str:
    """A link a person can open: file:// for a local file, the URL itself on an object store."""
    return str(p) if remote(p) else p.resolve().as_uri()


def put_file(local: str | os.PathLike, dest: Path) -> None:
    """Upload a finished local file to `dest` in one put (it appears whole or not at all)."""
    dest.fs.put_file(os.fspath(local), dest.path)
