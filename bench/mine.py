"""Mining benchmark: the Spark job vs the floor (one process, no Spark), the study's pandas str.contains, Spark rlike.

Run: .venv/bin/python -m bench.mine [--rows-per-shard 250000 --shards 8] [--out bench-out/mine]
Prints a markdown section (also written to OUT/mine.md) for BENCHMARKS.md. Per-core rates: the floor and pandas use
one core; Spark runs local[2] and its rate is divided by 2. Slow baselines run on a subsample and are extrapolated
linearly in captions (and, for pandas, in names: it scans once per name); the table says where.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pyarrow.parquet as pq

LAION_CAPTIONS = 413_000_000
NAME_SIZES = (1_000, 10_000, 100_000)


def write_names(n: int, path: Path, seed: int) -> Path:
    import csv

    from idia.mine.sample import generate_names

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["identity_id", "name", "aliases"])
        for i, name, aliases, _s in generate_names(n - 11, seed):  # 11 hand-made + generated = n
            w.writerow([i, name, "|".join(aliases)])
    return path


def _job_batch() -> int:
    """The mining job's default rows per record batch (MineConfig.batch_size): floors read the batches the job does."""
    import dataclasses

    from idia.mine.config import MineConfig

    return next(f.default for f in dataclasses.fields(MineConfig) if f.name == "batch_size")


#: Rows per record batch of every floor here: the job's own default, so a floor and the job do the same batches.
BATCH = _job_batch()


def text_batches(files: list[Path], batch: int = BATCH, limit: int | None = None):
    """The TEXT column of the files in record batches of `batch` rows, stopping once `limit` rows were read."""
    seen = 0
    for f in files:
        for b in pq.ParquetFile(f).iter_batches(batch_size=batch, columns=["TEXT"], use_threads=False):
            yield b.column(0)
            seen += b.num_rows
            if limit is not None and seen >= limit:
                return


def floor(
    files: list[Path], names: Path, mode: str = "normalized", batch: int = BATCH, limit: int | None = None
) -> tuple[float, int, int]:
    """One process: pyarrow read + the same normalisation + the automaton (`Matcher.match`). Returns (seconds, rows,
    matches); `limit`: stop after that many captions."""
    from idia.mine.match import Matcher
    from idia.mine.names import read_names

    m = Matcher(read_names(names), mode)
    t0 = time.perf_counter()
    rows = hits = 0
    for col in text_batches(files, batch, limit):
        rows += len(col)
        hits += m.match(col).num_rows
    return time.perf_counter() - t0, rows, hits


def write_results(out: Path, stem: str, res: dict, render) -> None:
    """OUT/<stem>.json (every figure) and OUT/<stem>.md (the section for BENCHMARKS.md, also printed)."""
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str))
    md = render(res)
    (out / f"{stem}.md").write_text(md)
    print(md)


warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular expression")


def pandas_study(files: list[Path], names: Path, sample_rows: int) -> tuple[float, int, int]:
    """The study's method on a subsample: df.TEXT.str.contains(name) once per name (regex, case-sensitive)."""
    from idia.mine.names import read_names

    df = pq.read_table(files[0], columns=["TEXT"]).slice(0, sample_rows).to_pandas()
    nm = read_names(names).column("name").to_pylist()
    t0 = time.perf_counter()
    hits = 0
    for name in nm:
        hits += int(df["TEXT"].str.contains(name, na=False).sum())  # the study's call, regex and all
    return time.perf_counter() - t0, len(df), hits


