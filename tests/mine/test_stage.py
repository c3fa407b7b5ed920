"""The mining job end to end on generated shards (local Spark): exact counts per mode, accounting, bad input, resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from idia.core.errors import ConfigError, InputFileError, UserError
from idia.mine.config import MineConfig
from idia.mine.normalize import normalize_text
from idia.mine.sample import SampleConfig, generate
from jobs.mine import run_mine
from schemas import COUNTS, IDENTITY_LIST, MANIFEST
from schemas.validate import SchemaError
from tests.support.processes import kill_group_when


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    # Small row groups: several work units per file, so per-file accounting sums over tasks.
    summary = generate(SampleConfig(out=str(out), shards=3, rows_per_shard=1500, names=30, seed=7, row_group_size=500))
    return out, summary


def cfg(sample_dir: Path, out: Path, buckets_: int = 4, **kw) -> MineConfig:
    return MineConfig(
        shards=[str(sample_dir / "shards" / "*.parquet")],
        names=str(sample_dir / "names.csv"),
        out=str(out),
        buckets=buckets_,
        **kw,
    )


def check_outputs(out: Path, summary: dict, mode: str) -> dict:
    expected = summary["expected"][mode]
    counts = pq.read_table(out / "counts.parquet")
    assert counts.schema.remove_metadata() == COUNTS
    got = {r["identity_id"]: [r["n_captions"], r["n_unique_urls"]] for r in counts.to_pylist()}
    assert got == expected
    assert set(counts.column("match_mode").to_pylist()) == {mode}
    stats = json.loads((out / "stats.json").read_text())
    for fname, f in summary["files"].items():
        s = next(v for k, v in stats["files"].items() if k.endswith(fname))
        assert s["rows_read"] == f["rows"] and s["null_or_empty"] == f["null_or_empty"]
        assert s["rows_read"] == s["null_or_empty"] + s["unmatched"] + s["matched"]
    total_pairs = sum(v[0] for v in expected.values())
    assert stats["totals"]["match_pairs"] == total_pairs == stats["totals"]["manifest_rows"]
    assert stats["totals"]["identities_with_match"] == sum(v[0] > 0 for v in expected.values())
    # Manifests: bucketed, each bucket sorted by identity_id, one row per (caption, identity).
    rows = 0
    for part in sorted((out / "manifests").glob("bucket=*/*.parquet")):
        t = pq.read_table(part)
        assert t.schema.remove_metadata() == MANIFEST
        ids = t.column("identity_id").to_pylist()
        assert ids == sorted(ids)
        rows += t.num_rows
    assert rows == total_pairs
    # Every manifest row carries its caption row's own columns (the scan maps them after taking the matched rows,
    # NSFW read as a dictionary): the same values as the input row with that SAMPLE_ID.
    manifest = pq.read_table(out / "manifests")
    keep = ["SAMPLE_ID", "URL", "TEXT", "WIDTH", "HEIGHT", "NSFW", "similarity"]
    for src in set(manifest.column("source_file").to_pylist()):
        rows_of = {r["SAMPLE_ID"]: r for r in pq.read_table(src, columns=keep).to_pylist()}
        mine = manifest.filter(pc.equal(manifest.column("source_file"), src)).select(keep).to_pylist()
        assert mine and all(r == rows_of[r["SAMPLE_ID"]] for r in mine)
    lists = pq.read_table(out / "identity_lists" / "occurrences.parquet")
    assert lists.schema.remove_metadata() == IDENTITY_LIST
    return stats


def test_normalized_counts_exact(spark_local, sample, tmp_path):
    sample_dir, summary = sample
    stats = run_mine(cfg(sample_dir, tmp_path / "out", task_rows=500), spark=spark_local)
    assert stats["work_units"] == 9  # 3 files x 3 row groups of 500 rows, one task each
    # The automaton is built at most once per Python worker (2 in local[2]), not once per task.
    assert stats["totals"]["matcher_builds"] <= 2
    check_outputs(tmp_path / "out", summary, "normalized")
    # Every manifest row really contains its matched alias as whole tokens; multi-person captions are marked.
    from idia.mine.lists import read_manifest

    m = read_manifest(tmp_path / "out", "adrianne-leon")
    assert m.num_rows == summary["expected"]["normalized"]["adrianne-leon"][0] > 0
    for r in m.to_pylist():
        assert f" {normalize_text(r['matched_alias'])} " in f" {normalize_text(r['TEXT'])} "
    # The accent-stripped and upper-case spellings are found only in this mode.
    assert summary["expected"]["normalized"]["adrianne-leon"][0] > summary["expected"]["paper"]["adrianne-leon"][0]
    all_rows = pa.concat_tables(pq.read_table(p) for p in (tmp_path / "out" / "manifests").glob("*/*.parquet"))
    assert max(all_rows.column("n_identities_in_caption").to_pylist()) >= 2
    lists = pq.read_table(tmp_path / "out" / "identity_lists" / "occurrences.parquet").to_pylist()
    assert {r["membership"] for r in lists} == {"member", "non_member"}
    assert all(r["membership"] == ("member" if r["count"] >= 1 else "non_member") for r in lists)


def test_paper_counts_exact_with_the_other_modes_beside_them(spark_local, sample, tmp_path):
    sample_dir, summary = sample
    run_mine(cfg(sample_dir, tmp_path / "out", match="paper", also_count=["normalized", "literal"]), spark=spark_local)
    stats = check_outputs(tmp_path / "out", summary, "paper")
    from idia.mine.lists import read_manifest

    texts = read_manifest(tmp_path / "out", "chris-evans").column("TEXT").to_pylist()
    assert any("Chris Evansville" in t for t in texts)  # the study's substring semantics count it
    kerner = read_manifest(tmp_path / "out", "johannes-b-kerner").column("TEXT").to_pylist()
    assert any("Johannes Bx Kerner" in t for t in kerner)  # ... and its regex reading of "B."
    # Every mode's counts, exactly the oracle's, in one run; the paper and literal readings do differ.
    by_mode = pq.read_table(tmp_path / "out" / "counts_by_mode.parquet").to_pylist()
    for mode in ("paper", "normalized", "literal"):
        got = {r["identity_id"]: r["n_captions"] for r in by_mode if r["match_mode"] == mode}
        assert got == {k: v[0] for k, v in summary["expected"][mode].items()}, mode
        assert all(r["is_main"] == (mode == "paper") for r in by_mode if r["match_mode"] == mode)
    assert summary["expected"]["paper"]["johannes-b-kerner"][0] > summary["expected"]["literal"]["johannes-b-kerner"][0]
    assert stats["identities_with_match_by_mode"]["normalized"] >= stats["identities_with_match_by_mode"]["literal"]


def test_paper_mode_stops_on_a_name_that_is_not_a_regex(sample, tmp_path):
    sample_dir, _ = sample
    names = tmp_path / "names.csv"
    names.write_text("identity_id,name\nok,Chris Evans\nbad,Bobby (Robert\n")
    c = cfg(sample_dir, tmp_path / "out", match="paper")
    c.names = str(names)
    with pytest.raises(
        UserError, match=re.escape("line 3, identity 'bad': name 'Bobby (Robert' is not a valid regular")
    ):
        run_mine(c, spark=None)
    assert not (tmp_path / "out").exists()  # stopped before anything was written


def test_rerun_skips_and_force_is_byte_identical(spark_local, sample, tmp_path):
    sample_dir, _ = sample
    out = tmp_path / "out"
    run_mine(cfg(sample_dir, out), spark=spark_local)
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}
    assert run_mine(cfg(sample_dir, out), spark=spark_local).get("resumed") is True
    run_mine(cfg(sample_dir, out, force=True), spark=spark_local)
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}
    assert first == second
    assert not list(out.glob(".manifests*")) and not list(out.glob(".mine-staging-*"))  # no staging left behind
    # Another setting on the same folder: an error naming it (execution-only options such as task_rows are free).
    with pytest.raises(ConfigError, match=r"holds mine results made with other settings \(buckets: 4 -> 8\)"):
        run_mine(cfg(sample_dir, out, buckets_=8), spark=spark_local)
    assert run_mine(cfg(sample_dir, out, task_rows=700), spark=spark_local).get("resumed") is True


def test_bad_files_error_or_skip(spark_local, sample, tmp_path):
    sample_dir, summary = sample
    shards = tmp_path / "shards"
    shutil.copytree(sample_dir / "shards", shards)
    good = (shards / "part-00000.parquet").read_bytes()
    (shards / "part-00097.parquet").write_bytes(good[: len(good) // 2])  # truncated: footer gone
    # Footer intact, data pages garbled: only the executor can notice.
    garbled = bytearray(good)
    for i in range(200, len(good) // 2, 97):
        garbled[i] ^= 0xFF
    (shards / "part-00098.parquet").write_bytes(bytes(garbled))
    c = MineConfig(
        shards=[str(shards / "*.parquet")], names=str(sample_dir / "names.csv"), out=str(tmp_path / "o"), buckets=4
    )
    with pytest.raises(InputFileError, match=r"part-00097\.parquet: not a readable parquet file"):
        run_mine(c, spark=spark_local)
    (shards / "part-00097.parquet").unlink()
    with pytest.raises(InputFileError, match=r"part-00098\.parquet: cannot read: row group"):
        run_mine(c, spark=spark_local)
    (shards / "part-00097.parquet").write_bytes(good[: len(good) // 2])
    c.skip_bad_files = True
    with pytest.raises(ConfigError, match=r"\(input_files: "):  # the inputs changed since the last run's scan
        run_mine(c, spark=spark_local)
    c.force = True
    stats = run_mine(c, spark=spark_local)
    skipped = sorted(Path(b["file"]).name for b in stats["skipped_files"])
    assert skipped == ["part-00097.parquet", "part-00098.parquet"]
    assert stats["totals"]["files_in"] == 5 and stats["totals"]["files_read"] == 3
    check_outputs(tmp_path / "o", summary, "normalized")  # the skipped files contribute nothing


def test_schema_errors_name_file_and_column(sample, tmp_path):
    sample_dir, _ = sample
    t = pq.read_table(sample_dir / "shards" / "part-00000.parquet")
    pq.write_table(t.drop(["TEXT"]), tmp_path / "no_text.parquet")
    with pytest.raises(SchemaError, match=r"no_text\.parquet: missing column 'TEXT'"):
        run_mine(
            MineConfig(
                shards=[str(tmp_path / "no_text.parquet")], names=str(sample_dir / "names.csv"), out=str(tmp_path / "o")
            )
        )
    bad = t.set_column(t.schema.get_field_index("TEXT"), "TEXT", pa.array(range(t.num_rows)))
    pq.write_table(bad, tmp_path / "int_text.parquet")
    with pytest.raises(SchemaError, match=r"int_text\.parquet: column 'TEXT' has type int64, expected string"):
        run_mine(
            MineConfig(
                shards=[str(tmp_path / "int_text.parquet")],
                names=str(sample_dir / "names.csv"),
                out=str(tmp_path / "o"),
            )
        )
    with pytest.raises(UserError, match="no input files match"):
        run_mine(
            MineConfig(
                shards=[str(tmp_path / "nothing-*.parquet")],
                names=str(sample_dir / "names.csv"),
                out=str(tmp_path / "o"),
            )
        )


def test_cli_prints_one_line_error(sample, tmp_path):
    sample_dir, _ = sample
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "mine",
            "--shards",
            str(tmp_path / "none*.parquet"),
            "--names",
            str(sample_dir / "names.csv"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"idia mine: error: {tmp_path / 'none*.parquet'}: no input files match this pattern"
    ]


def test_lowercase_layout_and_fuzzy(spark_local, sample, tmp_path):
    sample_dir, summary = sample
    (tmp_path / "lc").mkdir()
    for p in sorted((sample_dir / "shards").glob("*.parquet")):
        t = pq.read_table(p)
        pq.write_table(
            pa.table({"url": t["URL"], "caption": t["TEXT"], "extra": t["similarity"]}), tmp_path / "lc" / p.name
        )
    c = MineConfig(
        shards=[str(tmp_path / "lc")],
        names=str(sample_dir / "names.csv"),
        out=str(tmp_path / "o"),
        columns="lowercase",
        buckets=2,
    )
    run_mine(c, spark=spark_local)
    counts = {
        r["identity_id"]: [r["n_captions"], r["n_unique_urls"]]
        for r in pq.read_table(tmp_path / "o" / "counts.parquet").to_pylist()
    }
    assert counts == summary["expected"]["normalized"]
    # fuzzy finds at least what normalized finds (exact windows score 100), with scores kept.
    c2 = cfg(sample_dir, tmp_path / "fz", match="fuzzy", fuzzy_threshold=92)
    run_mine(c2, spark=spark_local)
    fz = {r["identity_id"]: r["n_captions"] for r in pq.read_table(tmp_path / "fz" / "counts.parquet").to_pylist()}
    assert all(fz[k] >= v[0] for k, v in summary["expected"]["normalized"].items())
    scores = pa.concat_tables(pq.read_table(p) for p in (tmp_path / "fz" / "manifests").glob("*/*.parquet")).column(
        "match_score"
    )
    assert min(scores.to_pylist()) >= 92


def test_units_group_whole_row_groups_of_one_file():
    from idia.mine.plan import InputFile, ScanUnit, plan_units, task_rows_for

    good = [InputFile("a", 0, 1, 1, (500, 500, 300)), InputFile("b", 2, 1, 1, (700,))]

    def units(rows):
        return [(u.file_index, u.rg0, u.rg1, u.first_row, u.n_rows) for u in plan_units(good, rows)]

    assert units(1000) == [(0, 0, 1, 0, 1000), (0, 2, 2, 1000, 300), (2, 0, 0, 0, 700)]
    assert units(1) == [(0, 0, 0, 0, 500), (0, 1, 1, 500, 500), (0, 2, 2, 1000, 300), (2, 0, 0, 0, 700)]
    assert units(10**9) == [(0, 0, 2, 0, 1300), (2, 0, 0, 0, 700)]  # never across files
    assert ScanUnit(3, 1, 2, 0, 9).name == "u000003-rg000001-000002"
    # auto: two tasks per core, capped; an explicit size wins.
    assert task_rows_for(good, cores=2, task_rows=0) == 500
    assert task_rows_for([InputFile("c", 0, 1, 1, (10**10,))], cores=2, task_rows=0) == 1_000_000
    assert task_rows_for(good, cores=2, task_rows=123) == 123


def test_killed_run_resumes_finished_units(spark_local, tmp_path):
    """Kill a run mid-scan (by PID, its whole process group), rerun: finished units are reused, results exact."""
    summary = generate(
        SampleConfig(out=str(tmp_path / "s"), shards=6, rows_per_shard=5000, names=30, seed=5, row_group_size=500)
    )
    out = tmp_path / "out"
    args = [
        "--shards",
        str(tmp_path / "s" / "shards"),
        "--names",
        str(tmp_path / "s" / "names.csv"),
        "--out",
        str(out),
        "--buckets",
        "4",
        "--task-rows",
        "500",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "mine", *args, "--master", "local[1]"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    kill_group_when(proc, lambda: len(list(out.glob(".mine-staging-*/units/*.json"))) >= 3, 120, poll=0.02)
    time.sleep(1.0)  # a Python worker forked by Spark's daemon may finish the unit it had before it notices
    done = len(list(out.glob(".mine-staging-*/units/*.json")))
    assert 3 <= done < 60 and not (out / "stats.json").exists()
    # a disk fault on top: one finished unit's staged file cut short (its marker says how long it was): redone
    staged = sorted(p for p in out.glob(".mine-staging-*/units/*.arrow") if p.with_suffix(".json").exists())
    staged[0].write_bytes(staged[0].read_bytes()[: staged[0].stat().st_size // 2])
    stats = run_mine(
        MineConfig(
            shards=[str(tmp_path / "s" / "shards")],
            names=str(tmp_path / "s" / "names.csv"),
            out=str(out),
            buckets=4,
            task_rows=500,
        ),
        spark=spark_local,
    )
    assert stats["work_units"] == 60 and stats["totals"]["units_resumed"] == done - 1  # the cut one was redone
    counts = {
        r["identity_id"]: [r["n_captions"], r["n_unique_urls"]]
        for r in pq.read_table(out / "counts.parquet").to_pylist()
    }
    assert counts == summary["expected"]["normalized"]
    assert stats["totals"]["rows_read"] == 30_000 and not list(out.glob(".mine-staging-*"))


def test_merge_sorts_each_bucket_and_counts_unique_non_null_urls(tmp_path):
    """Merge tasks on hand-made staged units: rows sorted (identity_id, file, row); repeated and null URLs counted right."""
    import numpy as np

    from idia.mine.merge import MergeContext, MergeTask, merge_task, staged_parts
    from idia.mine.scan import STAGED, StagedWriter

    ids = ["zed", "amy", "bob"]  # identity_id order: amy, bob, zed

    def unit(name, file_index, rows):  # rows: (row_number, identity_index, bucket, URL)
        rows = sorted(rows, key=lambda r: (r[2], r[0]))  # bucket runs, row order inside each: what scan tasks stage
        n = len(rows)
        cols = {
            "file_index": pa.array([file_index] * n, pa.int32()),
            "row_number": pa.array([r[0] for r in rows], pa.int64()),
            "identity_index": pa.array([r[1] for r in rows], pa.int32()),
            "bucket": pa.array([r[2] for r in rows], pa.int32()),
            "SAMPLE_ID": pa.array([r[0] for r in rows], pa.int64()),
            "URL": pa.array([r[3] for r in rows], pa.string()),
            "TEXT": pa.array(["t"] * n),
            "WIDTH": pa.array([1] * n, pa.int32()),
            "HEIGHT": pa.array([1] * n, pa.int32()),
            "NSFW": pa.array(["UNLIKELY"] * n),
            "similarity": pa.array([0.3] * n),
            "matched_alias": pa.array(["x"] * n),
            "match_score": pa.array([100.0] * n),
            "n_identities_in_caption": pa.array([1] * n, pa.int32()),
        }
        w = StagedWriter(tmp_path / f"{name}.arrow")
        w.add(pa.RecordBatch.from_arrays([cols[f.name] for f in STAGED], schema=STAGED))
        return {"path": w.close(), "bucket_batches": json.dumps(w.batches)}

    parts = [
        unit("u0", 0, [(5, 0, 1, "u1"), (2, 0, 1, "u1"), (7, 1, 0, None), (3, 2, 1, "u2")]),
        unit("u1", 1, [(0, 0, 1, "u3"), (1, 1, 0, "u4"), (4, 2, 1, "u2"), (9, 1, 0, "u4")]),
    ]
    (tmp_path / "manifests").mkdir()
    rank = np.argsort(np.argsort(ids)).tolist()
    ctx = MergeContext(
        parts=staged_parts(parts),
        buckets=2,
        identity_ids=tuple(ids),
        identity_rank=tuple(rank),
        files=("f0", "f1"),
        staging=str(tmp_path),
    )
    out = {r["bucket"]: r for r in merge_task(ctx, MergeTask(0, 1))}
    assert sorted(out) == [0, 1] and out[0]["n_captions"] == 3 and out[1]["n_captions"] == 5
    counts = {}
    for r in out.values():
        for c in pa.ipc.open_stream(r["counts"]).read_all().to_pylist():
            counts[ids[c["identity_index"]]] = (c["n_captions"], c["n_unique_urls"])
    assert counts == {"zed": (3, 2), "amy": (3, 1), "bob": (2, 1)}  # amy: one null URL, one URL twice
    m1 = pq.read_table(out[1]["path"]).to_pylist()
    assert [(r["identity_id"], r["source_file"], r["SAMPLE_ID"]) for r in m1] == [
        ("bob", "f0", 3),
        ("bob", "f1", 4),
        ("zed", "f0", 2),
        ("zed", "f0", 5),
        ("zed", "f1", 0),
    ]
    assert pq.read_table(out[0]["path"]).schema.equals(MANIFEST)


def test_the_stage_runs_without_an_engine(sample, tmp_path):
    """The mining logic is plain functions: the same stage on the in-process executor gives the oracle's counts."""
    from contextlib import nullcontext

    from idia.core.tasks import SerialExecutor
    from idia.mine.stage import run_mine as run_stage

    sample_dir, summary = sample
    stats = run_stage(cfg(sample_dir, tmp_path / "out", task_rows=500), lambda: nullcontext(SerialExecutor()))
    assert stats["engine"] == "serial" and stats["work_units"] == 9
    check_outputs(tmp_path / "out", summary, "normalized")


