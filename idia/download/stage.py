"""The download stage, engine-free: the rows to fetch, rounds of shards, the index and the report.

Round 0 downloads every request; a --retry-failed round re-feeds the rows that failed so far into new shards. Each
round is planned once (its rows and input written before anything is fetched), then handed to the fetcher (jobs/
download.py: img2dataset); a round whose shards all finished is marked done. Every requested row ends in
index.parquet as success (shard, key) or failed with a reason; report.json/report.md add it up per identity.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from idia.core import storage
from idia.core.atomic import write_json, write_parquet, write_text
from idia.core.config import to_dict
from idia.core.errors import UserError
from idia.core.provenance import provenance
from idia.core.resume import STAGE_UNIT, StageFolder
from idia.core.stats import check_sum
from idia.download.config import DownloadConfig
from idia.download.index import build_index, merge_img2dataset_stats, render_markdown, round_states, summarize
from idia.download.requests import requests_from_manifests, sample_per_identity
from idia.download.url_guard import UrlGuard
from schemas import REQUESTS, files

#: X-Robots-Tag directives that make img2dataset skip an image (its own default list).
OPT_OUT_DIRECTIVES = ["noai", "noimageai", "noindex", "noimageindex"]
OOM_SHARD_COUNT = 5  # shard names 00000.tar ... 99999.tar

#: fetch(cfg, round_info, out, guard): download a round's unfinished shards into out/shards.
Fetcher = Callable[[DownloadConfig, dict, Path, UrlGuard], None]


def _identity_table(cfg: DownloadConfig) -> pa.Table | None:
    if cfg.identities:
        from idia.mine.names import read_names

        return read_names(cfg.identities)
    if cfg.manifests:
        p = storage.location(cfg.manifests) / files.IDENTITIES_PARQUET
        if p.is_file():
            return storage.read_parquet(p)
    return None


def with_sexes(identities: pa.Table, sexes: dict[str, str]) -> pa.Table:
    """The identities with each unknown sex taken from `sexes`; a sex the names list gives is kept."""
    given = identities.column("sex").to_pylist()
    ids = identities.column("identity_id").to_pylist()
    filled = [g if g else sexes.get(i) for g, i in zip(given, ids)]
    idx = identities.schema.get_field_index("sex")
    return identities.set_column(idx, identities.schema.field("sex"), pa.array(filled, pa.string()))


def build_requests(cfg: DownloadConfig) -> tuple[pa.Table, dict]:
    """The rows to download (schemas.REQUESTS), sampled per identity, and the input accounting."""
    if cfg.manifests:
        table, stats = requests_from_manifests(cfg.manifests, cfg.max_per_identity, cfg.seed)
        return table, {"mode": "manifests", **stats.to_dict()}
    from idia.download.queries import read_queries, read_query_aliases

    identities = _identity_table(cfg) if cfg.identities else None
    aliases = read_query_aliases(cfg.query_aliases) if cfg.query_aliases else None
    table, stats, unknown, sexes = read_queries(cfg.queries, identities, aliases)
    if cfg.max_per_identity is not None:
        df, dropped = sample_per_identity(table.to_pandas(), cfg.max_per_identity, cfg.seed)
        table = pa.Table.from_pandas(df, schema=REQUESTS, preserve_index=False)
        stats["not_sampled"] = dropped
        stats["requested"] = table.num_rows
    info = {
        "mode": "queries",
        **stats.to_dict(),
        "unknown_names": unknown[:50],
        "sources": list(cfg.queries),
        "sex_from_sources": dict(sorted(sexes.items())),
    }
    check_sum(
        stats["rows_read"], {k: stats[k] for k in ("requested", "skipped_unknown_name", "not_sampled")}, "query rows"
    )
    return table, info


def round_dir(out: Path, r: int) -> Path:
    return out / files.ROUNDS_DIR / f"{r:03d}"


def read_rounds(out: Path) -> list[dict]:
    infos = []
    for d in sorted((out / files.ROUNDS_DIR).glob("[0-9][0-9][0-9]")):
        f = d / "round.json"
        if f.is_file():
            infos.append(json.loads(f.read_text()))
    return infos


def shard_stats_path(shards: Path, shard_id: int) -> Path:
    return shards / f"{shard_id:0{OOM_SHARD_COUNT}d}_stats.json"


def finished_shards(shards: Path, info: dict) -> set[int]:
    return {
        s
        for s in range(info["base_shard"], info["base_shard"] + info["n_shards"])
        if shard_stats_path(shards, s).exists()
    }


def create_round(out: Path, r: int, rows: pa.Table, cfg: DownloadConfig, guard: UrlGuard, base_shard: int) -> dict:
    """Pre-filter the round's rows with the guard and write its input; the round is fixed from here on."""
    reasons = []
    for url in rows.column("url").to_pylist():
        if cfg.prefilter:
            ok, why = guard.check_url(url, resolve=False)
            reasons.append(None if ok else why)
        else:
            reasons.append(None)
    rows = rows.select(["identity_id", "source_id", "url", "bbox"]).append_column(
        "prefilter_reason", pa.array(reasons, pa.string())
    )
    send = rows.filter(pc.is_null(rows.column("prefilter_reason")))
    d = round_dir(out, r)
    write_parquet(rows, d / "rows.parquet")
    crop = cfg.crop_to_bbox and send.column("bbox").null_count < send.num_rows
    cols = ["url", "identity_id", "source_id"] + (["bbox"] if crop else [])
    write_parquet(send.select(cols), d / "input.parquet")
    info = {
        "round": r,
        "base_shard": base_shard,
        "n_shards": math.ceil(send.num_rows / cfg.shard_size),
        "shard_size": cfg.shard_size,
        "n_rows": rows.num_rows,
        "n_sent": send.num_rows,
        "n_refused_before_download": rows.num_rows - send.num_rows,
        "crop_to_bbox": "bbox" in cols,
        "address_policy": guard.describe(),
        "allow_private_network": guard.allow_private,
        "allowed_networks": list(guard.allowed_networks),
        "ignore_opt_out": cfg.ignore_opt_out,
        "ignore_robots": cfg.ignore_robots,
        "robots_agents": list(cfg.robots_agents()),
        "user_agent": cfg.user_agent(),
        "prefilter": cfg.prefilter,
        "retry_of_failed": r > 0,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(info, d / "round.json")  # written last: a round without it was never started
    return info


def round_outputs(out: Path, info: dict) -> pa.Table | None:
    """img2dataset's per-row results of a round's finished shards, with the shard's tar path."""
    shards = out / files.SHARDS_DIR
    parts = []
    for s in sorted(finished_shards(shards, info)):
        name = f"{s:0{OOM_SHARD_COUNT}d}"
        t = storage.read_parquet(
            shards / f"{name}.parquet", columns=["identity_id", "source_id", "status", "error_message", "key", "sha256"]
        )
        stats = json.loads(shard_stats_path(shards, s).read_text())
        if t.num_rows != stats["count"]:
            raise UserError(
                f"{shards / name}.parquet holds {t.num_rows} rows, its stats say {stats['count']}; "
                "delete that shard's files and rerun"
            )
        parts.append(t.append_column("shard", pa.array([f"{files.SHARDS_DIR}/{name}.tar"] * t.num_rows, pa.string())))
    return pa.concat_tables(parts) if parts else None


def _index(out: Path, requests: pa.Table, rounds: list[dict]):
    states = []
    for info in rounds:
        rows = storage.read_parquet(round_dir(out, info["round"]) / "rows.parquet")
        states.append(round_states(rows, round_outputs(out, info)))
    return build_index(requests, states)


def run_download(cfg: DownloadConfig, fetch: Fetcher) -> dict:
    """Run (or resume) the download stage with `fetch` as the engine; returns the report (also report.json)."""
    cfg.validate()
    storage.configure(cfg.storage_options)
    out = storage.location(cfg.out)
    folder = StageFolder(out, "download", cfg.settings(), cfg.force, type(cfg))
    folder.check()
    if cfg.force:
        for old in (files.SHARDS_DIR, files.ROUNDS_DIR, files.REQUESTS_PARQUET, files.REQUESTS_JSON):
            p = out / old
            storage.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    report_path = out / files.REPORT_JSON
    if not cfg.force and not cfg.retry_failed and folder.done() and report_path.exists():
        shards = out / files.SHARDS_DIR
        if all(len(finished_shards(shards, r)) == r["n_shards"] for r in read_rounds(out)):
            report = json.loads(report_path.read_text())  # finished: nothing is fetched or written again
            folder.release()
            return {**report, "resumed": True}
    storage.makedirs(out)
    write_json({"config": to_dict(cfg), "provenance": provenance()}, out / files.CONFIG_JSON)
    t0 = time.time()

    req_path = out / files.REQUESTS_PARQUET
    if req_path.exists():  # resume: the requested rows are fixed once written
        requests = storage.read_parquet(req_path)
        inputs = json.loads((out / files.REQUESTS_JSON).read_text())
    else:
        requests, inputs = build_requests(cfg)
        folder.pin()  # a first attempt that failed on its inputs pinned nothing; from here the folder is this run's
        write_json(inputs, out / files.REQUESTS_JSON)
        write_parquet(requests, req_path)
        ident_table = _identity_table(cfg)
        if cfg.queries and ident_table is not None:
            # The names list, its unknown sexes filled from the query sources (actors / actresses): a folder the
            # attack's --identities can take.
            write_parquet(with_sexes(ident_table, inputs["sex_from_sources"]), out / files.IDENTITIES_PARQUET)

    guard = cfg.guard()
    shards = out / files.SHARDS_DIR
    rounds = read_rounds(out)
    ran: list[int] = []
    for info in rounds:
        unit = f"round-{info['round']:03d}"
        if folder.done(unit) and len(finished_shards(shards, info)) < info["n_shards"]:
            # a finished round whose shard files were removed (a damaged shard deleted, as the attack advises)
            folder.forget(unit)
            folder.forget(STAGE_UNIT)
        if not folder.done(unit):
            fetch(cfg, info, out, guard)  # resume an unfinished round as it was planned: only its missing shards
            ran.append(info["round"])
    if not rounds:
        rounds.append(create_round(out, 0, requests, cfg, guard, 0))
        fetch(cfg, rounds[-1], out, guard)
        ran.append(0)
    elif cfg.retry_failed:
        _, state = _index(out, requests, rounds)
        failed = state[state["status"] != "success"][["identity_id", "source_id"]]
        if len(failed):
            keys = pa.Table.from_pandas(failed, preserve_index=False)
            rows = requests.join(keys, ["identity_id", "source_id"], join_type="inner").sort_by(
                [("identity_id", "ascending"), ("source_id", "ascending")]
            )
            base = max(r["base_shard"] + r["n_shards"] for r in rounds)
            rounds.append(create_round(out, len(rounds), rows, cfg, guard, base))
            fetch(cfg, rounds[-1], out, guard)
            ran.append(rounds[-1]["round"])
    for info in rounds:
        unit = f"round-{info['round']:03d}"
        if not folder.done(unit) and len(finished_shards(shards, info)) == info["n_shards"]:
            folder.mark_done(unit, {"n_shards": info["n_shards"]})

    index, state = _index(out, requests, rounds)
    identity_ids = None
    ident_table = _identity_table(cfg)
    if ident_table is not None:
        identity_ids = sorted(ident_table.column("identity_id").to_pylist())
    report = summarize(state, identity_ids)
    i2d = [
        json.loads(p.read_text())
        for info in rounds
        for p in (shard_stats_path(shards, s) for s in sorted(finished_shards(shards, info)))
    ]
    report.update(
        {
            "inputs": inputs,
            "settings": {
                "address_policy": guard.describe(),
                "allow_private_network": guard.allow_private,
                "allowed_networks": list(guard.allowed_networks),
                "ignore_opt_out": cfg.ignore_opt_out,
                "disallowed_header_directives": [] if cfg.ignore_opt_out else OPT_OUT_DIRECTIVES,
                "ignore_robots": cfg.ignore_robots,
                "robots_agents": list(cfg.robots_agents()),
                "user_agent": cfg.user_agent(),
                "user_agent_token": cfg.user_agent_token,
                "prefilter": cfg.prefilter,
                "distributor": cfg.distributor,
                "image": {
                    k: getattr(cfg, k)
                    for k in (
                        "image_size",
                        "resize_mode",
                        "encode_format",
                        "encode_quality",
                        "min_image_size",
                        "max_pixels",
                    )
                },
            },
            "rounds": rounds,
            "rounds_run_now": ran,
            "unfinished_shards": sum(r["n_shards"] - len(finished_shards(shards, r)) for r in rounds),
            "img2dataset": merge_img2dataset_stats(i2d),
            "wall_s": round(time.time() - t0, 2),
        }
    )
    check_sum(requests.num_rows, {"index rows": index.num_rows}, "requested rows in the index")
    write_parquet(index, out / files.INDEX_PARQUET)
    write_json(report, out / files.REPORT_JSON)
    write_text(render_markdown(report), out / files.REPORT_MD)
    if not report["unfinished_shards"]:
        folder.mark_done()
    folder.release()
    return report
