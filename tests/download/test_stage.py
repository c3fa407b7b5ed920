"""The download stage end to end: real img2dataset over real HTTP from loopback servers started here.

Each fixture URL ends in its expected state; the guard holds by default (no request reaches the server) and behind
redirects (the second server on 127.0.0.2 receives nothing); the report adds up; --retry-failed re-feeds only failed
rows; a killed run resumes without downloading finished shards again; pyspark gives what multiprocessing gives.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from idia.core.errors import ConfigError
from idia.download.config import DownloadConfig
from idia.world.server import LoopbackServer
from jobs.download import run_download
from schemas import DOWNLOAD_INDEX
from tests.support.http_fixtures import FixtureSite, image_bytes, write_mine_output

ROOT = Path(__file__).resolve().parents[2]

# identity -> [(path on the fixture server or a full URL, expected reason; None = success)]
EXPECTED = {
    "alice": [("img/good.jpg", None), ("img/good.png", None), ("img/good.webp", None), ("redirect-ok.jpg", None)],
    "bob": [
        ("missing.jpg", "http_404"),
        ("slow.jpg", "timeout"),
        ("page.html", "not_an_image"),
        ("truncated.jpg", "truncated_image"),
        ("bomb.png", "too_many_pixels"),
        ("flaky.jpg", "http_503"),
        ("huge.jpg", "body_too_large"),
        ("huge-stream.jpg", "body_too_large"),
    ],
    "carol": [
        ("optout.jpg", "opt_out"),
        ("optout-ua.jpg", "opt_out"),
        ("redirect-forbidden.jpg", "refused_loopback"),
        ("file:///etc/passwd", "refused_scheme"),
        ("ftp://127.0.0.1/x.jpg", "refused_scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "refused_scheme"),
        ("FORBIDDEN", "refused_loopback"),
        ("private/face.jpg", "robots_disallowed"),
    ],
}
FAST = dict(processes=1, threads=8, shard_size=4, timeout=1.5, image_size=64, max_body_bytes=1_000_000)


def _url(site: FixtureSite, path: str) -> str:
    if path == "FORBIDDEN":
        return site.forbidden.url("img/good.jpg")
    return path if ":" in path else site.url(path)


def _manifest_rows(site: FixtureSite) -> tuple[list[dict], dict]:
    rows, expect = [], {}
    sid = 1000
    for ident, items in EXPECTED.items():
        for path, reason in items:
            sid += 1
            rows.append({"identity_id": ident, "SAMPLE_ID": sid, "URL": _url(site, path)})
            expect[(ident, str(sid))] = reason
    # erin: 12 distinct good images, sampled down to 8; plus a repeated URL and a row without one (dropped, counted)
    for i in range(12):
        rows.append({"identity_id": "erin", "SAMPLE_ID": 2000 + i, "URL": site.url(f"img/n{i:03d}.jpg")})
    rows.append({"identity_id": "erin", "SAMPLE_ID": 2999, "URL": site.url("img/n000.jpg")})
    rows.append({"identity_id": "carol", "SAMPLE_ID": 3000, "URL": None})
    return rows, expect


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("download")
    with FixtureSite(tmp / "site", slow_s=3.0) as site:
        rows, expect = _manifest_rows(site)
        mine = write_mine_output(tmp / "mine", rows, ["alice", "bob", "carol", "dave", "erin"])
        cfg = DownloadConfig(
            out=str(tmp / "mp"),
            manifests=str(mine),
            max_per_identity=8,
            seed=7,
            allowed_networks=["127.0.0.1/32"],
            **FAST,
        )
        report = run_download(cfg)
        yield {
            "tmp": tmp,
            "site": site,
            "mine": mine,
            "expect": expect,
            "cfg": cfg,
            "report": report,
            "requests_after_first_run": Counter(site.server.requests),
        }


def _index(out) -> list[dict]:
    return pq.read_table(Path(out) / "index.parquet").to_pylist()


def test_every_url_ends_in_its_expected_state(world):
    index = _index(world["cfg"].out)
    by_key = {(r["identity_id"], r["source_id"]): r for r in index}
    for key, reason in world["expect"].items():
        row = by_key[key]
        assert (row["status"], row["reason"]) == ("success" if reason is None else "failed", reason), (key, row)
        assert (row["shard"] is not None) == (reason is None)
    erin = [r for r in index if r["identity_id"] == "erin"]
    assert len(erin) == 8 and all(r["status"] == "success" for r in erin)
    assert pq.read_schema(Path(world["cfg"].out) / "index.parquet").names == DOWNLOAD_INDEX.names
    # The guard: nothing reached the forbidden server, not even through the redirect.
    assert world["site"].forbidden.requests == []
    # Refused before download: never requested at all.
    assert world["requests_after_first_run"]["/img/good.jpg"] == 2  # alice's, and the redirect target
    # The endless body: the client hung up once past --max-body-bytes (what the server got out is that plus what
    # the sockets' buffers held), so a worker never holds more than the bound; the 2 GB one was never read.
    sent = world["site"].endless_bytes_sent
    assert sent and max(sent) < world["cfg"].max_body_bytes + 16 * 2**20, sent
    # robots.txt: fetched (once per download process), and the path it disallows never requested
    assert world["requests_after_first_run"]["/private/face.jpg"] == 0
    assert 1 <= world["requests_after_first_run"]["/robots.txt"] <= world["cfg"].processes * 2


def test_shards_carry_identity_and_source_ids(world):
    out = Path(world["cfg"].out)
    index = [r for r in _index(out) if r["status"] == "success"]
    seen = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read())
                    seen[(f"shards/{tar.name}", meta["key"])] = (meta["identity_id"], meta["source_id"])
                if m.name.endswith(".jpg"):
                    with Image.open(io.BytesIO(tf.extractfile(m).read())) as im:
                        assert min(im.size) == 64  # keep_ratio: shorter side = image_size
    for r in index:
        assert seen[(r["shard"], r["key"])] == (r["identity_id"], r["source_id"])
    assert len(seen) == len(index)


def test_report_adds_up(world):
    rep = json.loads((Path(world["cfg"].out) / "report.json").read_text())
    t = rep["totals"]
    assert t["requested"] == 28 and t["downloaded"] == 12 and t["failed"] == 16
    assert t["requested"] == t["downloaded"] + t["failed"] == sum(t["failed_by_reason"].values()) + t["downloaded"]
    assert set(rep["identities"]) == {"alice", "bob", "carol", "dave", "erin"}
    assert rep["identities"]["dave"] == {"requested": 0, "downloaded": 0, "failed": 0, "failed_by_reason": {}}
    for e in rep["identities"].values():
        assert e["requested"] == e["downloaded"] + e["failed"] == e["downloaded"] + sum(e["failed_by_reason"].values())
    inp = rep["inputs"]
    assert inp["manifest_rows"] == 34 and inp["skipped_no_url"] == 1 and inp["skipped_duplicate_url"] == 1
    assert inp["not_sampled"] == 4 and inp["requested"] == 28
    assert rep["settings"]["ignore_opt_out"] is False and "127.0.0.1/32" in rep["settings"]["address_policy"]
    i2d = rep["img2dataset"]
    assert i2d["count"] == 28 - 4  # the 4 scheme/address refusals never reached img2dataset
    assert rep["settings"]["ignore_robots"] is False and rep["settings"]["robots_agents"] == [
        "idia-audit",
        "img2dataset",
    ]
    assert rep["settings"]["user_agent"].startswith("idia-audit/")
    assert i2d["successes"] == 12
    assert "| carol |" in (Path(world["cfg"].out) / "report.md").read_text()


def test_default_guard_sends_no_request(world, tmp_path):
    """Without --allow-private-network nothing reaches the 127.0.0.1 server: refused before download, and (with
    the pre-filter off) refused again inside img2dataset's workers at connect time."""
    site = world["site"]
    before = len(site.server.requests)
    for prefilter in (True, False):
        out = tmp_path / f"pf-{prefilter}"
        rep = run_download(
            DownloadConfig(
                out=str(out), manifests=str(world["mine"]), max_per_identity=8, seed=7, prefilter=prefilter, **FAST
            )
        )
        reasons = Counter(r["reason"] for r in _index(out))
        assert reasons == {"refused_loopback": 25, "refused_scheme": 3}, (prefilter, reasons)
        # Pre-filter off: every row reaches img2dataset, and its workers' opener refuses them all (file:, ftp:,
        # data: as unknown url types).
        assert rep["img2dataset"]["count"] == (0 if prefilter else 28)
    assert len(site.server.requests) == before
    assert site.forbidden.requests == []