def spark_rlike_subprocess(files: list[Path], names: Path, sample_rows: int) -> tuple[float, int, int]:
    """spark_rlike in a fresh process whose JVM keeps its full JIT (the job's local sessions run C1 only)."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.mine",
            "--rlike-only",
            json.dumps([[str(f) for f in files], str(names), sample_rows]),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return tuple(json.loads(r.stdout.strip().splitlines()[-1]))


def rlike_only(spec: str) -> int:
    from jobs.spark_session import get_spark

    files, names, sample_rows = json.loads(spec)
    spark = get_spark(
        "local[2]", app_name="idia-bench-rlike", conf={"spark.driver.extraJavaOptions": "-XX:+TieredCompilation"}
    )
    print(json.dumps(spark_rlike(spark, [Path(f) for f in files], Path(names), sample_rows)))
    spark.stop()
    return 0


def spark_rlike(spark, files: list[Path], names: Path, sample_rows: int) -> tuple[float, int, int]:
    """One big alternation of quoted names, Spark rlike (Java regex), on a subsample."""
    from pyspark.sql import functions as F

    from idia.mine.names import read_names

    nm = read_names(names).column("name").to_pylist()
    pattern = "(?:" + "|".join(r"\Q" + n.replace(r"\E", r"\E\\E\Q") + r"\E" for n in nm) + ")"
    df = spark.read.parquet(str(files[0])).select("TEXT").limit(sample_rows).cache()
    n = df.count()
    t0 = time.perf_counter()
    hits = df.filter(F.col("TEXT").rlike(pattern)).count()
    dt = time.perf_counter() - t0
    df.unpersist()
    return dt, n, hits


MEM_SCRIPT = r"""
import sys, json, tempfile
import pyarrow as pa, pyarrow.parquet as pq
from idia.mine.names import read_names
from idia.mine.plan import InputFile, plan_units
from idia.mine.scan import ScanContext, prepare_matchers, scan_unit
files, names, batch = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ids = read_names(names)
good = []
for fi, f in enumerate(files):
    md = pq.ParquetFile(f).metadata
    good.append(InputFile(f, fi, 0, 0, tuple(md.row_group(i).num_rows for i in range(md.num_row_groups))))
units = plan_units(good, 10**12)  # one task per whole shard: the worst case for the memory bound
ctx = ScanContext(matchers=prepare_matchers(ids, "normalized", 90.0, 16), matcher_key="k", columns="laion400m", batch_size=batch, files=tuple(files),
                  staging=tempfile.mkdtemp(prefix="idia-bench-mem-"), fingerprint="bench")
from idia.mine.scan import matcher_for
from idia.core.stats import Stats
matcher_for(ctx, Stats())  # the automaton is built before the baseline is read
base = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
rows = sum(scan_unit(ctx, u)["rows_read"] for u in units)
# VmHWM, not ru_maxrss: after fork + exec Linux keeps the parent's maxrss in ru_maxrss, VmHWM starts afresh.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "base_kb": base, "peak_kb": hwm,
                  "arrow_peak_mb": pa.default_memory_pool().max_memory() / 2**20}))
