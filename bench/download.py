"""Benchmark: the download stage vs bare img2dataset on the same URL list from a loopback server, side by side.

Both download the same N small JPEGs (distinct files) served on 127.0.0.1, with the same image settings, processes
and threads; runs alternate (bare, stage, bare, stage, ...) so machine noise hits both. The ratio of wall times is
what the guard (pre-filter + guarded opener), the header checks and the bookkeeping (requests, index, report) cost,
plus differences in start-up (bare img2dataset also spawns its logger process and waits on its 5 s poll). The
ratio of summed per-shard durations (measured inside the workers) isolates the per-image cost.

    .venv/bin/python -m bench.download [--n 3000] [--reps 2] [--processes 2] [--threads 16]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _make_site(root: Path, n: int) -> None:
    from PIL import Image

    img = root / "img"
    img.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)).save(buf, "JPEG", quality=90)
        (img / f"{i:05d}.jpg").write_bytes(buf.getvalue())


def run(
    n: int = 3000,
    reps: int = 2,
    processes: int = 2,
    threads: int = 16,
    shard_size: int = 1000,
    workdir: str | None = None,
) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from img2dataset import download as i2d_download

    from idia.download.config import DownloadConfig
    from idia.download.stage import OPT_OUT_DIRECTIVES
    from idia.world.server import LoopbackServer
    from jobs.download import run_download
    from schemas import IDENTITIES, MANIFEST

    tmp = Path(workdir or tempfile.mkdtemp(prefix="bench-download-"))
    _make_site(tmp / "site", n)
    times: dict[str, list[float]] = {"img2dataset": [], "stage": []}
    counts: dict[str, list[int]] = {"img2dataset": [], "stage": []}
    # Sum of img2dataset's per-shard durations (inside the workers): the per-image cost without start-up.
    shard_s: dict[str, list[float]] = {"img2dataset": [], "stage": []}
    with LoopbackServer(tmp / "site") as srv:
        urls = [srv.url(f"img/{i:05d}.jpg") for i in range(n)]
        ids = [f"id{i % 100:03d}" for i in range(n)]
        # The same rows for both: a URL list for img2dataset, a mine-output manifest for the stage.
        pq.write_table(
            pa.table({"url": urls, "identity_id": ids, "source_id": [str(i) for i in range(n)]}), tmp / "urls.parquet"
        )
        man = tmp / "mine" / "manifests" / "bucket=000"
        man.mkdir(parents=True, exist_ok=True)
        rows = [
            {**{f.name: None for f in MANIFEST}, "identity_id": ids[i], "SAMPLE_ID": i, "URL": urls[i]}
            for i in range(n)
        ]
        rows.sort(key=lambda r: (r["identity_id"], r["SAMPLE_ID"]))
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST), man / "part-00000.parquet")
        pq.write_table(
            pa.Table.from_pylist(
                [
                    {
                        "identity_id": f"id{i:03d}",
                        "name": f"Person {i}",
                        "aliases": [],
                        "sex": None,
                        "source_line": i + 1,
                    }
                    for i in range(100)
                ],
                schema=IDENTITIES,
            ),
            tmp / "mine" / "identities.parquet",
        )
        for rep in range(reps):
            out = tmp / f"bare-{rep}"
            t = time.perf_counter()
            i2d_download(
                url_list=str(tmp / "urls.parquet"),
                input_format="parquet",
                url_col="url",
                save_additional_columns=["identity_id", "source_id"],
                output_format="webdataset",
                output_folder=str(out),
                processes_count=processes,
                thread_count=threads,
                number_sample_per_shard=shard_size,
                image_size=256,
                resize_mode="keep_ratio",
                encode_quality=95,
                encode_format="jpg",
                extract_exif=False,
                compute_hash="sha256",
                timeout=10,
                user_agent_token="img2dataset",
                disallowed_header_directives=OPT_OUT_DIRECTIVES,
                distributor="multiprocessing",
            )
            times["img2dataset"].append(time.perf_counter() - t)
            stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
            counts["img2dataset"].append(sum(s["successes"] for s in stats))
            shard_s["img2dataset"].append(sum(s["duration"] for s in stats))

            out = tmp / f"stage-{rep}"
            t = time.perf_counter()
            report = run_download(
                DownloadConfig(
                    out=str(out),
                    manifests=str(tmp / "mine"),
                    allowed_networks=["127.0.0.1/32"],
                    processes=processes,
                    threads=threads,
                    shard_size=shard_size,
                    image_size=256,
                    resize_mode="keep_ratio",
                    encode_quality=95,
                )
            )
            times["stage"].append(time.perf_counter() - t)
            counts["stage"].append(report["totals"]["downloaded"])
            shard_s["stage"].append(report["img2dataset"]["duration_s_sum"])
            print(
                f"rep {rep}: img2dataset {times['img2dataset'][-1]:.1f} s, stage {times['stage'][-1]:.1f} s", flush=True
            )
    ratios = [s / b for s, b in zip(times["stage"], times["img2dataset"])]
    result = {
        "n_urls": n,
        "reps": reps,
        "processes": processes,
        "threads": threads,
        "shard_size": shard_size,
        "wall_s": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "shard_s_sum": {k: [round(v, 2) for v in vs] for k, vs in shard_s.items()},
        "shard_ratio_median": round(
            statistics.median(s / b for s, b in zip(shard_s["stage"], shard_s["img2dataset"])), 3
        ),
        "downloaded": counts,
        "ratio_per_rep": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_of_medians": round(statistics.median(times["stage"]) / statistics.median(times["img2dataset"]), 3),
    }
    if workdir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def micro(n: int = 600, rounds: int = 5) -> dict:
    """Per-image cost, one thread, in this process: plain vs guarded urllib fetch from loopback, and img2dataset's
    Resizer alone vs wrapped in SafeResizer. Blocks alternate; the best block of each side is compared."""
    import urllib.request

    from img2dataset.resizer import Resizer

    from idia.download.image_checks import SafeResizer
    from idia.download.opener import build_guarded_opener
    from idia.download.url_guard import UrlGuard
    from idia.world.server import LoopbackServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-download-micro-"))
    _make_site(tmp, 50)
    plain = urllib.request.build_opener()
    guarded = build_guarded_opener(UrlGuard(allowed_networks=("127.0.0.1/32",)))
    res = Resizer(image_size=256, resize_mode="keep_ratio", resize_only_if_bigger=False)
    safe = SafeResizer(res)
    blobs = [(tmp / "img" / f"{i:05d}.jpg").read_bytes() for i in range(50)]
    best = {"fetch_plain": 1e9, "fetch_guarded": 1e9, "resize_plain": 1e9, "resize_safe": 1e9}
    with LoopbackServer(tmp) as srv:
        urls = [srv.url(f"img/{i % 50:05d}.jpg") for i in range(n)]
        for _ in range(rounds):
            for name, opener in (("fetch_plain", plain), ("fetch_guarded", guarded)):
                t = time.perf_counter()
                for u in urls:
                    with opener.open(u, timeout=10) as r:
                        r.read()
                best[name] = min(best[name], time.perf_counter() - t)
            for name, fn in (("resize_plain", res), ("resize_safe", safe)):
                t = time.perf_counter()
                for i in range(n):
                    out = fn(io.BytesIO(blobs[i % 50]), None)
                    assert out[-1] is None, out[-1]
                best[name] = min(best[name], time.perf_counter() - t)
    shutil.rmtree(tmp, ignore_errors=True)
    per = {k: round(v / n * 1e3, 3) for k, v in best.items()}
    return {
        "n": n,
        "ms_per_image": per,
        "fetch_ratio": round(best["fetch_guarded"] / best["fetch_plain"], 3),
        "resize_ratio": round(best["resize_safe"] / best["resize_plain"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="number of distinct images (URLs)")
    ap.add_argument("--reps", type=int, default=2, help="alternating repetitions of each side")
    ap.add_argument("--processes", type=int, default=2, help="download processes for both sides")
    ap.add_argument("--threads", type=int, default=16, help="threads per process for both sides")
    ap.add_argument("--shard-size", type=int, default=1000, help="images per shard for both sides")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    res = run(args.n, args.reps, args.processes, args.threads, args.shard_size)
    res["micro"] = micro()
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
