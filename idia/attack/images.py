"""Images per identity, from a download folder (index.parquet + webdataset tars) or a plain folder root/<id>/*.jpg."""

from __future__ import annotations

import io
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

import schemas
from idia.core import storage
from idia.core.errors import InputFileError
from idia.core.stats import Stats
from schemas.validate import conform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class ImageRef:
    """Where one image is: a file (`path`) or a member of a webdataset tar (`path` = tar, `member` = sample key)."""

    identity_id: str
    image_key: str
    path: str
    member: str | None = None


def list_images(images: str | Path, identity_ids: list[str]) -> tuple[dict[str, list[ImageRef]], Stats]:
    """Images of each identity in `identity_ids` (sorted by image key). Stats count what was left out and why."""
    # absolute: workers elsewhere (another working directory) open the same files; or a URL (object storage)
    images = storage.location(storage.absolute(images))
    if not images.is_dir():
        raise InputFileError(f"{images}: images folder not found")
    wanted = set(identity_ids)
    out: dict[str, list[ImageRef]] = {i: [] for i in identity_ids}
    stats = Stats()
    index = images / "index.parquet"
    if index.is_file():
        table = conform(storage.read_parquet(index), schemas.DOWNLOAD_INDEX, str(index))
        seen: set[tuple[str, str]] = set()
        for row in table.to_pylist():
            stats["index_rows"] += 1
            iid = row["identity_id"]
            if iid not in wanted:
                stats["images_unknown_identity"] += 1
            elif row["status"] != "success":
                stats["images_not_downloaded"] += 1
            elif not row["shard"] or not row["key"]:
                raise InputFileError(
                    f"{index}: success row without shard/key (identity {iid}, source {row['source_id']})"
                )
            elif (iid, row["source_id"]) in seen:
                stats["images_duplicate"] += 1
            else:
                seen.add((iid, row["source_id"]))
                out[iid].append(ImageRef(iid, str(row["source_id"]), str(images / row["shard"]), row["key"]))
                stats["images_listed"] += 1
        from idia.core.stats import check_sum

        check_sum(
            stats["index_rows"],
            {
                k: stats[k]
                for k in ("images_listed", "images_unknown_identity", "images_not_downloaded", "images_duplicate")
            },
            f"{index}: rows",
        )
    else:
        for sub in sorted(p for p in images.iterdir() if p.is_dir()):
            files = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if sub.name not in wanted:
                stats["images_unknown_identity"] += len(files)
                continue
            for f in files:
                out[sub.name].append(ImageRef(sub.name, f.name, str(f)))
                stats["images_listed"] += 1
    for refs in out.values():
        refs.sort(key=lambda r: r.image_key)
    return out, stats


class ShardError(InputFileError):
    """A webdataset shard that is cut short, unreadable or lacks an image its download index lists: a fault of the
    download folder (a disk or a copy gone wrong), not a bad photo, so the attack stops instead of counting it."""

    def __init__(self, path: str, what: str | None = None):
        if what is None:  # rebuilt from its message (pickled from a worker, re-raised by a DataLoader)
            super().__init__(path)
            return
        stem = Path(path).name.split(".")[0]
        super().__init__(
            f"{path}: {what}; delete that shard's files ({stem}.tar, {stem}.parquet, {stem}_stats.json) and rerun the "
            "download, which fetches that shard again, then the attack"
        )


class ImageReader:
    """Opens images by reference; keeps each tar's member table so a shard is listed once per reader. Tars and files
    on object storage are read through their fsspec file objects (ranged reads: only the members asked for)."""

    def __init__(self) -> None:
        self._tars: dict[str, tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]] = {}
        self._files: list = []  # remote file objects under the open tars
        self._lock = threading.Lock()  # tarfile is not thread-safe; decoding (outside the lock) is

    def _tar(self, path: str):
        if path not in self._tars:
            try:
                if storage.remote(path):
                    fh = storage.location(path).open("rb")
                    self._files.append(fh)
                    tf = tarfile.open(fileobj=fh)
                else:
                    tf = tarfile.open(path)
                listed = tf.getmembers()
            except (tarfile.TarError, EOFError) as exc:
                raise ShardError(path, f"truncated or corrupt shard ({exc})") from None
            members: dict[str, tarfile.TarInfo] = {}
            for m in listed:
                stem, dot, ext = m.name.rpartition(".")
                if dot and "." + ext.lower() in IMAGE_EXTENSIONS:
                    members.setdefault(stem, m)
            self._tars[path] = (tf, members)
        return self._tars[path]

    def open(self, ref: ImageRef) -> Image.Image:
        if ref.member is None:
            if storage.remote(ref.path):
                data = storage.location(ref.path).read_bytes()
                img = Image.open(io.BytesIO(data))
            else:
                img = Image.open(ref.path)
            img.load()
            return img
        with self._lock:
            tf, members = self._tar(ref.path)
            info = members.get(ref.member)
            if info is None:
                raise ShardError(
                    ref.path, f"truncated or corrupt shard: no image for key {ref.member}, which the index lists"
                )
            try:
                data = tf.extractfile(info).read()
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise ShardError(ref.path, f"truncated or corrupt shard ({exc})") from None
            if len(data) != info.size:
                raise ShardError(ref.path, f"truncated shard: key {ref.member} has {len(data)} of {info.size} bytes")
        img = Image.open(io.BytesIO(data))
        img.load()
        return img

    def close(self) -> None:
        for tf, _ in self._tars.values():
            tf.close()
        for fh in self._files:
            fh.close()
        self._tars.clear()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
