"""The mining stage, engine-free: names -> inputs -> scan units -> merge -> counts, manifests, identity lists, stats.

Two task stages and no shuffle. Scan: one task per work unit (consecutive row groups of one file) matches captions
and stages its match rows beside the output; only a small stats row per unit goes back to the driver. Merge: one
task per core, each a set of manifest buckets. Match rows never pass through the engine: on small machines
converting them to Spark rows and shuffling them cost more than the matching (BENCHMARKS.md), and staged units make
a killed run resumable per unit. The engine (jobs/mine.py: Spark) only maps the task functions.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import idia
from idia.core import storage
from idia.core.atomic import write_json, write_parquet
from idia.core.config import to_dict
from idia.core.errors import InputFileError
from idia.core.provenance import provenance
from idia.core.resume import StageFolder
from idia.core.stats import AccountingError, Stats, check_sum
from idia.core.tasks import TaskExecutor
from idia.mine.config import MineConfig
from idia.mine.lists import bin_table, build_identity_list, write_identity_lists
from idia.mine.match import check_patterns
from idia.mine.merge import MERGED, MergeContext, MergeTask, merge_task, read_counts, staged_parts
from idia.mine.names import parse_names
from idia.mine.plan import inspect_footers, plan_units, resolve_inputs, task_rows_for
from idia.mine.scan import COUNTERS, NO_SPACE, UNIT_STATS, ScanContext, prepare_matchers, scan_unit
from schemas import COLUMN_MAPPINGS, COUNTS, MODE_COUNTS, files
from schemas.validate import conform


def _checked(rows: list[dict], schema: pa.Schema, what: str) -> list[dict]:
    return conform(pa.Table.from_pylist(rows, schema=schema), schema, what).to_pylist()


def mine_folder(cfg: MineConfig, input_files: list[dict], names_sha: str) -> StageFolder:
    """The output folder under the resume policy: pinned to the settings, the names file and every input's identity."""
    settings = {**cfg.settings(), "names_sha256": names_sha, "input_files": input_files}
    return StageFolder(cfg.out, "mine", settings, cfg.force, type(cfg))


def mode_counts(
    identities: pa.Table, main: str, n_cap: np.ndarray, also: list[str], stats_rows: list[dict]
) -> pa.Table:
    """schemas.MODE_COUNTS: the main mode's counts, then each --also-count mode's, summed over the scan units."""
    n = identities.num_rows
    per_mode = {main: n_cap}
    for mode in also:
        acc = np.zeros(n, np.int64)
        for r in stats_rows:
            for i, v in json.loads(r["also_counts"] or "{}").get(mode, {}).items():
                acc[int(i)] += v
        per_mode[mode] = acc
    modes = list(per_mode)
    return pa.Table.from_arrays(
        [
            pa.concat_arrays([identities.column("identity_id").combine_chunks()] * len(modes)),
            pa.concat_arrays([identities.column("name").combine_chunks()] * len(modes)),
            pa.array([m for m in modes for _ in range(n)], pa.string()),
            pa.array(np.concatenate([per_mode[m] for m in modes])),
            pa.array([m == main for m in modes for _ in range(n)]),
        ],
        schema=MODE_COUNTS,
    )


