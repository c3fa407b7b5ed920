"""The mining job's fixed costs, each measured side by side with what it replaced (issue 17, session 26).

Run: .venv/bin/python -m bench.mine_fixed_costs [--out bench-out/mine-fixed] [--names-size 100000]
(uses bench-out/mine-scale's corpus and names when they are there; otherwise makes 2 shards of its own).
Prints a markdown section (also OUT/mine_fixed_costs.md) for BENCHMARKS.md.

- Spark task: no-op tasks on local[2] in fresh processes, the JVM talking to its Python workers over TCP (Nagle's
  delay on the second of two small writes) or a Unix domain socket; rounds interleaved.
- gc.collect() in a process holding what a mining worker holds (pyarrow, pandas, the job's modules, a matcher):
  PySpark's daemon runs one after every task; as it is, and after gc.freeze().
- Reading a shard's seven manifest columns: through fsspec's local file (a Python object pyarrow calls per read) or
  Arrow's own file (pa.OSFile); alternated rounds, each kind first in half of them.
- A worker's matcher at the names size: built from the identities table (before), or unpickled as the driver
  prepared it plus the automaton (now); `import fsspec` in a fresh interpreter (each worker paid it before).
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.mine import write_names, write_results

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["SAMPLE_ID", "URL", "TEXT", "WIDTH", "HEIGHT", "NSFW", "similarity"]

TASKS_SCRIPT = r"""
import json, sys, time
from jobs.spark_session import get_spark, stop_spark
conf = json.loads(sys.argv[1])
s = get_spark("local[2]", sql=False, conf=conf)
sc = s.sparkContext
sc.parallelize(range(2), 2).map(lambda x: x).collect()  # the daemon and both workers up
out = []
for _ in range(2):
    t = time.perf_counter(); sc.parallelize(range(60), 60).map(lambda x: x).collect(); out.append(time.perf_counter() - t)
stop_spark(s)
print(json.dumps({"per_task_per_core_ms": min(out) / 60 * 2 * 1000}))
"""


def task_cost(uds: bool) -> float:
    conf = {"spark.python.unix.domain.socket.enabled": "true" if uds else "false"}
    r = subprocess.run(
        [sys.executable, "-c", TASKS_SCRIPT, json.dumps(conf)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(r.stdout.strip().splitlines()[-1])["per_task_per_core_ms"]


GC_SCRIPT = r"""
import gc, json, sys, time
import pandas, pyarrow, pyspark.worker, jobs.mine
from idia.mine.names import read_names
from idia.mine.scan import prepare_matchers
m = prepare_matchers(read_names(sys.argv[1]), "normalized", 90.0, 64)
m.main.automaton
def best():
    b = 9.0
    for _ in range(5):
        t = time.perf_counter(); gc.collect(); b = min(b, time.perf_counter() - t)
    return b * 1000