"""


def executor_memory(files: list[Path], names: Path, batch: int) -> dict:
    """Peak RSS of the executor code path (idia.mine.scan.scan_unit) in a fresh process over the given files."""
    r = subprocess.run(
        [sys.executable, "-c", MEM_SCRIPT, json.dumps([str(f) for f in files]), str(names), str(batch)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench-out/mine", help="work folder (shards, names, results)")
    ap.add_argument("--shards", type=int, default=8, help="shards to generate")
    ap.add_argument("--rows-per-shard", type=int, default=250_000, help="captions per shard (>= 2M in total)")
    ap.add_argument("--pandas-rows", type=int, default=20_000, help="subsample for the pandas baseline")
    ap.add_argument("--rlike-rows", type=int, default=50_000, help="subsample for rlike at 1k names (/10 at 10k)")
    ap.add_argument("--seed", type=int, default=1, help="data seed")
    ap.add_argument(
        "--repeats", type=int, default=5, help="back-to-back floor + job pairs per name count (medians kept)"
    )
    ap.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the job's Spark session, e.g. spark.driver.extraJavaOptions=-XX:+TieredCompilation",
    )
    ap.add_argument("--name-sizes", type=int, nargs="+", default=list(NAME_SIZES), help="names-list sizes to run")
    ap.add_argument(
        "--memory-only", action="store_true", help="only measure the executor's memory (data from an earlier run)"
    )
    ap.add_argument("--rlike-only", default=None, help=argparse.SUPPRESS)  # internal: the rlike baseline's own process
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if args.rlike_only:
        return rlike_only(args.rlike_only)
    if args.memory_only:  # only the executor memory measurement, on the data already generated in --out
        files = sorted((Path(args.out) / "data" / "shards").glob("*.parquet"))
        names = Path(args.out) / "names_1000.csv"
        mem = {b: executor_memory(files[:1], names, b) for b in (8192, 65536)}
        mem["all_files_8192"] = executor_memory(files, names, 8192)
        print(json.dumps(mem))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from idia.mine.sample import SampleConfig, generate

    data = out / "data"
    if not (data / "expected.json").exists():
        generate(
            SampleConfig(
                out=str(data),
                shards=args.shards,
                rows_per_shard=args.rows_per_shard,
                names=1000 - 11,
                caption_pool=50_000,
                expected=False,
                seed=args.seed,
            )
        )
    files = sorted((data / "shards").glob("*.parquet"))
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    names = {n: write_names(n, out / f"names_{n}.csv", args.seed) for n in sorted({1000, *args.name_sizes})}
    conf = dict(kv.split("=", 1) for kv in args.spark_conf)
    res: dict = {"captions": total, "files": len(files), "cores_spark": 2, "spark_conf": conf, "rows": {}}

    from idia.mine.config import MineConfig
    from jobs.mine import run_mine
    from jobs.spark_session import get_spark

    spark = get_spark("local[2]", app_name="idia-bench", conf=conf)
    run_mine(MineConfig(shards=[str(files[0])], names=str(names[1000]), out=str(out / "warm"), force=True), spark=spark)
    for n in args.name_sizes:
        r: dict = {}
        # The machine is shared: floor and job run back to back, --repeats times.
        fl, jb = [], []
        for _rep in range(args.repeats):
            fl.append(floor(files, names[n]))
            t0 = time.perf_counter()
            st = run_mine(
                MineConfig(shards=[str(f) for f in files], names=str(names[n]), out=str(out / f"job_{n}"), force=True),
                spark=spark,
            )
            jb.append((time.perf_counter() - t0, st))
        # Each floor run and the job run right after it saw the same machine: their ratio is the figure kept
        # (median over the pairs); rates are medians too.
        rows, hits = fl[0][1], fl[0][2]
        st = jb[0][1]
        for (_f, _r, h), (_j, s) in zip(fl, jb):
            assert s["totals"]["match_pairs"] == h == hits, (s["totals"]["match_pairs"], h, hits)
        ratios = [f[0] / (2 * j[0]) for f, j in zip(fl, jb)]
        r["floor"] = {
            "s": statistics.median(f[0] for f in fl),
            "rows": rows,
            "matches": hits,
            "all_s": [f[0] for f in fl],
        }
        r["floor"]["per_core"] = rows / r["floor"]["s"]
        best = min(jb, key=lambda x: x[0])[1]
        r["job"] = {
            "s": statistics.median(j[0] for j in jb),
            "rows": st["totals"]["rows_read"],
            "task_s": best["totals"]["task_ms"] / 1000,
            "all_s": [j[0] for j in jb],
            "stage_s": best["stage_s"],
            "best_s": min(j[0] for j in jb),
            "tasks": st["work_units"],
        }
        r["job"]["per_core"] = rows / r["job"]["s"] / 2
        r["ratio"] = {"median": statistics.median(ratios), "all": ratios}
        if n == 1000:
            dt, rows, hits = pandas_study(files, names[n], args.pandas_rows)
            r["pandas"] = {"s": dt, "rows": rows, "per_core": rows / dt, "note": f"{rows} captions subsample"}
        if n <= 10_000:
            sub = args.rlike_rows if n == 1000 else args.rlike_rows // 10
            dt, rows, hits = spark_rlike_subprocess(files, names[n], sub)
            r["rlike"] = {"s": dt, "rows": rows, "per_core": rows / dt / 2, "note": f"{rows} captions subsample"}
        res["rows"][n] = r
        print(n, json.dumps(r), flush=True)
    spark.stop()
    mem = {b: executor_memory(files[:1], names[1000], b) for b in (8192, 65536)}
    mem["all_files_8192"] = executor_memory(files, names[1000], 8192)
    res["memory"] = mem
    write_results(out, "mine", res, render)
    return 0


def render(res: dict) -> str:
    R = res["rows"]
    base = R.get(1000) or R.get("1000")  # the 1k-names row carries the pandas and rlike baselines
    first = next(iter(R.values()))
    lines = [
        f"Command: `.venv/bin/python -m bench.mine` ({res['captions']:,} generated captions in {res['files']} shards, "
        "`normalized` mode; Spark `local[2]`, per-core = rate / 2; floor and pandas on one core; the job's session "
        f"with the project's local defaults{' plus ' + str(res.get('spark_conf')) if res.get('spark_conf') else ''}, "
        "rlike in its own session with the JVM's full JIT).",
        "",
        f"Per-core rates are medians of {len(first['ratio']['all'])} runs; job / floor is the median of the ratios of "
        "back-to-back pairs (floor run, then job run), with their range.",
        "",
        "| names | floor (1 proc) capt/s/core | Spark job capt/s/core | job / floor (range) | pandas str.contains capt/s/core | Spark rlike capt/s/core | job / pandas |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    # seconds per caption per name, from the 1k-names run (absent when --name-sizes leaves 1,000 out)
    pandas_per_name = base["pandas"]["s"] / base["pandas"]["rows"] / 1000 if base else None
    for n, r in R.items():
        fl, jb = r["floor"]["per_core"], r["job"]["per_core"]
        rl = f"{r['rlike']['per_core']:,.0f}" if "rlike" in r else "not run (regex too large)"
        if pandas_per_name:
            pd_rate = 1.0 / (pandas_per_name * int(n))  # extrapolated beyond 1k names: one scan per name
            pd_cells = f"{pd_rate:,.0f}{'' if int(n) == 1000 else ' (extrap.)'} | {rl} | {jb / pd_rate:,.0f}x"
        else:
            pd_cells = f"not run (needs the 1k-names run) | {rl} | -"
        lines.append(
            f"| {int(n):,} | {fl:,.0f} | {jb:,.0f} | {r['ratio']['median']:.2f} ({min(r['ratio']['all']):.2f}-"
            f"{max(r['ratio']['all']):.2f}) | {pd_cells} |"
        )
    lines.append("")
    if 100000 in R and base:
        lines.append(
            f"- 100k names vs 1k names (job time per caption): {base['job']['per_core'] / R[100000]['job']['per_core']:.2f}x; "
            f"floor: {base['floor']['per_core'] / R[100000]['floor']['per_core']:.2f}x."
        )
    if base:
        lines.append(
            f"- pandas measured on {base['pandas']['rows']:,} captions x 1,000 names; rlike on {base['rlike']['rows']:,} "
            "(1k names)" + (f" and {R[10000]['rlike']['rows']:,} (10k names)" if 10000 in R else "") + " captions."
        )
    m = res["memory"]
    lines.append(
        f"- Executor code path (jobs.mine.scan_unit) in a fresh process, peak Arrow memory (pool high-water mark) / "
        f"peak RSS: one {m[8192]['rows']:,}-row shard, batch 8192: {m[8192]['arrow_peak_mb']:.0f} MiB / "
        f"{m[8192]['peak_kb'] / 1024:.0f} MiB; same shard, batch 65536: {m[65536]['arrow_peak_mb']:.0f} MiB / "
        f"{m[65536]['peak_kb'] / 1024:.0f} MiB; all {m['all_files_8192']['rows']:,} rows (8 shards), batch 8192: "
        f"{m['all_files_8192']['arrow_peak_mb']:.0f} MiB / {m['all_files_8192']['peak_kb'] / 1024:.0f} MiB."
    )
    lines.append(
        "- Where the job's time goes (fastest job run): time inside the Python scan tasks (read + normalise + match + stage,"
        " summed over tasks), the scan and merge stages' wall time, the whole job's wall time on 2 cores: "
        + "; ".join(
            f"{int(n):,} names: {r['job'].get('tasks', '?')} scan tasks, {r['job']['task_s']:.1f} s in tasks, scan "
            f"{r['job'].get('stage_s', {}).get('scan_s', float('nan')):.1f} s + merge "
            f"{r['job'].get('stage_s', {}).get('merge_s', float('nan')):.1f} s, {r['job'].get('best_s', r['job']['s']):.1f} s wall"
            for n, r in R.items()
        )
        + "."
    )
    lines.append(
        "- Pair ratios in run order: "
        + "; ".join(f"{int(n):,} names: " + ", ".join(f"{x:.2f}" for x in r["ratio"]["all"]) for n, r in R.items())
        + "."
    )
    lines.append(
        "- Per step in the fastest job run (`stage_s` in stats.json): "
        + "; ".join(
            f"{int(n):,} names: "
            + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in r["job"].get("stage_s", {}).items())
            for n, r in R.items()
        )
        + "."
    )
    lines.append("")
    lines.append(
        f"Projection for {LAION_CAPTIONS / 1e6:.0f}M LAION-400M captions at the measured job rate (linear scaling, I/O not limiting):"
    )
    lines.append("")
    lines.append("| names | 1 core | 16 cores | 256 cores |")
    lines.append("|---:|---:|---:|---:|")
    for n, r in R.items():
        rate = r["job"]["per_core"]
        cells = [fmt_dur(LAION_CAPTIONS / (rate * c)) for c in (1, 16, 256)]
        lines.append(f"| {int(n):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt_dur(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.0f} s"


if __name__ == "__main__":
    sys.exit(main())