def test_a_spark_python_worker_killed_mid_scan_fails_cleanly_and_the_rerun_is_exact(spark_local, tmp_path):
    """kill -9 of one of Spark's Python workers mid-scan: in local mode Spark does not retry the task, so the run
    stops with one line saying so (no traceback); the same command then resumes and the counts are exact."""
    import time

    import psutil

    summary = generate(
        SampleConfig(out=str(tmp_path / "s"), shards=6, rows_per_shard=5000, names=30, seed=6, row_group_size=500)
    )
    out = tmp_path / "out"
    args = ["--shards", str(tmp_path / "s" / "shards"), "--names", str(tmp_path / "s" / "names.csv")]
    args += ["--out", str(out), "--buckets", "4", "--task-rows", "500"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "mine", *args, "--master", "local[1]"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    killed = None
    deadline = time.time() + 120
    while killed is None and proc.poll() is None and time.time() < deadline:
        if len(list(out.glob(".mine-staging-*/units/*.json"))) >= 2:

            def cmdline(p: psutil.Process) -> str:
                try:
                    return " ".join(p.cmdline())
                except psutil.Error:  # exited (or a zombie) since the listing
                    return ""

            tree = psutil.Process(proc.pid).children(recursive=True)
            daemons = [p for p in tree if "pyspark.daemon" in cmdline(p) or "jobs.spark_daemon" in cmdline(p)]
            pids = {d.pid for d in daemons}
            workers = [p for p in daemons if p.ppid() in pids]
            if workers:
                killed = workers[0].pid
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    err = proc.communicate(timeout=180)[1]
    assert killed is not None, "no Python worker found to kill"
    # The killed worker was running a task (the job stops with one line) or idle between tasks (the run finishes);
    # either way no traceback, and the outputs below are exact.
    assert proc.returncode in (0, 2) and "Traceback" not in err, err[-3000:]
    if proc.returncode == 2:
        assert "spark: mine: scan failed after Spark's retries" in err and "rerun the same command to resume" in err
    stats = run_mine(
        MineConfig(
            shards=[str(tmp_path / "s" / "shards")],
            names=str(tmp_path / "s" / "names.csv"),
            out=str(out),
            buckets=4,
            task_rows=500,
        ),
        spark=spark_local,
    )
    assert stats["totals"]["units_resumed"] >= 2 or stats.get("resumed") is True
    counts = {
        r["identity_id"]: [r["n_captions"], r["n_unique_urls"]]
        for r in pq.read_table(out / "counts.parquet").to_pylist()
    }
    assert counts == summary["expected"]["normalized"]


def test_driver_killed_mid_merge_reruns_to_the_same_outputs(spark_local, tmp_path):
    """kill -9 of the whole mining run (driver, JVM, workers) once the merge has written its first bucket: the rerun
    finishes from the staged units and gives the same outputs as an undisturbed run."""
    from tests.support.s3_server import run_data

    generate(SampleConfig(out=str(tmp_path / "s"), shards=4, rows_per_shard=5000, names=30, seed=8, row_group_size=500))
    base = ["--shards", str(tmp_path / "s" / "shards"), "--names", str(tmp_path / "s" / "names.csv")]
    base += ["--buckets", "16", "--task-rows", "1000"]

    def cfg(out):
        return MineConfig(
            shards=[str(tmp_path / "s" / "shards")],
            names=str(tmp_path / "s" / "names.csv"),
            out=str(out),
            buckets=16,
            task_rows=1000,
        )

    run_mine(cfg(tmp_path / "undisturbed"), spark=spark_local)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "mine", *base, "--out", str(out), "--master", "local[1]"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    kill_group_when(proc, lambda: any(out.glob(".mine-staging-*/manifests/bucket=*/*.parquet")), 120, poll=0.01)
    assert not (out / "stats.json").exists()  # killed before the merge finished
    stats = run_mine(cfg(out), spark=spark_local)
    assert stats["totals"]["units_resumed"] == stats["work_units"]  # the scan was not redone

    import fsspec

    fs = fsspec.filesystem("file")
    assert run_data(fs, str(out)) == run_data(fs, str(tmp_path / "undisturbed"))