@pytest.mark.slow
def test_pyspark_distributor_matches_multiprocessing(world, tmp_path):
    cfg = DownloadConfig(
        **{**world["cfg"].__dict__, "out": str(tmp_path / "spark"), "distributor": "pyspark", "processes": 1}
    )  # local[1]: one Python worker (each imports img2dataset)
    run_download(cfg)
    assert _index(cfg.out) == _index(world["cfg"].out)
    assert json.loads((tmp_path / "spark" / "report.json").read_text())["totals"] == world["report"]["totals"]


def test_rerun_and_retry_failed(world, tmp_path):
    out = tmp_path / "retry"
    shutil.copytree(world["cfg"].out, out)
    site = world["site"]
    cfg = DownloadConfig(**{**world["cfg"].__dict__, "out": str(out)})
    n = len(site.server.requests)
    run_download(cfg)  # plain rerun of a finished download: nothing is requested again
    assert len(site.server.requests) == n
    assert _index(out) == _index(world["cfg"].out)
    site.flaky_ok[0] = True
    try:
        rep = run_download(DownloadConfig(**{**cfg.__dict__, "retry_failed": True}))
    finally:
        site.flaky_ok[0] = False
    again = Counter(site.server.requests[n:])
    # Only rows that failed after reaching img2dataset are asked for again (refusals stay unsent).
    assert again == Counter(
        {
            "/missing.jpg": 1,
            "/slow.jpg": 1,
            "/page.html": 1,
            "/truncated.jpg": 1,
            "/bomb.png": 1,
            "/flaky.jpg": 1,
            "/huge.jpg": 1,
            "/huge-stream.jpg": 1,
            "/optout.jpg": 1,
            "/optout-ua.jpg": 1,
            "/redirect-forbidden.jpg": 1,
            "/robots.txt": 1,  # the retry round's download process reads it again; /private/ stays unrequested
        }
    )
    flaky = [r for r in _index(out) if r["url"].endswith("/flaky.jpg")][0]
    assert flaky["status"] == "success" and flaky["shard"] is not None
    assert rep["totals"]["downloaded"] == world["report"]["totals"]["downloaded"] + 1
    assert len(rep["rounds"]) == 2 and rep["rounds"][1]["n_rows"] == 16
    assert site.forbidden.requests == []
    # Another output-changing setting on the same folder stops with an error naming it; nothing is fetched.
    n = len(site.server.requests)
    with pytest.raises(ConfigError, match=r"holds download results made with other settings \(image_size: 64 -> 96\)"):
        run_download(DownloadConfig(**{**cfg.__dict__, "image_size": 96}))
    assert len(site.server.requests) == n


