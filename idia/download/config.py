"""The download stage's configuration."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from idia.core.config import ConfigError, StageConfig, option, storage_option
from idia.download.url_guard import UrlGuard, guard_from_option

RESIZE_MODES = ("no", "keep_ratio", "center_crop", "border", "keep_ratio_largest")
ENCODE_FORMATS = ("jpg", "png", "webp")
DISTRIBUTORS = ("multiprocessing", "pyspark")


@dataclass
class DownloadConfig(StageConfig):
    STAGE = "download"

    out: str = option(
        "", required=True, help="output folder: shards/, index.parquet, report.json, report.md, config.json"
    )
    manifests: str | None = option(
        None, help="input (one of): mine output folder (holds manifests/bucket=NNN/*.parquet)"
    )
    queries: list[str] = option(
        default_factory=list,
        metavar="PATH",
        help="input (one of): query-image sources, each a FaceScrub-layout file (tab-separated: name image_id "
        "face_id url bbox sha256 [identity_id] [sex], as facescrub_actors.txt / facescrub_actresses.txt) or a folder "
        "of <Name>.txt URL lists (the study's German personalities); a file or folder called actors / actresses "
        "gives the sex",
    )
    query_aliases: str | None = option(
        None,
        help="CSV query_name,name: query names spelled otherwise than in the names list (the study's FaceScrub "
        "fixes: idia/resources/study/facescrub_name_fixes.csv)",
    )
    identities: str | None = option(
        None,
        help="names file (CSV or one name a line): maps query names to identity_id; "
        "also lists identities for the report",
    )
    max_per_identity: int | None = option(
        None, help="download at most K images per identity (seeded sample); none: all"
    )
    seed: int = option(0, help="seed of the per-identity sample")
    # The study queried with WHOLE photos (FaceScrub loaded with cropped=False). Cropping to the list's face box is
    # there for users who want face-only queries.
    crop_to_bbox: bool = option(
        False, help="crop query photos to their face box when the list gives one (the study: whole photos)"
    )
    image_size: int = option(256, help="target size in pixels")
    resize_mode: str = option(
        "keep_ratio", choices=RESIZE_MODES, help="img2dataset resize mode (keep_ratio: shorter side = image size)"
    )
    encode_format: str = option("jpg", choices=ENCODE_FORMATS, help="stored image format")
    encode_quality: int = option(95, help="jpg/webp quality, png compression")
    min_image_size: int = option(0, help="refuse images whose shorter side is smaller")
    max_body_bytes: int = option(
        20_000_000,
        help="refuse a response body larger than this many bytes, checked while it streams (a declared "
        "Content-Length over it is refused unread); counted as body_too_large",
    )
    max_pixels: int = option(
        89_478_485,
        help="refuse images with more pixels, read from the header before decoding (Pillow's decompression-bomb limit)",
    )
    processes: int = option(0, execution=True, help="download processes (pyspark: local cores); 0 = one per CPU core")
    threads: int = option(64, execution=True, help="download threads per process")
    shard_size: int = option(10_000, help="images per webdataset shard")
    timeout: float = option(10.0, execution=True, help="seconds per request")
    retries: int = option(0, execution=True, help="retries per URL within a run")
    max_shard_retry: int = option(1, execution=True, help="times img2dataset retries a failed shard")
    env_proxies: bool = option(
        True,
        execution=True,
        help="send requests through the proxies the environment names (http_proxy, https_proxy; no_proxy honoured); "
        "every target is still checked by the URL guard (see docs/cluster.md for what it cannot see through one)",
    )
    per_host_connections: int = option(
        8, execution=True, help="requests in flight to one host at once, per download process"
    )
    per_host_rate: float | None = option(
        None, execution=True, help="requests per second to one host, per download process (default: no limit)"
    )
    busy_retries: int = option(
        2,
        execution=True,
        help="a 429 / 503 answer is retried this many times, after its Retry-After (or 1 s, 2 s, 4 s ... without "
        "one) when that wait is at most --max-retry-after; the host is paused for that long for every thread",
    )
    max_retry_after: float = option(
        30.0, execution=True, help="longest Retry-After (seconds) waited for; a longer one fails the URL at once"
    )
    distributor: str = option(
        "multiprocessing",
        choices=DISTRIBUTORS,
        execution=True,
        help="img2dataset distributor: multiprocessing, or pyspark for clusters",
    )
    master: str | None = option(
        None, execution=True, help="Spark master for the pyspark distributor (default: $SPARK_MASTER or local)"
    )
    allow_private_network: bool = option(
        False,
        execution=True,
        help="allow every loopback/private address (default: refuse them; link-local "
        "stays refused); recorded in the report",
    )
    allowed_networks: list[str] = option(
        default_factory=list,
        execution=True,
        metavar="CIDR",
        help="allow only these non-public networks, e.g. 127.0.0.1/32 for a local image server",
    )
    ignore_opt_out: bool = option(
        False,
        execution=True,
        help="do NOT honour X-Robots-Tag opt-out directives (noai, noimageai, ...); recorded in the report",
    )
    ignore_robots: bool = option(
        False,
        execution=True,
        help="do NOT fetch or honour robots.txt (by default each origin's robots.txt is fetched once per download "
        "process and a disallowed URL is not requested); recorded in each round and the report",
    )
    contact: str | None = option(
        None,
        execution=True,
        help="a URL or e-mail address where site operators can reach whoever runs this crawl, sent in the "
        "User-Agent (idia-audit/VERSION (...; +CONTACT)); set it for any crawl of third-party hosts",
    )
    user_agent_token: str = option(
        "img2dataset", execution=True, help="token in the User-Agent; X-Robots-Tag directives addressed to it apply too"
    )
    retry_failed: bool = option(
        False, execution=True, help="after finishing, re-feed only the rows that failed so far (new shards)"
    )
    prefilter: bool = option(
        True,
        execution=True,
        help="check URLs before img2dataset (diagnostics: the connect-time check applies regardless)",
    )
    storage_options: dict = storage_option("manifests and outputs", "download processes")

    def user_agent(self) -> str:
        """The User-Agent of every request: the tool and its version, what it does, and the operator's contact."""
        from idia import __version__

        contact = f"; +{self.contact}" if self.contact else ""
        return f"idia-audit/{__version__} (identity-leakage audit of an image-text dataset{contact})"

    def robots_agents(self) -> tuple[str, ...]:
        """The product tokens whose robots.txt rules apply (empty: robots.txt ignored)."""
        return () if self.ignore_robots else tuple(dict.fromkeys(("idia-audit", self.user_agent_token)))

    def check(self) -> None:
        if isinstance(self.queries, str):  # one source given where a list is expected (a config built in code)
            self.queries = [self.queries]
        if bool(self.manifests) == bool(self.queries):
            raise ConfigError("download: give exactly one of manifests (a mine output) or queries (a query list)")
        if self.max_per_identity is not None and self.max_per_identity < 1:
            raise ConfigError("download: max_per_identity must be at least 1")
        for name in ("image_size", "shard_size", "threads", "max_pixels", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"download: {name} must be at least 1")
        if self.timeout <= 0:
            raise ConfigError("download: timeout must be positive")
        if self.per_host_connections < 1 or self.busy_retries < 0 or self.max_retry_after < 0:
            raise ConfigError("download: per_host_connections must be >= 1, busy_retries and max_retry_after >= 0")
        if self.per_host_rate is not None and self.per_host_rate <= 0:
            raise ConfigError("download: per_host_rate must be positive (or unset for no limit)")
        top = 9 if self.encode_format == "png" else 100  # png: zlib compression level; jpg/webp: quality
        if not 0 <= self.encode_quality <= top:
            raise ConfigError(
                f"download: encode_quality must be 0-{top} for {self.encode_format} "
                f"({'compression level' if top == 9 else 'quality'}), got {self.encode_quality}"
            )
        self.guard()  # parses the networks

    def guard(self) -> UrlGuard:
        if self.allowed_networks:
            g = guard_from_option(self.allowed_networks, True)
            return dataclasses.replace(g, allow_private=self.allow_private_network) if self.allow_private_network else g
        return guard_from_option(None, self.allow_private_network)

    def n_processes(self) -> int:
        return self.processes or os.cpu_count() or 1
