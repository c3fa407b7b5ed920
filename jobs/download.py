"""img2dataset adapter of the download stage: fetch one round's unfinished shards with img2dataset's own reader,
downloader, writer and distributors (multiprocessing, or pyspark on a cluster).

Composed from img2dataset's parts (rather than `img2dataset.download`) to hand it our downloader wrapper (the URL
guard installed in every worker) and resizer wrapper (pixel limit, truncation, face-box crop).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from idia.core import storage
from idia.download.config import DownloadConfig
from idia.download.stage import OOM_SHARD_COUNT, OPT_OUT_DIRECTIVES, finished_shards, round_dir
from idia.download.stage import run_download as _run_download
from idia.download.url_guard import UrlGuard
from schemas import files


@contextmanager
def _spark(cfg: DownloadConfig):
    """A Spark session for img2dataset's pyspark distributor (it uses the active one), stopped if we made it."""
    from pyspark.sql import SparkSession

    from jobs.spark_session import configured_master, get_spark, stop_spark

    existing = SparkSession.getActiveSession()
    # Nothing configured: local with the download's own process count; otherwise what Spark would use.
    nothing = not cfg.master and configured_master()[1].startswith("default")
    spark = existing or get_spark(
        f"local[{cfg.n_processes()}]" if nothing else cfg.master,
        app_name="idia-download",
    )
    try:
        yield spark
    finally:
        if existing is None:
            stop_spark(spark)


def env_proxies() -> tuple[tuple[str, str], ...]:
    """The http / https proxies this process's environment names (urllib's reading of http_proxy etc.)."""
    import urllib.request

    return tuple(sorted((k, v) for k, v in urllib.request.getproxies().items() if k in ("http", "https") and v))


def fetch_round(cfg: DownloadConfig, info: dict, out: Path, guard: UrlGuard) -> None:
    """Download one round's unfinished shards into out/shards."""
    from img2dataset.distributor import multiprocessing_distributor, pyspark_distributor
    from img2dataset.downloader import Downloader
    from img2dataset.reader import Reader
    from img2dataset.resizer import Resizer
    from img2dataset.writer import WebDatasetSampleWriter

    from idia.download.image_checks import SafeResizer
    from idia.download.opener import GuardedDownloader, Politeness, RequestPolicy

    shards = out / files.SHARDS_DIR
    storage.makedirs(shards)
    done = finished_shards(shards, info)
    if info["n_sent"] == 0 or len(done) == info["n_shards"]:
        return
    # img2dataset's reader splits the input into per-shard files its workers read: beside the shards, where every
    # worker (a Spark executor elsewhere) can read them; local processes on an object-store run use a local folder.
    local_tmp = storage.remote(shards) and cfg.distributor != "pyspark"
    tmp = Path(tempfile.mkdtemp(prefix="idia-download-")) if local_tmp else shards / "_tmp"
    storage.makedirs(tmp)
    carried = ["identity_id", "source_id"] + (["bbox"] if info["crop_to_bbox"] else [])
    reader = Reader(
        storage.absolute(round_dir(out, info["round"]) / "input.parquet"),
        "parquet",
        "url",
        None,
        None,
        None,
        carried,
        info["shard_size"],
        done,
        storage.absolute(tmp),
        info["base_shard"],
    )
    resizer = SafeResizer(
        Resizer(
            image_size=cfg.image_size,
            resize_mode=cfg.resize_mode,
            resize_only_if_bigger=False,
            encode_quality=cfg.encode_quality,
            encode_format=cfg.encode_format,
            min_image_size=cfg.min_image_size,
            max_image_area=cfg.max_pixels,
        ),
        max_pixels=cfg.max_pixels,
    )
    downloader = Downloader(
        sample_writer_class=WebDatasetSampleWriter,
        resizer=resizer,
        thread_count=cfg.threads,
        save_caption=False,
        extract_exif=False,  # EXIF can hold GPS positions: personal data we do not need
        output_folder=storage.absolute(shards),
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
    policy = RequestPolicy(
        max_body_bytes=cfg.max_body_bytes,
        user_agent=info.get("user_agent", cfg.user_agent()),
        robots_agents=() if info.get("ignore_robots", cfg.ignore_robots) else cfg.robots_agents(),
        timeout=cfg.timeout,
        politeness=Politeness(cfg.per_host_connections, cfg.per_host_rate, cfg.busy_retries, cfg.max_retry_after),
        proxies=env_proxies() if cfg.env_proxies else (),
    )
    guarded = GuardedDownloader(downloader, guard, policy, storage.shipped_conf())
    if cfg.distributor == "pyspark":
        with _spark(cfg):
            pyspark_distributor(cfg.n_processes(), guarded, reader, 1000, cfg.max_shard_retry)
    else:
        multiprocessing_distributor(cfg.n_processes(), guarded, reader, None, cfg.max_shard_retry)
    storage.rmtree(tmp)


def run_download(cfg: DownloadConfig) -> dict:
    """The download stage with img2dataset; returns its report."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations otherwise calls the network on import
    return _run_download(cfg, fetch_round)
