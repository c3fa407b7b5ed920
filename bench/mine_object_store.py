"""Mining to local disk vs to an S3 endpoint (moto's server on 127.0.0.1), side by side on the same shards.

Run: .venv/bin/python -m bench.mine_object_store [--rows-per-shard 100000 --shards 4]
What it shows: the cost of the object-store commit path (staged units uploaded whole, merge reading them through
fsspec, buckets copied into place) against local files, with the S3 server on the same 2-core machine (so the
server's own CPU is in the figure: an upper bound of the overhead, not a network measurement).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows-per-shard", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--out", default="bench-out/mine_object_store")
    a = ap.parse_args()
    from idia.mine.config import MineConfig
    from idia.mine.sample import SampleConfig, generate
    from jobs.mine import run_mine
    from jobs.spark_session import get_spark
    from tests.support.s3_server import S3Server

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sample = out / "sample"
    if not (sample / "expected.json").exists():
        generate(
            SampleConfig(
                out=str(sample),
                shards=a.shards,
                rows_per_shard=a.rows_per_shard,
                names=1000,
                expected=False,
                caption_pool=50_000,
                seed=3,
            )
        )
    server = S3Server(out).start()
    try:
        fs = server.fs()
        for f in sorted((sample / "shards").glob("*.parquet")):
            fs.put_file(str(f), f"{server.bucket}/shards/{f.name}")
        spark = get_spark("local[2]", app_name="bench-object-store")
        rows = a.rows_per_shard * a.shards
        results = {}
        for rep in range(2):
            for label, shards, dest, opts in (
                ("local -> local", str(sample / "shards"), str(out / f"local-{rep}"), {}),
                ("s3 -> s3", server.url("shards"), server.url(f"run-{rep}"), server.options),
            ):
                cfg = MineConfig(
                    shards=[shards],
                    names=str(sample / "names.csv"),
                    out=dest,
                    buckets=16,
                    storage_options=opts,
                    force=True,
                )
                t0 = time.perf_counter()
                stats = run_mine(cfg, spark=spark)
                results.setdefault(label, []).append((time.perf_counter() - t0, stats["stage_s"]))
        spark.stop()
    finally:
        server.stop()
    base = min(t for t, _ in results["local -> local"])
    print(f"{rows:,} captions, 1,000 names, local[2], best of 2 each, interleaved:\n")
    print("| run | wall s | scan s | merge s | outputs s | vs local |\n|---|---:|---:|---:|---:|---:|")
    for label, runs in results.items():
        t, st = min(runs, key=lambda r: r[0])
        print(
            f"| {label} | {t:.1f} | {st['scan_s']:.1f} | {st['merge_s']:.1f} | {st['outputs_s']:.1f} | {t / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
