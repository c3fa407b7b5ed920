"""Download stage: the mining job's manifests (or a FaceScrub-layout query list) -> webdataset shards with img2dataset.

Safe by default: only http/https; loopback, private, link-local, multicast and reserved addresses refused (also
behind redirects and DNS names), opt-out headers (X-Robots-Tag noai, ...) honoured. Every requested row ends in
index.parquet as success (shard, key) or failed with a reason; report.json/report.md add it up per identity.
Resumable: a rerun continues unfinished shards (img2dataset's incremental mode); --retry-failed re-feeds failed rows.

Runs alone as `python -m jobs.download ...` or `idia download ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from idia.atomic import is_done, mark_done, write_json, write_parquet, write_text
from idia.config import from_file_and_args, to_dict
from idia.download_index import build_index, merge_img2dataset_stats, render_markdown, round_states, summarize
from idia.download_inputs import REQUESTS, requests_from_manifests
from idia.errors import USER_ERRORS, UserError
from idia.stats import check_sum
from idia.url_guard import UrlGuard, guard_from_option

#: X-Robots-Tag directives that make img2dataset skip an image (its own default list).
OPT_OUT_DIRECTIVES = ["noai", "noimageai", "noindex", "noimageindex"]
RESIZE_MODES = ("no", "keep_ratio", "center_crop", "border", "keep_ratio_largest")
ENCODE_FORMATS = ("jpg", "png", "webp")
DISTRIBUTORS = ("multiprocessing", "pyspark")
OOM_SHARD_COUNT = 5  # shard names 00000.tar ... 99999.tar

#: Settings that decide which rows are requested and what the shards hold: fixed for an output folder.
FINGERPRINT = ("manifests", "queries", "identities", "max_per_identity", "seed", "crop_to_bbox", "image_size", "resize_mode",
               "encode_format", "encode_quality", "min_image_size", "max_pixels", "shard_size")


@dataclass
class DownloadConfig:
    out: str = ""
    manifests: str | None = None  # mine output folder (or its manifests/ folder)
    queries: str | None = None  # FaceScrub-layout query list (tsv)
    identities: str | None = None  # names file: identity lookup for queries, identity list for the report
    max_per_identity: int | None = None  # K images per identity, seeded sample; None: all
    seed: int = 0
    # Query photos are cropped to their face box when the list gives one (as the study's FaceScrub queries were).
    # Off for a model that never saw tight face crops in training, such as the demo's tiny CLIP.
    crop_to_bbox: bool = True
    image_size: int = 256
    resize_mode: str = "keep_ratio"
    encode_format: str = "jpg"
    encode_quality: int = 95
    min_image_size: int = 0
    max_pixels: int = 89_478_485  # Pillow's default decompression-bomb limit
    processes: int = 0  # 0: one per CPU core
    threads: int = 64  # download threads per process
    shard_size: int = 10_000
    timeout: float = 10.0
    retries: int = 0
    max_shard_retry: int = 1
    distributor: str = "multiprocessing"
    master: str | None = None  # Spark master for the pyspark distributor (None: $SPARK_MASTER or local)
    allow_private_network: bool = False
    allowed_networks: list[str] = field(default_factory=list)
    ignore_opt_out: bool = False
    user_agent_token: str = "img2dataset"
    retry_failed: bool = False
    prefilter: bool = True  # check URLs before img2dataset (the connect-time check applies regardless)

    def validate(self) -> None:
        if not self.out:
            raise UserError("download: --out is required")
        if bool(self.manifests) == bool(self.queries):
            raise UserError("download: give exactly one of --manifests (mine output) or --queries (query list)")
        if self.max_per_identity is not None and self.max_per_identity < 1:
            raise UserError("download: --max-per-identity must be at least 1")
        if self.resize_mode not in RESIZE_MODES:
            raise UserError(f"download: --resize-mode must be one of {', '.join(RESIZE_MODES)}")
        if self.encode_format not in ENCODE_FORMATS:
            raise UserError(f"download: --encode-format must be one of {', '.join(ENCODE_FORMATS)}")
        if self.distributor not in DISTRIBUTORS:
            raise UserError(f"download: --distributor must be one of {', '.join(DISTRIBUTORS)}")
        for name in ("image_size", "shard_size", "threads", "max_pixels"):
            if getattr(self, name) < 1:
                raise UserError(f"download: {name} must be at least 1")
        if self.timeout <= 0:
            raise UserError("download: --timeout must be positive")
        self.guard()  # parses the networks

    def guard(self) -> UrlGuard:
        if self.allowed_networks:
            g = guard_from_option(self.allowed_networks, True)
            return dataclasses.replace(g, allow_private=self.allow_private_network) if self.allow_private_network else g
        return guard_from_option(None, self.allow_private_network)

    def n_processes(self) -> int:
        return self.processes or os.cpu_count() or 1

    def fingerprint(self) -> dict:
        fp = {k: getattr(self, k) for k in FINGERPRINT}
        for k in ("manifests", "queries", "identities"):
            if fp[k]:
                fp[k] = str(Path(fp[k]).resolve())
        return fp


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def _identity_table(cfg: DownloadConfig) -> pa.Table | None:
    if cfg.identities:
        from idia.names import read_names

        return read_names(cfg.identities)
    if cfg.manifests:
        p = Path(cfg.manifests) / "identities.parquet"
        if p.is_file():
            return pq.read_table(p)
    return None


def build_requests(cfg: DownloadConfig) -> tuple[pa.Table, dict]:
    """The rows to download (REQUESTS), sampled per identity, and the input accounting."""
    from idia.download_inputs import sample_per_identity

    if cfg.manifests:
        table, stats = requests_from_manifests(cfg.manifests, cfg.max_per_identity, cfg.seed)
        return table, {"mode": "manifests", **stats.to_dict()}
    from idia.query_list import read_query_list

    identities = _identity_table(cfg) if cfg.identities else None
    table, stats, unknown = read_query_list(cfg.queries, identities)
    if cfg.max_per_identity is not None:
        df, dropped = sample_per_identity(table.to_pandas(), cfg.max_per_identity, cfg.seed)
        table = pa.Table.from_pandas(df, schema=REQUESTS, preserve_index=False)
        stats["not_sampled"] = dropped
        stats["requested"] = table.num_rows
    info = {"mode": "queries", **stats.to_dict(), "unknown_names": unknown[:50]}
    check_sum(stats["rows_read"], {k: stats[k] for k in ("requested", "skipped_unknown_name", "not_sampled")},
              "query rows")
    return table, info


# ------------------------------------------------------------------------------------------------
# Rounds: round 0 downloads every request; a --retry-failed round re-feeds the rows that failed so far.
# ------------------------------------------------------------------------------------------------


def _round_dir(out: Path, r: int) -> Path:
    return out / "rounds" / f"{r:03d}"


def _rounds(out: Path) -> list[dict]:
    infos = []
    for d in sorted((out / "rounds").glob("[0-9][0-9][0-9]")):
        f = d / "round.json"
        if f.is_file():
            infos.append(json.loads(f.read_text()))
    return infos


def _stats_path(shards: Path, shard_id: int) -> Path:
    return shards / f"{shard_id:0{OOM_SHARD_COUNT}d}_stats.json"


def _finished_shards(shards: Path, info: dict) -> set[int]:
    return {s for s in range(info["base_shard"], info["base_shard"] + info["n_shards"]) if _stats_path(shards, s).exists()}


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
        "prefilter_reason", pa.array(reasons, pa.string()))
    send = rows.filter(pc.is_null(rows.column("prefilter_reason")))
    d = _round_dir(out, r)
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
        "prefilter": cfg.prefilter,
        "retry_of_failed": r > 0,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(info, d / "round.json")  # written last: a round without it was never started
    return info


@contextmanager
def _spark(cfg: DownloadConfig):
    """A Spark session for img2dataset's pyspark distributor (it uses the active one), stopped if we made it."""
    from pyspark.sql import SparkSession

    from jobs.spark_session import get_spark

    existing = SparkSession.getActiveSession()
    spark = existing or get_spark(cfg.master or (None if os.environ.get("SPARK_MASTER") else f"local[{cfg.n_processes()}]"),
                                  app_name="idia-download")
    try:
        yield spark
    finally:
        if existing is None:
            spark.stop()