@pytest.mark.slow
def test_killed_run_resumes_without_redownloading(tmp_path):
    """Kill the CLI midway (process group, by PID); the rerun finishes, finished shards are not fetched again."""
    img = tmp_path / "site" / "img"
    img.mkdir(parents=True)
    paths = []
    for i in range(24):
        (img / f"k{i:02d}.jpg").write_bytes(image_bytes("JPEG", color=(10 * i, 50, 90)))
        paths.append(f"/slowimg/k{i:02d}.jpg")

    def delayed(name):
        def route(h):
            time.sleep(0.5)
            body = (img / name).read_bytes()
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        return route

    routes = {p: delayed(p.rsplit("/", 1)[1]) for p in paths}
    with LoopbackServer(tmp_path / "site", routes=routes) as srv:
        rows = [{"identity_id": f"p{i % 3}", "SAMPLE_ID": i, "URL": srv.url(p)} for i, p in enumerate(paths)]
        mine = write_mine_output(tmp_path / "mine", rows, ["p0", "p1", "p2"])
        out = tmp_path / "out"
        cmd = [
            sys.executable,
            "-m",
            "pipelines.cli",
            "download",
            "--manifests",
            str(mine),
            "--out",
            str(out),
            "--allowed-networks",
            "127.0.0.1/32",
            "--processes",
            "1",
            "--threads",
            "3",
            "--shard-size",
            "3",
            "--image-size",
            "32",
        ]
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not list((out / "shards").glob("*_stats.json")):
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started: the CLI and its img2dataset workers
        finally:
            proc.wait(timeout=30)
        done_before = sorted(p.name for p in (out / "shards").glob("*_stats.json"))
        assert 1 <= len(done_before) < 8, done_before
        assert not (out / "index.parquet").exists()
        requested_before = Counter(srv.requests)

        # Rerun in this process (same config as the CLI's) to spare a second interpreter start.
        rep = run_download(
            DownloadConfig(
                manifests=str(mine),
                out=str(out),
                allowed_networks=["127.0.0.1/32"],
                processes=1,
                threads=3,
                shard_size=3,
                image_size=32,
            )
        )
        index = _index(out)
        assert len(index) == 24 and all(r["status"] == "success" for r in index)
        finished = {f"shards/{n.split('_')[0]}.tar" for n in done_before}
        again = Counter(srv.requests) - requested_before
        for r in index:
            path = "/" + r["url"].split("/", 3)[3]
            if r["shard"] in finished:
                assert again[path] == 0, f"{path} of finished {r['shard']} was downloaded again"
        assert sum(requested_before.values()) + sum(again.values()) < 24 + 3 * 3  # at most the killed shards twice
        assert rep["totals"]["downloaded"] == 24 and rep["rounds_run_now"] == [0]


