"""Image sources: a download folder (index.parquet + webdataset tars) and a plain folder, with accounting."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import PIL
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import schemas
from idia.attack.images import ImageReader, list_images
from idia.core.errors import InputFileError
from tests.support.tiny_model import write_image_folder


def _png(seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _add(tf, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_download_folder(tmp_path):
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "00000.tar", "w") as tf:
        for key, iid, src in [("000000000", "a", "11"), ("000000001", "b", "12"), ("000000002", "a", "13")]:
            _add(tf, f"{key}.png", _png(int(src)))
            _add(tf, f"{key}.json", json.dumps({"identity_id": iid, "source_id": src}).encode())
        _add(tf, "000000003.jpg", b"not an image")
    rows = [
        ("a", "11", "http://x/11", "success", None, "shards/00000.tar", "000000000"),
        ("b", "12", "http://x/12", "success", None, "shards/00000.tar", "000000001"),
        ("a", "13", "http://x/13", "success", None, "shards/00000.tar", "000000002"),
        ("a", "14", "http://x/14", "failed", "http_404", None, None),
        ("z", "15", "http://x/15", "success", None, "shards/00000.tar", "000000003"),  # not an identity under attack
        ("b", "16", "http://x/16", "success", None, "shards/00000.tar", "000000003"),  # corrupt bytes in the tar
    ]
    table = pa.table(
        {n: [r[i] for r in rows] for i, n in enumerate(schemas.DOWNLOAD_INDEX.names)}, schema=schemas.DOWNLOAD_INDEX
    )
    pq.write_table(table, tmp_path / "index.parquet")
    refs, stats = list_images(tmp_path, ["a", "b", "c"])
    assert [r.image_key for r in refs["a"]] == ["11", "13"] and [r.image_key for r in refs["b"]] == ["12", "16"]
    assert refs["c"] == []
    assert stats["index_rows"] == 6 and stats["images_not_downloaded"] == 1 and stats["images_unknown_identity"] == 1
    with ImageReader() as reader:
        assert reader.open(refs["a"][1]).size == (8, 8)
        with pytest.raises(PIL.UnidentifiedImageError, match="cannot identify image file"):
            reader.open(refs["b"][1])


def test_plain_folder_and_errors(tmp_path):
    write_image_folder(tmp_path / "img", {"a": 2, "other": 1}, size=8)
    refs, stats = list_images(tmp_path / "img", ["a", "b"])
    assert [r.image_key for r in refs["a"]] == ["000.png", "001.png"] and refs["b"] == []
    assert stats["images_unknown_identity"] == 1
    with pytest.raises(InputFileError, match="images folder not found"):
        list_images(tmp_path / "missing", ["a"])


def test_image_paths_are_absolute_for_workers_elsewhere(tmp_path, monkeypatch):
    """A relative --images (as in the README's own commands) reaches the workers as absolute paths: a worker with
    another working directory opens the same files."""
    from tests.support.tiny_model import write_image_folder

    write_image_folder(tmp_path / "imgs", {"a": 2})
    monkeypatch.chdir(tmp_path)
    refs, _ = list_images("imgs", ["a"])
    assert refs["a"] and all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in refs["a"])


def test_scheduler_address_from_the_environment(monkeypatch):
    import dask

    from jobs.dask_cluster import scheduler_address

    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with dask.config.set({"scheduler-address": None}):
        assert scheduler_address() is None  # nothing configured: a local cluster
        with dask.config.set({"scheduler-address": "tcp://from-config:8786"}):
            assert scheduler_address() == "tcp://from-config:8786"
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://from-env:8786")
        assert scheduler_address() == "tcp://from-env:8786"
        assert scheduler_address("sched.json") == "sched.json"  # an explicit one wins


def test_tar_members_with_parent_or_absolute_paths_are_never_images_of_a_key(tmp_path):
    """A hostile shard: members named ../x or /x are not extracted anywhere (images are read in memory) and never
    stand in for a sample key; the real member is read."""
    import io
    import tarfile

    from PIL import Image

    from idia.attack.images import ImageReader, ImageRef, ShardError

    def jpeg(color):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), color).save(buf, format="JPEG")
        return buf.getvalue()

    tar = tmp_path / "shard" / "00000.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w") as tf:
        for name, data in (
            ("../000000001.jpg", jpeg("red")),
            ("/tmp/000000001.jpg", jpeg("red")),
            ("000000001.jpg", jpeg("blue")),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with ImageReader() as reader:
        img = reader.open(ImageRef("p", "1", str(tar), "000000001"))
        assert img.getpixel((4, 4))[2] > 200  # the blue one: the member named exactly by the key
        with pytest.raises(ShardError, match="no image for key 000000002, which the index lists"):
            reader.open(ImageRef("p", "2", str(tar), "000000002"))  # a key the shard does not hold
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["00000.tar", "shard"]  # nothing written anywhere