def run_mine(cfg: MineConfig, executor: Callable[[], AbstractContextManager[TaskExecutor]]) -> dict:
    """Run (or resume) the mining stage; `executor()` gives the engine. Returns the stats also in OUT/stats.json."""
    t0 = time.time()
    cfg.validate()
    storage.configure(cfg.storage_options)
    out = storage.location(cfg.out)
    timings = {}
    identities, name_stats = parse_names(cfg.names)
    for mode in (cfg.match, *cfg.also_count):
        check_patterns(identities, mode)  # paper mode: every name must be a valid regex, before anything starts
    timings["names_s"] = round(time.time() - t0, 3)
    paths = resolve_inputs(cfg.shards)
    names_sha = hashlib.sha256(Path(cfg.names).read_bytes()).hexdigest()

    mapping = COLUMN_MAPPINGS[cfg.columns]
    t_stage = time.time()
    good, bad = inspect_footers(paths, mapping, cfg.skip_bad_files)
    timings["footers_s"] = round(time.time() - t_stage, 3)
    folder = mine_folder(
        cfg,
        [{"file": g.url, "size": g.size, "footer_bytes": g.footer_bytes} for g in good]
        + [{"file": b["file"], "unreadable": True} for b in bad],
        names_sha,
    )
    folder.check()
    if folder.done() and (out / files.STATS_JSON).exists():
        stats = json.loads((out / files.STATS_JSON).read_text())
        stats["resumed"] = True
        folder.release()
        return stats

    # Staged work lives in a folder named after the settings fingerprint: a killed run's finished units are reused by
    # the next run with the same settings; anything older is cleared.
    staging = out / f"{files.MINE_STAGING_PREFIX}{folder.fingerprint}"
    for leftover in [*out.glob(f"{files.MINE_STAGING_PREFIX}*"), *out.glob(".manifests.*")] if out.exists() else []:
        if str(leftover).rstrip("/") != str(staging).rstrip("/") or cfg.force:
            storage.rmtree(leftover)

    # The name tables are prepared here, once, and shipped; each worker builds only the automata. With an early-started
    # engine (jobs/mine.py) this runs while the driver JVM starts.
    t_stage = time.time()
    matchers = prepare_matchers(identities, cfg.match, cfg.fuzzy_threshold, cfg.buckets, tuple(cfg.also_count))
    timings["matchers_s"] = round(time.time() - t_stage, 3)
    matcher_key = hashlib.sha256(
        f"{names_sha}|{cfg.match}|{cfg.fuzzy_threshold}|{cfg.buckets}|{cfg.also_count}".encode()
    ).hexdigest()
    t_engine = time.time()
    with executor() as ex:
        timings["engine_s"] = round(time.time() - t_engine, 3)
        task_rows = task_rows_for(good, ex.parallelism, cfg.task_rows)
        units = plan_units(good, task_rows)
        scan_ctx = ScanContext(
            matchers=matchers,
            matcher_key=matcher_key,
            columns=cfg.columns,
            batch_size=cfg.batch_size,
            files=tuple(paths),
            staging=storage.absolute(staging),
            fingerprint=folder.fingerprint,
            fsspec_conf=storage.shipped_conf(),
        )
        storage.makedirs(staging)
        folder.pin()  # from here on the folder holds this run's work
        t_stage = time.time()
        stats_rows = _checked(ex.map(scan_unit, scan_ctx, units, "mine: scan"), UNIT_STATS, "scan results")
        timings["scan_s"] = round(time.time() - t_stage, 3)
        # Start-up as a user sees it: from this process importing idia to the first scan task at work.
        started = [r["started"] for r in stats_rows if not r["units_resumed"]]
        if started:
            timings["first_task_s"] = round(min(started) - idia.IMPORTED_AT, 3)
        # Per-unit errors (a corrupt page in a file whose footer was fine): name the file, or skip the file whole.
        errors = sorted((r for r in stats_rows if r["error"]), key=lambda r: (r["file_index"], r["unit"]))
        full = next((r["error"] for r in errors if r["error"].startswith(NO_SPACE)), None)
        if full:
            raise OSError(errno.ENOSPC, full, str(staging))
        if errors and not cfg.skip_bad_files:
            raise InputFileError(
                f"{paths[errors[0]['file_index']]}: cannot read: {errors[0]['error']}; use --skip-bad-files to skip it"
            )
        bad_idx = {r["file_index"] for r in errors}
        for fi in sorted(bad_idx):
            bad.append({"file": paths[fi], "reason": next(r["error"] for r in errors if r["file_index"] == fi)})
        good = [g for g in good if g.index not in bad_idx]
        stats_rows = [r for r in stats_rows if r["file_index"] not in bad_idx]
        parts = staged_parts(stats_rows)
        storage.makedirs(staging / files.MANIFESTS_DIR)
        t_stage = time.time()
        n_merge = min(cfg.buckets, ex.parallelism) if parts else 0
        rank = np.empty(identities.num_rows, np.int64)  # each identity's place in identity_id order
        rank[pc.sort_indices(identities.column("identity_id")).to_numpy()] = np.arange(identities.num_rows)
        merge_ctx = MergeContext(
            parts=parts,
            buckets=cfg.buckets,
            identity_ids=tuple(identities.column("identity_id").to_pylist()),
            identity_rank=tuple(rank.tolist()),
            files=tuple(paths),
            staging=storage.absolute(staging),
            fsspec_conf=storage.shipped_conf(),
        )
        tasks = [MergeTask(i, n_merge) for i in range(n_merge)]
        merged = _checked(ex.map(merge_task, merge_ctx, tasks, "mine: merge"), MERGED, "merge results")
        timings["merge_s"] = round(time.time() - t_stage, 3)
        engine = ex.name
    bucket_rows = sorted(merged, key=lambda r: r["bucket"])

    # ---- accounting: every row of every good file is read once, and rows = null/empty + unmatched + matched
    per_file: dict[str, Stats] = {}
    for r in stats_rows:
        per_file.setdefault(paths[r["file_index"]], Stats()).update({k: int(r[k]) for k in COUNTERS})
    for info in good:
        d = per_file.setdefault(info.url, Stats())
        if d["rows_read"] != info.rows:
            raise AccountingError(f"{info.url}: read {d['rows_read']} rows, footer says {info.rows}")
        check_sum(d["rows_read"], {k: d[k] for k in ("null_or_empty", "unmatched", "matched")}, info.url)
    totals = Stats.merge(per_file.values())
    manifest_rows = sum(r["n_captions"] for r in bucket_rows)
    check_sum(totals["match_pairs"], {"manifest_rows": manifest_rows}, "match pairs vs manifest rows")

    # ---- counts, in names-file order
    n_cap, n_url = read_counts(bucket_rows, identities.num_rows)
    check_sum(totals["match_pairs"], {"sum_n_captions": int(n_cap.sum())}, "match pairs vs counts")
    counts = pa.Table.from_arrays(
        [
            identities.column("identity_id"),
            identities.column("name"),
            pa.array(n_cap),
            pa.array(n_url),
            pa.array([cfg.match] * identities.num_rows, pa.string()),
        ],
        schema=COUNTS,
    )

    by_mode = mode_counts(identities, cfg.match, n_cap, cfg.also_count, stats_rows)

    t_stage = time.time()
    # ---- outputs (manifests swapped in whole, the rest file by file; stats.json and the marker last)
    storage.makedirs(out)
    final = out / files.MANIFESTS_DIR
    if storage.remote(out):
        # No rename on an object store: the buckets are copied (server-side) into place; until the stage's
        # completion marker is written last, the folder is not a finished run (readers check it).
        storage.rmtree(final)
        storage.copytree(staging / files.MANIFESTS_DIR, final)
    else:
        old = out / f".manifests.old-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.replace(final, old)
        os.replace(staging / files.MANIFESTS_DIR, final)
        shutil.rmtree(old, ignore_errors=True)
    write_parquet(counts, out / files.COUNTS_PARQUET)
    write_parquet(by_mode, out / files.COUNTS_BY_MODE_PARQUET)
    write_parquet(identities.replace_schema_metadata(None), out / files.IDENTITIES_PARQUET)
    lists = build_identity_list(counts, cfg.member_min, cfg.member_max)
    sizes = write_identity_lists(lists, out / files.IDENTITY_LISTS_DIR)
    resolved = {**to_dict(cfg), "input_files": paths}
    write_json({**resolved, "provenance": provenance()}, out / files.CONFIG_JSON)
    n_with = int((n_cap > 0).sum())
    timings["outputs_s"] = round(time.time() - t_stage, 3)
    stats = {
        "files": {k: v.to_dict() for k, v in sorted(per_file.items())},
        "skipped_files": bad,
        "totals": {
            "files_in": len(paths),
            "files_read": len(per_file),
            "files_skipped": len(bad),
            **totals.to_dict(),
            "manifest_rows": manifest_rows,
            "identities": identities.num_rows,
            "identities_with_match": n_with,
            "identities_without_match": identities.num_rows - n_with,
        },
        "names_file": {"path": str(cfg.names), **name_stats.to_dict()},
        "identity_lists": sizes,
        "bins": bin_table(lists),
        "buckets_written": len(bucket_rows),
        "match_mode": cfg.match,
        "identities_with_match_by_mode": {
            m: int(pc.sum(pc.greater(by_mode.filter(pc.equal(by_mode["match_mode"], m))["n_captions"], 0)).as_py())
            for m in (cfg.match, *cfg.also_count)
        },
        "engine": engine,
        "work_units": len(units),
        "task_rows": task_rows,
        "stage_s": timings,
        "wall_s": round(time.time() - t0, 3),
        "config": resolved,
    }
    check_sum(len(paths), {"read": len(per_file), "skipped": len(bad)}, "input files")
    write_json(stats, out / files.STATS_JSON)
    folder.mark_done()
    storage.rmtree(staging)
    return stats
