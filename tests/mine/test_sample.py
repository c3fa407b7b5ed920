"""sample-laion: exact LAION-400M schema, deterministic by seed, every hard case present, oracle agrees with the matcher."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from idia.mine.match import Matcher
from idia.mine.names import read_names
from idia.mine.sample import GUARANTEED, SampleConfig, generate
from schemas import LAION_400M


def test_schema_determinism_and_hard_cases(tmp_path):
    a = generate(SampleConfig(out=str(tmp_path / "a"), shards=2, rows_per_shard=800, names=20, seed=5))
    generate(SampleConfig(out=str(tmp_path / "b"), shards=2, rows_per_shard=800, names=20, seed=5))
    c = generate(SampleConfig(out=str(tmp_path / "c"), shards=2, rows_per_shard=800, names=20, seed=6))
    assert c["identities"] == a["identities"]  # another seed: same identity count, other captions
    for f in ("names.csv", "shards/part-00000.parquet", "shards/part-00001.parquet", "expected_counts.csv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "shards/part-00001.parquet").read_bytes() != (
        tmp_path / "c" / "shards/part-00001.parquet"
    ).read_bytes()
    t = pq.read_table(tmp_path / "a" / "shards" / "part-00000.parquet")
    assert t.schema.remove_metadata() == LAION_400M
    texts = t.column("TEXT").to_pylist()
    assert texts[: len(GUARANTEED)] == GUARANTEED
    assert None in texts and any(x is not None and not x.strip() for x in texts)
    assert max(len(x or "") for x in texts) > 10_000
    assert len(set(t.column("URL").to_pylist())) < t.num_rows  # repeated URLs
    assert len(set(t.column("SAMPLE_ID").to_pylist())) == t.num_rows
    exp = a["expected"]
    assert exp["normalized"]["never-mentioned"] == [0, 0]
    # Planted differences between the modes.
    assert exp["normalized"]["bernhard-hoecker"][0] > exp["paper"]["bernhard-hoecker"][0]
    assert json.loads((tmp_path / "a" / "expected.json").read_text())["expected"] == exp


def test_oracle_agrees_with_matcher_without_spark(tmp_path):
    s = generate(SampleConfig(out=str(tmp_path), shards=2, rows_per_shard=1000, names=30, seed=9))
    ids = read_names(tmp_path / "names.csv")
    id_list = ids.column("identity_id").to_pylist()
    texts = pa.concat_arrays(
        [pq.read_table(p).column("TEXT").combine_chunks() for p in sorted((tmp_path / "shards").glob("*.parquet"))]
    )
    for mode in ("normalized", "paper"):
        m = Matcher(ids, mode).match(texts)
        got = {i: 0 for i in id_list}
        for idx in m.column("identity_index").to_pylist():
            got[id_list[idx]] += 1
        assert got == {k: v[0] for k, v in s["expected"][mode].items()}, mode


def test_cli(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "sample-laion",
            "--out",
            str(tmp_path),
            "--shards",
            "1",
            "--rows-per-shard",
            "300",
            "--names",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "1 shards, 300 captions, 16 identities" in r.stdout
    assert (tmp_path / "shards" / "part-00000.parquet").exists()
