"""The synthetic world: deterministic bytes, exact LAION-400M schema, fictional unique names, non-members absent from
captions, query photos distinct from training images, truth.csv consistent with the captions, resumable."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import schemas
from idia.core import census
from idia.core.errors import ConfigError
from idia.mine.names import read_names
from idia.world.generate import PRESETS, generate_world, read_truth
from idia.world.server import LoopbackServer

BASE = "http://127.0.0.1:9"
# Smaller than the reduced preset: the checks are about structure, not about learning.
CFG = dataclasses.replace(
    PRESETS["reduced"],
    n_main=5,
    main_images=6,
    sweep_images=[1, 3],
    n_per_sweep=2,
    n_non_members=6,
    n_distractors=6,
    distractor_images=3,
    n_scenes=30,
    n_dead_links=2,
    query_images=4,
    shard_rows=25,
    workers=1,
)


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    generate_world(CFG, out, BASE, progress=False)
    return out


def _captions(world: Path) -> list[dict]:
    rows = []
    for f in sorted((world / "laion").glob("part-*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def _identities(world: Path) -> list[dict]:
    with open(world / "identities.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _queries(world: Path) -> list[dict]:
    with open(world / "queries.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_same_seed_same_bytes_any_worker_count(world, tmp_path):
    again = tmp_path / "again"
    generate_world(dataclasses.replace(CFG, workers=2), again, BASE, progress=False)
    a, b = _digest_tree(world), _digest_tree(again)
    assert len(a) > 100 and a == b


def test_other_seed_other_world(world, tmp_path):
    other = tmp_path / "other"
    generate_world(dataclasses.replace(CFG, seed=1), other, BASE, progress=False)
    assert [r["name"] for r in _identities(world)] != [r["name"] for r in _identities(other)]


def test_caption_shards_have_the_exact_laion_400m_schema(world):
    shards = sorted((world / "laion").glob("part-*.parquet"))
    assert [s.name for s in shards] == [f"part-{i:05d}.parquet" for i in range(len(shards))]
    for s in shards:
        assert pq.read_schema(s).equals(schemas.LAION_400M, check_metadata=False), s
    rows = _captions(world)
    summary = (world / "world.json").read_text()
    assert f'"caption_rows": {len(rows)}' in summary
    ids = [r["SAMPLE_ID"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(r["URL"].startswith(BASE + "/images/train/") for r in rows)


def test_names_are_fictional_shaped_unique_and_parse_as_a_names_file(world):
    ids = _identities(world)
    firsts = set(census.first_names("m")) | set(census.first_names("f"))
    surnames = set(census.surnames())
    names = [r["name"] for r in ids]
    assert len(set(names)) == len(names) == len(read_names(world / "identities.csv"))
    for r in ids:
        first, last = r["name"].split(" ")
        assert first in firsts and last in surnames and r["sex"] in ("m", "f")
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", r["identity_id"])
    low = [n.lower() for n in names]
    assert not any(a in b for a in low for b in low if a != b), "a name inside another would confuse mining"


def test_non_members_never_appear_and_truth_matches_captions(world):
    texts = [r["TEXT"] for r in _captions(world)]
    truth = {t["identity_id"]: t for t in read_truth(world)}
    names = {r["identity_id"]: r["name"] for r in _identities(world)}
    assert set(truth) == set(names)
    for iid, name in names.items():
        # the study's rule (case-sensitive substring) and a stricter case-insensitive one agree
        n_exact = sum(name in t for t in texts)
        n_any_case = sum(name.lower() in t.lower() for t in texts)
        assert n_exact == n_any_case == truth[iid]["n_train_images"], name
        assert truth[iid]["is_member"] == (n_exact > 0)
        if truth[iid]["group"] == "non_member":
            assert n_exact == 0
    groups = {}
    for t in truth.values():
        groups.setdefault(t["group"], []).append(t["n_train_images"])
    assert groups["main"] == [CFG.main_images] * CFG.n_main
    assert groups["sweep_1"] == [1] * CFG.n_per_sweep and groups["sweep_3"] == [3] * CFG.n_per_sweep
    assert len(groups["non_member"]) == CFG.n_non_members
    # names never become paths
    for r in _captions(world) + _queries(world):
        url = r.get("URL") or r["url"]
        assert not any(part in url for n in names.values() for part in n.split(" ")), url


def test_query_images_are_separate_from_training_images(world):
    train = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (world / "images" / "train").rglob("*.jpg")}
    queries = _queries(world)
    assert len(queries) == CFG.query_images * len(_identities(world))
    for q in queries:
        data = (world / q["url"][len(BASE) + 1 :]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == q["sha256"]
        assert q["sha256"] not in train
        x1, y1, x2, y2 = (int(v) for v in q["bbox"].split(","))
        assert 0 <= x1 < x2 <= CFG.image_size and 0 <= y1 < y2 <= CFG.image_size
    assert len({q["sha256"] for q in queries}) == len(queries), "no two query images the same"


def test_dead_links_are_rows_without_files(world):
    rows = _captions(world)
    missing = [r for r in rows if not (world / r["URL"][len(BASE) + 1 :]).exists()]
    assert len(missing) == CFG.n_dead_links
    assert len(rows) - len(missing) == len(list((world / "images" / "train").rglob("*.jpg")))


def test_rerun_skips_resumes_and_refuses_other_settings(world, tmp_path):
    out = tmp_path / "w"
    generate_world(CFG, out, BASE, progress=False)
    before = _digest_tree(out)
    assert generate_world(CFG, out, BASE, progress=False)["skipped"] is True
    # A run killed mid-way: a shard's marker, table and one image gone, the stage marker gone.
    (out / "_done" / "images-00001.json").unlink()
    (out / "_done" / "stage.json").unlink()
    (out / "laion" / "part-00001.parquet").unlink()
    victim = next((out / "images" / "train").rglob("*.jpg"))
    victim.unlink()
    assert generate_world(CFG, out, BASE, progress=False)["skipped"] is False
    assert _digest_tree(out) == before
    # Another base URL on the same folder is refused, naming the setting; --force starts over with it.
    with pytest.raises(ConfigError, match=r"holds world results made with other settings \(base_url: "):
        generate_world(CFG, out, "http://127.0.0.1:4321", progress=False)
    with pytest.raises(ConfigError, match=r"seed: 0 -> 3"):
        generate_world(dataclasses.replace(CFG, seed=3), out, BASE, progress=False)
    assert generate_world(CFG, out, "http://127.0.0.1:4321", progress=False, force=True)["skipped"] is False
    assert all(r["URL"].startswith("http://127.0.0.1:4321/") for r in _captions(out))


def test_world_is_served_by_the_loopback_server(world):
    q = _queries(world)[0]
    with LoopbackServer(world) as srv:
        with urllib.request.urlopen(srv.url(q["url"][len(BASE) :])) as resp:
            assert hashlib.sha256(resp.read()).hexdigest() == q["sha256"]
