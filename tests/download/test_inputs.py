"""Download inputs without downloading: manifest dedup + seeded sampling, the query list parser, reason codes,
the safe resizer's header checks and crop."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from idia.core.errors import InputFileError
from idia.download.image_checks import SafeResizer, is_truncated, parse_bbox
from idia.download.index import reason_code
from idia.download.queries import read_query_list
from idia.download.requests import requests_from_manifests, sample_per_identity
from idia.mine.names import read_names
from tests.support.http_fixtures import bomb_png, image_bytes, noise_jpeg, write_mine_output


def _frame(n_ids=3, n_rows=20):
    return pd.DataFrame(
        [
            {"identity_id": f"id{i}", "source_id": str(j), "url": f"http://h/{i}/{j}"}
            for i in range(n_ids)
            for j in range(n_rows)
        ]
    )


def test_sampling_is_seeded_stable_and_order_independent():
    df = _frame()
    a, dropped = sample_per_identity(df, 5, seed=1)
    assert dropped == 45 and len(a) == 15
    assert a.groupby("identity_id").size().tolist() == [5, 5, 5]
    b, _ = sample_per_identity(df.sample(frac=1, random_state=3), 5, seed=1)
    assert a.to_dict("records") == b.to_dict("records")  # same rows, same (sorted) order
    c, _ = sample_per_identity(df, 5, seed=2)
    assert a.to_dict("records") != c.to_dict("records")
    # No K: every row.
    assert sample_per_identity(df, None, 0)[0] is df


def test_manifests_dedup_sample_and_account(tmp_path):
    rows = [{"identity_id": "ann", "SAMPLE_ID": i, "URL": f"http://example.org/{i}.jpg"} for i in range(10)]
    rows += [
        {"identity_id": "ann", "SAMPLE_ID": 99, "URL": "http://example.org/3.jpg"},  # same image again
        {"identity_id": "ann", "SAMPLE_ID": 98, "URL": None},
        {"identity_id": "ann", "SAMPLE_ID": 97, "URL": "  "},
        {"identity_id": "bob", "SAMPLE_ID": None, "URL": "http://example.org/b.jpg"},
        {"identity_id": "bob", "SAMPLE_ID": 3, "URL": "http://example.org/3.jpg"},
    ]  # other person: kept
    mine = write_mine_output(tmp_path / "mine", rows, ["ann", "bob"])
    table, stats = requests_from_manifests(mine, max_per_identity=4, seed=0)
    assert stats["manifest_rows"] == 15
    assert stats["skipped_no_url"] == 2 and stats["skipped_duplicate_url"] == 1
    assert stats["not_sampled"] == 6 and stats["requested"] == 6 == table.num_rows
    df = table.to_pandas()
    assert df.groupby("identity_id").size().to_dict() == {"ann": 4, "bob": 2}
    assert df.loc[df.identity_id == "bob", "source_id"].str.startswith("u").sum() == 1  # no SAMPLE_ID: URL hash
    assert list(zip(df.identity_id, df.source_id)) == sorted(zip(df.identity_id, df.source_id))
    again, _ = requests_from_manifests(mine, max_per_identity=4, seed=0)
    assert again.equals(table)


def test_manifests_missing_or_wrong(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        requests_from_manifests(tmp_path / "nope", None, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no manifest files"):
        requests_from_manifests(tmp_path / "empty", None, 0)


QUERY_HEADER = "name\timage_id\tface_id\turl\tbbox\tsha256\n"


def _names(tmp_path):
    p = tmp_path / "names.csv"
    p.write_text("identity_id,name,aliases\nann-1,Ann Example,Annie E\nbob-2,Bob Example,\n", encoding="utf-8")
    return read_names(p)


def test_query_list_reads_and_skips_unknown(tmp_path):
    sha = "a" * 64
    q = tmp_path / "q.tsv"
    q.write_text(
        QUERY_HEADER
        + f"Ann Example\t1\t1\thttp://x/1.jpg\t10,20,110,140\t{sha.upper()}\n"
        + "Annie  E\t2\t2\thttp://x/2.jpg\t\t\n"  # alias, extra whitespace
        + "\n"
        + "Nobody Known\t3\t3\thttp://x/3.jpg\t\t\n"
        + "Bob Example\t4\t1\thttp://x/4.jpg\t1.5,2,3.25,4\t\n",
        encoding="utf-8",
    )
    table, stats, unknown, _ = read_query_list(q, _names(tmp_path))
    assert stats["rows_read"] == 4 and stats["requested"] == 3 and stats["skipped_unknown_name"] == 1
    assert unknown == ["Nobody Known"]
    rows = table.to_pylist()
    assert [(r["identity_id"], r["source_id"]) for r in rows] == [("ann-1", "1"), ("ann-1", "2"), ("bob-2", "4")]
    assert rows[0]["bbox"] == "10,20,110,140" and rows[0]["sha256"] == sha
    assert rows[1]["bbox"] is None and rows[1]["sha256"] is None
    assert rows[2]["bbox"] == "1.5,2,3.25,4"


@pytest.mark.parametrize(
    "line, match",
    [
        ("Ann Example\t1\t1\thttp://x/1.jpg\t10,20,5,40\t\n", "line 2: column bbox"),
        ("Ann Example\t1\t1\thttp://x/1.jpg\t10,20\t\n", "line 2: column bbox"),
        ("Ann Example\t1\t1\thttp://x/1.jpg\t\tnothex\n", "line 2: column sha256"),
        ("Ann Example\t1\t1\thttp://x/1.jpg\n", "line 2: 4 tab-separated fields"),
        ("Ann Example\t\t1\thttp://x/1.jpg\t\t\n", "line 2: empty image_id"),
        ("Ann Example\t1\t1\t\t\t\n", "line 2: empty url"),
        ("Ann Example\t1\t1\thttp://x/1.jpg\t\t\nAnn Example\t1\t2\thttp://x/2.jpg\t\t\n", "line 3: .* repeats line 2"),
        ("Ann\u200bExample\t1\t1\thttp://x/1.jpg\t\t\n", "line 2: .*U\\+200B"),
    ],
)
def test_query_list_rejects_junk_with_line(tmp_path, line, match):
    q = tmp_path / "q.tsv"
    q.write_text(QUERY_HEADER + line, encoding="utf-8")
    with pytest.raises(InputFileError, match=match):
        read_query_list(q, _names(tmp_path))


def test_query_list_header_and_identity_column(tmp_path):
    q = tmp_path / "q.tsv"
    q.write_text("name\turl\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="line 1: header lacks column"):
        read_query_list(q, None)
    q.write_text(QUERY_HEADER.rstrip("\n") + "\tidentity_id\nAnyone\t7\t1\thttp://x/7.jpg\t\t\tp-7\n", encoding="utf-8")
    table, _, _, _ = read_query_list(q, None)  # identity_id column: no names list needed
    assert table.to_pylist()[0]["identity_id"] == "p-7"
    q.write_text(QUERY_HEADER + "Ann Example\t1\t1\thttp://x/1.jpg\t\t\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="--identities"):
        read_query_list(q, None)


def test_query_sources_sex_aliases_and_junk(tmp_path):
    from idia.download.queries import read_queries, read_query_aliases, read_url_lists, sex_from_path

    assert [sex_from_path(Path(p)) for p in ("facescrub_actors.txt", "x/actresses/A.txt", "q.tsv")] == ["m", "f", None]
    names = _names(tmp_path)
    root = tmp_path / "lists"
    (root / "actresses").mkdir(parents=True)
    (root / "actresses" / "Ann_Example.txt").write_text("http://x/a.jpg\nhttp://x/b.jpg\n")
    (root / "Nobody_Here.txt").write_text("http://x/c.jpg\n")
    table, stats, unknown, sexes = read_url_lists(root, names)
    assert [(r["identity_id"], r["source_id"], r["url"]) for r in table.to_pylist()] == [
        ("ann-1", "L0000", "http://x/a.jpg"),
        ("ann-1", "L0001", "http://x/b.jpg"),
    ]
    assert (stats["rows_read"], stats["requested"], stats["skipped_unknown_name"]) == (3, 2, 1)
    assert unknown == ["Nobody Here"] and sexes == {"ann-1": "f"}
    # A FaceScrub file naming the same person a man: the sources disagree, and the error says where.
    q = tmp_path / "facescrub_actors.txt"
    q.write_text(QUERY_HEADER + "Ann Example\t1\t1\thttp://x/1.jpg\t\t\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="sex 'm' here but 'f'"):
        read_queries([str(root), str(q)], names)
    # A query-name fix maps a misspelling to the names list's spelling.
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("query_name,name\nAnn Exampel,Ann Example\n")
    q.write_text(QUERY_HEADER + "Ann Exampel\t1\t1\thttp://x/1.jpg\t\t\n", encoding="utf-8")
    t, st, unk, sx = read_queries([str(q)], names, read_query_aliases(fixes))
    assert t.column("identity_id").to_pylist() == ["ann-1"] and unk == [] and sx == {"ann-1": "m"}
    fixes.write_text("name,query_name\n")
    with pytest.raises(InputFileError, match="header must start with query_name,name"):
        read_query_aliases(fixes)
    (root / "actresses" / "Ann_Example.txt").write_text("http://x/a.jpg extra\n")
    with pytest.raises(InputFileError, match=r"Ann_Example.txt: line 1: a URL line holds whitespace"):
        read_url_lists(root, names)


@pytest.mark.parametrize(
    "message, status, code",
    [
        (None, "success", None),
        ("HTTP Error 404: Not Found", "failed_to_download", "http_404"),
        ("<urlopen error timed out>", "failed_to_download", "timeout"),
        ("The read operation timed out", "failed_to_download", "timeout"),
        ("Use of image disallowed by X-Robots-Tag directive", "failed_to_download", "opt_out"),
        (
            "<urlopen error refused by url guard: link_local (x -> 169.254.169.254)>",
            "failed_to_download",
            "refused_link_local",
        ),
        ("<urlopen error unknown url type: file>", "failed_to_download", "refused_scheme"),
        ("<urlopen error [Errno -2] Name or service not known>", "failed_to_download", "dns_error"),
        ("<urlopen error [Errno 111] Connection refused>", "failed_to_download", "connection_refused"),
        ("Image decoding error", "failed_to_resize", "not_an_image"),
        ("truncated image", "failed_to_resize", "truncated_image"),
        ("too many pixels (1x2 > 1)", "failed_to_resize", "too_many_pixels"),
        ("something new", "failed_to_download", "download_error"),
        ("something new", "failed_to_resize", "resize_error"),
    ],
)
def test_reason_codes(message, status, code):
    assert reason_code(message, status) == code


class _EchoResizer:
    """Stands in for img2dataset's Resizer: reports the size of what it is given."""

    def __call__(self, stream, bbox):
        assert bbox is None
        with Image.open(stream) as im:
            w, h = im.size
            return b"img", w, h, w, h, None


def test_safe_resizer_checks_and_crops():
    r = SafeResizer(_EchoResizer(), max_pixels=100_000)
    assert r(io.BytesIO(bomb_png()))[-1].startswith("too many pixels")
    assert r(io.BytesIO(b"<html>"))[-1].startswith("not an image")
    full = noise_jpeg()
    assert not is_truncated(full, "JPEG")
    assert r(io.BytesIO(full[: len(full) // 2]))[-1] == "truncated image"
    png = image_bytes("PNG", size=(200, 100))
    assert is_truncated(png[:-20], "PNG") and not is_truncated(png, "PNG")
    assert r(io.BytesIO(png))[1:3] == (200, 100)
    assert r(io.BytesIO(png), "10,20,110,70")[1:3] == (100, 50)
    assert r(io.BytesIO(png), "150,50,400,400")[1:3] == (50, 50)  # clipped to the image
    assert r(io.BytesIO(png), "300,300,400,400")[-1] == "face box outside the image"
    with pytest.raises(ValueError, match="expected x1,y1,x2,y2"):
        parse_bbox("1,2,3")