def run_img2dataset(cfg: DownloadConfig, info: dict, out: Path, guard: UrlGuard) -> None:
    """Download one round's unfinished shards with img2dataset's own reader, downloader, writer and distributors.

    Composed from img2dataset's parts (rather than `img2dataset.download`) to hand it our downloader wrapper
    (the guard in every worker) and resizer wrapper (pixel limit, truncation, face-box crop).
    """
    from img2dataset.distributor import multiprocessing_distributor, pyspark_distributor
    from img2dataset.downloader import Downloader
    from img2dataset.reader import Reader
    from img2dataset.resizer import Resizer
    from img2dataset.writer import WebDatasetSampleWriter

    from idia.download_guard import GuardedDownloader
    from idia.download_images import SafeResizer

    shards = out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    done = _finished_shards(shards, info)
    if info["n_sent"] == 0 or len(done) == info["n_shards"]:
        return
    tmp = shards / "_tmp"
    tmp.mkdir(exist_ok=True)
    carried = ["identity_id", "source_id"] + (["bbox"] if info["crop_to_bbox"] else [])
    d = _round_dir(out, info["round"])
    reader = Reader(str((d / "input.parquet").resolve()), "parquet", "url", None, None, None, carried,
                    info["shard_size"], done, str(tmp.resolve()), info["base_shard"])
    resizer = SafeResizer(
        Resizer(image_size=cfg.image_size, resize_mode=cfg.resize_mode, resize_only_if_bigger=False,
                encode_quality=cfg.encode_quality, encode_format=cfg.encode_format, min_image_size=cfg.min_image_size,
                max_image_area=cfg.max_pixels),
        max_pixels=cfg.max_pixels,
    )
    downloader = Downloader(
        sample_writer_class=WebDatasetSampleWriter,
        resizer=resizer,
        thread_count=cfg.threads,
        save_caption=False,
        extract_exif=False,  # EXIF can hold GPS positions: personal data we do not need
        output_folder=str(shards.resolve()),
        column_list=reader.column_list,
        timeout=cfg.timeout,
        number_sample_per_shard=info["shard_size"],
        oom_shard_count=OOM_SHARD_COUNT,
        compute_hash="sha256",  # of the bytes as downloaded: checked against the query list's sha256
        verify_hash_type=None,
        encode_format=cfg.encode_format,
        retries=cfg.retries,
        user_agent_token=cfg.user_agent_token,
        disallowed_header_directives=None if info["ignore_opt_out"] else OPT_OUT_DIRECTIVES,
        blurring_bbox_col="bbox" if info["crop_to_bbox"] else None,  # handed to SafeResizer, which crops
    )
    guarded = GuardedDownloader(downloader, guard)
    if cfg.distributor == "pyspark":
        with _spark(cfg):
            pyspark_distributor(cfg.n_processes(), guarded, reader, 1000, cfg.max_shard_retry)
    else:
        multiprocessing_distributor(cfg.n_processes(), guarded, reader, None, cfg.max_shard_retry)
    shutil.rmtree(tmp, ignore_errors=True)