def test_query_list_crop_sha256_and_opt_out_override(world, tmp_path):
    site = world["site"]
    face = (Path(site.root) / "img" / "face.png").read_bytes()
    good_sha = hashlib.sha256(face).hexdigest()
    names = tmp_path / "names.csv"
    names.write_text("identity_id,name\nann-1,Ann Example\nbob-2,Bob Example\n", encoding="utf-8")
    q = tmp_path / "queries.tsv"
    q.write_text(
        "name\timage_id\tface_id\turl\tbbox\tsha256\n"
        f"Ann Example\t1\t1\t{site.url('img/face.png')}\t20,10,120,60\t{good_sha}\n"
        f"Ann Example\t2\t2\t{site.url('img/face.png')}\t\t{'0' * 64}\n"
        f"Bob Example\t3\t1\t{site.url('img/good.jpg')}\t\t\n"
        f"Bob Example\t4\t2\t{site.url('optout.jpg')}\t\t\n"
        f"Somebody Else\t5\t1\t{site.url('img/good.png')}\t\t\n",
        encoding="utf-8",
    )
    out = tmp_path / "q"
    rep = run_download(
        DownloadConfig(
            out=str(out),
            queries=str(q),
            identities=str(names),
            crop_to_bbox=True,
            ignore_opt_out=True,
            allow_private_network=True,
            **FAST,
        )
    )
    index = {r["source_id"]: r for r in _index(out)}
    assert index["1"]["status"] == "success"
    assert (index["2"]["status"], index["2"]["reason"]) == ("failed", "sha256_mismatch")
    assert index["3"]["status"] == "success"
    assert index["4"]["status"] == "success"  # opt-out ignored, on request
    assert "5" not in index and rep["inputs"]["skipped_unknown_name"] == 1
    assert rep["settings"]["ignore_opt_out"] is True and "IGNORED" in (out / "report.md").read_text()
    with tarfile.open(out / index["1"]["shard"]) as tf:
        data = tf.extractfile(f"{index['1']['key']}.jpg").read()
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (128, 64)  # the 100x50 face box, shorter side scaled to 64
        r, g, b = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
        assert g > 150 and r < 80 and b < 80  # the box's green, not the white page around it