before = best()
gc.freeze()
print(json.dumps({"gc_ms": before, "gc_frozen_ms": best()}))
"""

FSSPEC_SCRIPT = "import time; t = time.perf_counter(); import fsspec; print(time.perf_counter() - t)"


def read_columns(shard: Path, opener) -> float:
    import pyarrow.parquet as pq

    t = time.perf_counter()
    with opener() as fh:
        pf = pq.ParquetFile(fh, read_dictionary=["NSFW"])
        for _ in pf.iter_batches(batch_size=65536, columns=COLUMNS, use_threads=False):
            pass
    return time.perf_counter() - t


def matcher_costs(names: Path) -> dict:
    from idia.mine.lists import bucket_array
    from idia.mine.match import Matcher
    from idia.mine.names import read_names
    from idia.mine.scan import prepare_matchers

    ids = read_names(names)
    Matcher(ids)  # pandas and the rest imported before either is timed
    out: dict = {"built": [], "shipped": []}
    blob = pickle.dumps(prepare_matchers(ids, "normalized", 90.0, 64))
    for _ in range(3):
        t = time.perf_counter()
        Matcher(ids), bucket_array(ids.column("identity_id").to_pylist(), 64)
        out["built"].append(time.perf_counter() - t)
        t = time.perf_counter()
        pickle.loads(blob).main.automaton  # noqa: B018
        out["shipped"].append(time.perf_counter() - t)
    out["pickle_mb"] = len(blob) / 2**20
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out/mine-fixed", help="work folder (results; shards if none exist)")
    ap.add_argument("--corpus", default="bench-out/mine-scale", help="bench.mine_scale's folder, reused if there")
    ap.add_argument("--names-size", type=int, default=100_000, help="names for the matcher and gc figures")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the Spark task figure")
    ap.add_argument("--read-rounds", type=int, default=10, help="alternated rounds of the shard read figure")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shards = sorted((Path(args.corpus) / "data" / "shards").glob("*.parquet"))
    if not shards:
        from idia.mine.sample import SampleConfig, generate

        generate(SampleConfig(out=str(out / "data"), shards=2, rows_per_shard=1_000_000, names=989, expected=False))
        shards = sorted((out / "data" / "shards").glob("*.parquet"))
    names = Path(args.corpus) / f"names_{args.names_size}.csv"
    if not names.exists():
        names = write_names(args.names_size, out / f"names_{args.names_size}.csv", 1)
    res: dict = {"names": args.names_size, "tasks": {"tcp": [], "uds": []}, "read": {"fsspec": [], "arrow": []}}
    for _ in range(args.rounds):
        for kind in ("tcp", "uds"):
            res["tasks"][kind].append(task_cost(kind == "uds"))
    print("tasks", json.dumps(res["tasks"]), flush=True)
    r = subprocess.run(
        [sys.executable, "-c", GC_SCRIPT, str(names)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    res["gc"] = json.loads(r.stdout.strip().splitlines()[-1])
    print("gc", json.dumps(res["gc"]), flush=True)
    import fsspec.core
    import pyarrow as pa

    shard = shards[min(1, len(shards) - 1)]
    read_columns(shard, lambda: pa.OSFile(str(shard)))  # in the page cache before either is timed
    for i in range(args.read_rounds):  # alternated, each kind first in half the rounds
        for kind in ("fsspec", "arrow") if i % 2 == 0 else ("arrow", "fsspec"):
            if kind == "fsspec":
                res["read"][kind].append(
                    read_columns(shard, lambda: fsspec.core.url_to_fs(str(shard))[0].open(str(shard)))
                )
            else:
                res["read"][kind].append(read_columns(shard, lambda: pa.OSFile(str(shard))))
    res["rows_per_shard"] = __import__("pyarrow.parquet").parquet.ParquetFile(shard).metadata.num_rows
    print("read", json.dumps(res["read"]), flush=True)
    res["fsspec_import_s"] = [
        float(subprocess.run([sys.executable, "-c", FSSPEC_SCRIPT], capture_output=True, text=True, check=True).stdout)
        for _ in range(3)
    ]
    res["matcher"] = matcher_costs(names)
    print("matcher", json.dumps(res["matcher"]), flush=True)
    write_results(out, "mine_fixed_costs", res, render)
    return 0


def render(res: dict) -> str:
    t, rd, m = res["tasks"], res["read"], res["matcher"]
    per_m = 1e6 / res["rows_per_shard"]
    rng = lambda xs, f="{:.1f}": f"{f.format(min(xs))}-{f.format(max(xs))}"  # noqa: E731
    return (
        "\n".join(
            [
                "| what | before | now | now / before |",
                "|---|---:|---:|---:|",
                f"| a no-op Spark task on local[2], ms per core (TCP / Unix domain socket, {len(t['tcp'])} rounds) | "
                f"{rng(t['tcp'])} | {rng(t['uds'])} | {min(t['uds']) / min(t['tcp']):.2f}x |",
                f"| gc.collect() after a task, {res['names']:,}-name matcher loaded, ms (as is / after gc.freeze) | "
                f"{res['gc']['gc_ms']:.1f} | {res['gc']['gc_frozen_ms']:.2f} | {res['gc']['gc_frozen_ms'] / res['gc']['gc_ms']:.2f}x |",
                f"| a shard's 7 columns read, s per 1M captions (fsspec's local file / pa.OSFile; best of "
                f"{len(rd['arrow'])}, and the median of the paired ratios) | {min(rd['fsspec']) * per_m:.3f} | "
                f"{min(rd['arrow']) * per_m:.3f} | {min(rd['arrow']) / min(rd['fsspec']):.2f}x (median "
                f"{statistics.median(a / f for a, f in zip(rd['arrow'], rd['fsspec'])):.2f}x) |",
                f"| `import fsspec` in a fresh interpreter, s (each worker's first task paid it; now local runs skip it) | "
                f"{rng(res['fsspec_import_s'], '{:.2f}')} | 0 | - |",
                f"| a worker's matcher at {res['names']:,} names, s (built from the table / unpickled + automaton; "
                f"{m['pickle_mb']:.1f} MiB shipped) | {rng(m['built'], '{:.2f}')} | {rng(m['shipped'], '{:.2f}')} | "
                f"{min(m['shipped']) / min(m['built']):.2f}x |",
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