def round_outputs(out: Path, info: dict) -> pa.Table | None:
    """img2dataset's per-row results of a round's finished shards, with the shard's tar path."""
    shards = out / "shards"
    parts = []
    for s in sorted(_finished_shards(shards, info)):
        name = f"{s:0{OOM_SHARD_COUNT}d}"
        t = pq.read_table(shards / f"{name}.parquet",
                          columns=["identity_id", "source_id", "status", "error_message", "key", "sha256"])
        stats = json.loads(_stats_path(shards, s).read_text())
        if t.num_rows != stats["count"]:
            raise UserError(f"{shards / name}.parquet holds {t.num_rows} rows, its stats say {stats['count']}; "
                            "delete that shard's files and rerun")
        parts.append(t.append_column("shard", pa.array([f"shards/{name}.tar"] * t.num_rows, pa.string())))
    return pa.concat_tables(parts) if parts else None


# ------------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------------


def _check_folder(out: Path, cfg: DownloadConfig) -> None:
    saved = out / "config.json"
    if not saved.exists() or not (out / "requests.parquet").exists():
        return  # nothing fixed yet: a failed first attempt (bad input path) may be retried with other inputs
    old = json.loads(saved.read_text()).get("fingerprint", {})
    diff = [k for k in FINGERPRINT if old.get(k) != cfg.fingerprint().get(k)]
    if diff:
        raise UserError(f"{out}: this folder holds a download made with different {', '.join(diff)} "
                        f"({', '.join(f'{k}={old.get(k)!r}' for k in diff)}); use a new --out to change them")