def test_query_sources_as_the_study_whole_photos_sex_and_url_lists(world, tmp_path):
    """FaceScrub-layout file + a folder of <Name>.txt URL lists, sex from their names, a query-name fix; whole photos
    by default, as the study."""
    site = world["site"]
    names = tmp_path / "names.csv"
    names.write_text("identity_id,name\nann-1,Ann Example\nbob-2,Bob Exämple\n", encoding="utf-8")
    q = tmp_path / "facescrub_actresses.txt"
    q.write_text(
        f"name\timage_id\tface_id\turl\tbbox\tsha256\nAnn M. Exampel\t1\t1\t{site.url('img/face.png')}\t20,10,120,60\t\n",
        encoding="utf-8",
    )
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("query_name,name\nAnn M. Exampel,Ann Example\n", encoding="utf-8")
    lists = tmp_path / "celebs" / "actors"
    lists.mkdir(parents=True)
    (lists / "Bob_Exämple.txt").write_text(f"{site.url('img/good.jpg')}\n\n{site.url('img/good.png')}\n")
    out = tmp_path / "q"
    rep = run_download(
        DownloadConfig(
            out=str(out),
            queries=[str(q), str(tmp_path / "celebs")],
            query_aliases=str(fixes),
            identities=str(names),
            allow_private_network=True,
            **FAST,
        )
    )
    rows = {(r["identity_id"], r["source_id"]): r for r in _index(out)}
    assert set(rows) == {("ann-1", "1"), ("bob-2", "L0000"), ("bob-2", "L0001")}
    assert all(r["status"] == "success" for r in rows.values())
    assert rep["inputs"]["rows_read"] == 3 and rep["inputs"]["blank_lines"] == 1
    assert rep["inputs"]["sex_from_sources"] == {"ann-1": "f", "bob-2": "m"}
    people = pq.read_table(out / "identities.parquet").to_pylist()
    assert {p["identity_id"]: p["sex"] for p in people} == {"ann-1": "f", "bob-2": "m"}
    row = rows[("ann-1", "1")]
    with tarfile.open(out / row["shard"]) as tf:
        data = tf.extractfile(f"{row['key']}.jpg").read()
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (128, 64)  # the whole 200x100 page, shorter side scaled to 64
        r, g, b = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
        assert r > 150 and b > 150  # mostly the white page: the green box was not cut out


def test_an_encode_quality_outside_its_format_range_is_a_config_error(tmp_path):
    """png's quality is zlib's level (0-9), jpg/webp's a quality (0-100): said before anything runs, not as
    img2dataset's traceback from inside a worker."""
    base = {"out": str(tmp_path / "o"), "queries": str(tmp_path / "q.txt")}
    with pytest.raises(ConfigError, match=r"encode_quality must be 0-9 for png \(compression level\), got 95"):
        DownloadConfig(**base, encode_format="png", encode_quality=95).validate()
    with pytest.raises(ConfigError, match=r"encode_quality must be 0-100 for jpg \(quality\), got 101"):
        DownloadConfig(**base, encode_format="jpg", encode_quality=101).validate()
    DownloadConfig(**base, encode_format="png", encode_quality=9).validate()