def run_download(cfg: DownloadConfig) -> dict:
    """Run (or resume) the download stage; returns the report (also written to out/report.json)."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, cfg)
    write_json({"config": to_dict(cfg), "fingerprint": cfg.fingerprint()}, out / "config.json")
    t0 = time.time()

    req_path = out / "requests.parquet"
    if req_path.exists():  # resume: the requested rows are fixed once written
        requests = pq.read_table(req_path)
        inputs = json.loads((out / "requests.json").read_text())
    else:
        requests, inputs = build_requests(cfg)
        write_json(inputs, out / "requests.json")
        write_parquet(requests, req_path)

    guard = cfg.guard()
    rounds = _rounds(out)
    ran: list[int] = []
    if rounds and not is_done(out, f"round-{rounds[-1]['round']:03d}"):
        run_img2dataset(cfg, rounds[-1], out, guard)  # resume the unfinished round as it was planned
        ran.append(rounds[-1]["round"])
    if not rounds:
        rounds.append(create_round(out, 0, requests, cfg, guard, 0))
        run_img2dataset(cfg, rounds[-1], out, guard)
        ran.append(0)
    elif cfg.retry_failed:
        _, state = _index(out, requests, rounds)
        failed = state[state["status"] != "success"][["identity_id", "source_id"]]
        if len(failed):
            keys = pa.Table.from_pandas(failed, preserve_index=False)
            rows = requests.join(keys, ["identity_id", "source_id"], join_type="inner").sort_by(
                [("identity_id", "ascending"), ("source_id", "ascending")])
            base = max(r["base_shard"] + r["n_shards"] for r in rounds)
            rounds.append(create_round(out, len(rounds), rows, cfg, guard, base))
            run_img2dataset(cfg, rounds[-1], out, guard)
            ran.append(rounds[-1]["round"])
    for info in rounds:
        unit = f"round-{info['round']:03d}"
        if not is_done(out, unit) and len(_finished_shards(out / "shards", info)) == info["n_shards"]:
            mark_done(out, unit, {"n_shards": info["n_shards"]})

    index, state = _index(out, requests, rounds)
    identity_ids = None
    ident_table = _identity_table(cfg)
    if ident_table is not None:
        identity_ids = sorted(ident_table.column("identity_id").to_pylist())
    report = summarize(state, identity_ids)
    i2d = [json.loads(p.read_text()) for info in rounds for p in
           (_stats_path(out / "shards", s) for s in sorted(_finished_shards(out / "shards", info)))]
    report.update(
        {
            "inputs": inputs,
            "settings": {
                "address_policy": guard.describe(),
                "allow_private_network": guard.allow_private,
                "allowed_networks": list(guard.allowed_networks),
                "ignore_opt_out": cfg.ignore_opt_out,
                "disallowed_header_directives": [] if cfg.ignore_opt_out else OPT_OUT_DIRECTIVES,
                "user_agent_token": cfg.user_agent_token,
                "prefilter": cfg.prefilter,
                "distributor": cfg.distributor,
                "image": {k: getattr(cfg, k) for k in ("image_size", "resize_mode", "encode_format", "encode_quality",
                                                       "min_image_size", "max_pixels")},
            },
            "rounds": rounds,
            "rounds_run_now": ran,
            "unfinished_shards": sum(r["n_shards"] - len(_finished_shards(out / "shards", r)) for r in rounds),
            "img2dataset": merge_img2dataset_stats(i2d),
            "wall_s": round(time.time() - t0, 2),
        }
    )
    check_sum(requests.num_rows, {"index rows": index.num_rows}, "requested rows in the index")
    write_parquet(index, out / "index.parquet")
    write_json(report, out / "report.json")
    write_text(render_markdown(report), out / "report.md")
    return report


def _index(out: Path, requests: pa.Table, rounds: list[dict]):
    states = []
    for info in rounds:
        rows = pq.read_table(_round_dir(out, info["round"]) / "rows.parquet")
        states.append(round_states(rows, round_outputs(out, info)))
    return build_index(requests, states)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Unset options stay absent (SUPPRESS), so a --config file's values are not overridden by defaults; the
    # defaults are DownloadConfig's and are spelled out in each help text.
    p.argument_default = argparse.SUPPRESS
    src = p.add_argument_group("input (one of)")
    src.add_argument("--manifests", help="mine output folder (holds manifests/bucket=NNN/*.parquet)")
    src.add_argument("--queries", help="query-image list, FaceScrub layout (tab-separated: name image_id face_id "
                                       "url bbox sha256 [identity_id])")
    p.add_argument("--identities", help="names file (CSV or one name a line): maps query names to identity_id; "
                                        "also lists identities for the report")
    p.add_argument("--out", help="output folder: shards/, index.parquet, report.json, report.md, config.json")
    p.add_argument("--config", help="YAML/JSON file with DownloadConfig keys; options given here override it")
    p.add_argument("--max-per-identity", type=int, help="download at most K images per identity (seeded sample); "
                                                        "default: all")
    p.add_argument("--seed", type=int, help="seed of the per-identity sample (default 0)")
    img = p.add_argument_group("images")
    img.add_argument("--no-crop", dest="crop_to_bbox", action="store_false",
                     help="keep query photos whole instead of cropping them to their bbox (default: crop when a bbox "
                          "is given)")
    img.add_argument("--image-size", type=int, help="target size in pixels (default 256)")
    img.add_argument("--resize-mode", choices=RESIZE_MODES, help="img2dataset resize mode (default keep_ratio: "
                                                                 "shorter side = image size)")
    img.add_argument("--encode-format", choices=ENCODE_FORMATS, help="stored image format (default jpg)")
    img.add_argument("--encode-quality", type=int, help="jpg/webp quality, png compression (default 95)")
    img.add_argument("--min-image-size", type=int, help="refuse images whose shorter side is smaller (default 0)")
    img.add_argument("--max-pixels", type=int, help="refuse images with more pixels, read from the header before "
                                                    "decoding (default 89478485)")
    run = p.add_argument_group("execution")
    run.add_argument("--processes", type=int, help="download processes (pyspark: local cores) (default: CPU count)")
    run.add_argument("--threads", type=int, help="download threads per process (default 64)")
    run.add_argument("--shard-size", type=int, help="images per webdataset shard (default 10000)")
    run.add_argument("--timeout", type=float, help="seconds per request (default 10)")
    run.add_argument("--retries", type=int, help="retries per URL within a run (default 0)")
    run.add_argument("--distributor", choices=DISTRIBUTORS, help="multiprocessing (default) or pyspark (clusters)")
    run.add_argument("--master", help="Spark master for --distributor pyspark (default: $SPARK_MASTER or local)")
    run.add_argument("--retry-failed", action="store_true",
                     help="after finishing, re-feed only the rows that failed so far (new shards)")
    safe = p.add_argument_group("safety")
    safe.add_argument("--allow-private-network", nargs="?", const="", metavar="CIDRS",
                      help="allow non-public addresses: alone, all loopback/private ones; with comma-separated "
                           "networks (e.g. 127.0.0.1/32), only those. Default: refuse them")
    safe.add_argument("--ignore-opt-out", action="store_true",
                      help="do NOT honour X-Robots-Tag opt-out directives (noai, noimageai, ...); recorded in the report")
    safe.add_argument("--user-agent-token", help="token in the User-Agent; X-Robots-Tag directives addressed to it "
                                                 "apply too (default img2dataset)")
    safe.add_argument("--no-prefilter", dest="prefilter", action="store_false",
                      help="diagnostics: skip the URL check before img2dataset (the connect-time check still applies)")


def config_from_args(args: argparse.Namespace) -> DownloadConfig:
    cfg = from_file_and_args(DownloadConfig, args, "download config",
                             skip=("allow_private_network", "allowed_networks"))
    if getattr(args, "allow_private_network", None) is not None:
        # The one flag sets both fields: alone it allows every private range, with CIDRs only those.
        nets = [n.strip() for n in args.allow_private_network.split(",") if n.strip()]
        cfg = dataclasses.replace(cfg, allow_private_network=not nets, allowed_networks=nets)
    return cfg


def print_summary(report: dict, out: str) -> None:
    t = report["totals"]
    s = report["settings"]
    print(f"\ndownload: {t['requested']} requested, {t['downloaded']} downloaded, {t['failed']} failed "
          f"({t['identities_with_images']}/{t['identities']} identities with images) in {report['wall_s']} s")
    for reason, n in sorted(t["failed_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))[:12]:
        print(f"  failed {reason:<26} {n}")
    print(f"  addresses: {s['address_policy']}; opt-out headers: "
          f"{'IGNORED' if s['ignore_opt_out'] else 'honoured'}")
    if report["unfinished_shards"]:
        print(f"  {report['unfinished_shards']} shard(s) did not finish: rerun the same command to resume")
    print(f"  index: {out}/index.parquet  report: {out}/report.md  shards: {out}/shards/")


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    cfg = config_from_args(args)
    report = run_download(cfg)
    print_summary(report, cfg.out)
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m jobs.download", description=__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(_parser)
    try:
        sys.exit(main(_parser.parse_args()))
    except USER_ERRORS as _exc:
        print(f"download: error: {_exc}", file=sys.stderr)
        sys.exit(2)
