"""Mining at scale: the matching floors side by side, and `idia mine` end to end on a 40M-caption LAION-shaped corpus.

Run: .venv/bin/python -m bench.mine_scale [--captions 40000000] [--floor-captions 4000000] [--out bench-out/mine-scale]
(`pip install polars==2.1.0` first for the two Polars columns; without it they are left out).
Prints a markdown section (also OUT/mine_scale.md) for BENCHMARKS.md.

- Floors, one process on one core, on the corpus's first --floor-captions captions, in --floor-rounds rounds of all of
  them back to back (each figure the median over rounds, each ratio the median of the ratios within a round):
  `arrow` = the matcher before the byte-level path (pyarrow read + Arrow normalisation + padding + one Aho-Corasick
  pass), `bytes` = today's matcher (`Matcher.match`, same semantics), `fuzzy` = fuzzy mode at threshold 90, and
  Polars' `str.extract_many` over the raw captions (case-insensitive substring search) and after lower-casing and
  folding separator runs (whole tokens, no accent folding).
- The job: `idia mine` as a user runs it (a fresh process, local[2], its own Spark), on the whole corpus at each
  names size; wall time, the stage's own timings, and the Python workers' peak memory (sampled every 0.2 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import median

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.mine import BATCH, LAION_CAPTIONS, floor, fmt_dur, text_batches, write_names, write_results

ROWS_PER_SHARD = 1_000_000


def corpus(out: Path, captions: int, seed: int, mention_rate: float) -> list[Path]:
    from idia.mine.sample import SampleConfig, generate

    data = out / "data"
    if not (data / "expected.json").exists():
        generate(
            SampleConfig(
                out=str(data),
                shards=max(1, captions // ROWS_PER_SHARD),
                rows_per_shard=min(captions, ROWS_PER_SHARD),
                names=1000 - 11,
                caption_pool=400_000,
                expected=False,
                seed=seed,
                mention_rate=mention_rate,
            )
        )
    return sorted((data / "shards").glob("*.parquet"))


def corpus_profile(path: Path) -> dict:
    """Caption lengths (UTF-8 bytes) and the share of captions with a non-ASCII character, from one shard."""
    t = pq.read_table(path, columns=["TEXT"]).column(0).combine_chunks()
    valid = t.filter(pc.is_valid(t))
    lens = np.asarray(pc.binary_length(valid))
    return {
        "rows": len(t),
        "bytes_mean": float(lens.mean()),
        "bytes_median": float(np.median(lens)),
        "bytes_p95": float(np.percentile(lens, 95)),
        "bytes_p99": float(np.percentile(lens, 99)),
        "non_ascii_share": 1 - float(np.asarray(pc.string_is_ascii(valid)).mean()),
        "null_share": 1 - len(valid) / len(t),
    }


def floor_arrow(files, names, limit) -> tuple[float, int, int]:
    """The matcher's hot path before the byte-level normalisation: Arrow kernels, padding by a per-row join."""
    from idia.mine.match import Matcher
    from idia.mine.names import read_names
    from idia.mine.normalize import normalize_array, string_buffers

    m = Matcher(read_names(names), "normalized")
    t0 = time.perf_counter()
    rows = hits = 0
    for col in text_batches(files, limit=limit):
        hay = normalize_array(col, pad=True)
        offsets, data = string_buffers(hay)
        found = m.automaton.find_matches_as_indexes(data, overlapping=True)
        if found:
            arr = np.asarray(found, dtype=np.int64)
            hits += len(np.searchsorted(offsets, arr[:, 1], side="right"))
        rows += len(col)
    return time.perf_counter() - t0, rows, hits


def floor_polars(files, names, limit, fold: bool) -> tuple[float, int, int] | None:
    try:
        import polars as pl
    except ImportError:
        return None
    from idia.mine.names import read_names

    pats = [n.lower() for n in read_names(names).column("name").to_pylist()]
    t0 = time.perf_counter()
    rows = hits = 0
    for col in text_batches(files, limit=limit):
        s = pl.from_arrow(col)
        if fold:
            s = " " + s.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ") + " "
            found = s.str.extract_many([f" {p} " for p in pats], overlapping=True)
        else:
            found = s.str.extract_many(pats, ascii_case_insensitive=True, overlapping=True)
        hits += int(found.list.len().sum() or 0)
        rows += len(col)
    return time.perf_counter() - t0, rows, hits


def floor_pair(files, names, limit) -> dict:
    """The new floor in two processes at once, each on its own `limit` captions (shards apart): what one core gives
    when the other is busy too, the ceiling of a two-worker job per core on this machine (shared caches, memory
    bandwidth, the hypervisor's scheduling)."""
    per = max(1, limit // ROWS_PER_SHARD)
    halves = [files[:per], files[per : 2 * per]]
    code = (
        "import json, sys; from pathlib import Path; from bench.mine import floor; "
        "a = json.loads(sys.argv[1]); r = floor([Path(f) for f in a[0]], Path(a[1]), limit=a[2]); print(json.dumps(r))"
    )
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, json.dumps([[str(f) for f in h], str(names), limit])],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        for h in halves
    ]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"runs": runs, "per_core": sum(r[1] / r[0] for r in runs) / len(runs)}


def floor_by_script(files, names, limit) -> dict:
    """Today's matcher on the ASCII captions alone and on the others alone (in the job's batches): the cost of a
    caption by kind, so the rate can be projected for any non-ASCII share."""
    from idia.mine.match import Matcher
    from idia.mine.names import read_names

    m = Matcher(read_names(names), "normalized")
    cols = list(text_batches(files, limit=limit))
    texts = pa.concat_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in cols])
    texts = texts.filter(pc.is_valid(texts))
    ascii_rows = np.asarray(pc.string_is_ascii(texts))
    out = {}
    for kind, mask in (("ascii", ascii_rows), ("non_ascii", ~ascii_rows)):
        part = texts.filter(pa.array(mask))
        chunks = [part.slice(i, BATCH) for i in range(0, len(part), BATCH)]
        t0 = time.perf_counter()
        for c in chunks:
            m.match(c)
        dt = time.perf_counter() - t0
        out[kind] = {"rows": len(part), "s": dt, "per_core": len(part) / dt if dt else float("nan")}
    return out


def run_job(files_dir: Path, names: Path, out: Path) -> dict:
    """`idia mine` in a fresh process; its wall time, stats and the Spark Python workers' peak RSS."""
    import psutil

    cmd = [sys.executable, "-m", "pipelines.cli", "mine", "--shards", str(files_dir), "--names", str(names)]
    cmd += ["--out", str(out), "--master", "local[2]", "--force"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"worker_rss": 0, "driver_rss": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                root = psutil.Process(proc.pid)
                peak["driver_rss"] = max(peak["driver_rss"], root.memory_info().rss)
                for p in root.children(recursive=True):
                    try:
                        if "pyspark" in " ".join(p.cmdline()) or p.name().startswith("python"):
                            peak["worker_rss"] = max(peak["worker_rss"], p.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    proc.wait()
    exit_s = time.perf_counter() - t0  # what a terminal waits for
    reader.join()
    # wall_s: until stderr closes, i.e. also the driver JVM and PySpark's daemon finishing their own exit after the
    # command's (~0.3 s here): what a caller that captures the output waits for; the ratios use it.
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode:
        raise RuntimeError(f"idia mine failed ({proc.returncode}): {err[0][-2000:]}")
    stats = json.loads((out / "stats.json").read_text())
    return {"wall_s": wall, "exit_s": exit_s, "stats": stats, **peak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out/mine-scale", help="work folder (corpus, names, job outputs, results)")
    ap.add_argument("--captions", type=int, default=40_000_000, help="corpus size (1M captions per shard)")
    ap.add_argument("--floor-captions", type=int, default=4_000_000, help="captions the one-process floors scan")
    ap.add_argument("--fuzzy-captions", type=int, default=1_000_000, help="captions fuzzy mode's floor scans")
    ap.add_argument("--name-sizes", type=int, nargs="+", default=[1_000, 100_000], help="names-list sizes for the job")
    ap.add_argument("--seed", type=int, default=1, help="data seed")
    ap.add_argument("--floor-rounds", type=int, default=3, help="rounds of the one-process floors (medians reported)")
    ap.add_argument(
        "--mention-rate",
        type=float,
        default=0.005,
        help="share of captions naming someone from the list (default 0.005: the study's 548 names matched 1,388,667 "
        "of 413M LAION-400M captions, 0.34%%, in its published counts; the test samples use 0.15)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = corpus(out, args.captions, args.seed, args.mention_rate)
    gen_s = time.perf_counter() - t0
    names = {n: write_names(n, out / f"names_{n}.csv", args.seed) for n in sorted({1000, *args.name_sizes})}
    res: dict = {
        "captions": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
        "corpus_bytes": sum(f.stat().st_size for f in files),
        "generate_s": gen_s,
        "profile": corpus_profile(files[0]),
        "floors": {},
        "jobs": {},
    }
    print(json.dumps({k: res[k] for k in ("captions", "corpus_bytes", "profile")}), flush=True)
    lim = args.floor_captions
    floors = {
        "arrow": lambda: floor_arrow(files, names[1000], lim),
        "bytes": lambda: floor(files, names[1000], limit=lim),
        "polars_substring": lambda: floor_polars(files, names[1000], lim, fold=False),
        "polars_folded": lambda: floor_polars(files, names[1000], lim, fold=True),
        # The new floor at each other names size of the jobs: each job is compared with the floor of its own names.
        **{f"bytes_{n}": (lambda n=n: floor(files, names[n], limit=lim)) for n in args.name_sizes if n != 1000},
        "fuzzy": lambda: floor(files, names[1000], "fuzzy", limit=args.fuzzy_captions),
        "bytes_fuzzy_sample": lambda: floor(files, names[1000], limit=args.fuzzy_captions),
    }
    # The floors in rounds, each round all of them back to back: on a shared machine whose speed drifts over minutes,
    # each figure is the median over rounds and each ratio the median of the ratios within a round.
    rounds: list[dict] = []
    for i in range(args.floor_rounds):
        rnd = {}
        for name, fn in floors.items():
            r = fn()
            if r is not None:
                rnd[name] = {"s": r[0], "rows": r[1], "matches": r[2], "per_core": r[1] / r[0]}
                print(f"round {i + 1}", name, json.dumps(rnd[name]), flush=True)
        rounds.append(rnd)
    res["floor_rounds"] = rounds
    for name in rounds[0]:
        runs = [rnd[name] for rnd in rounds]
        res["floors"][name] = {
            **runs[0],
            "s": median(r["s"] for r in runs),
            "per_core": median(r["per_core"] for r in runs),
        }
    res["vs_arrow"] = {n: median(rnd[n]["per_core"] / rnd["arrow"]["per_core"] for rnd in rounds) for n in rounds[0]}
    if "fuzzy" in rounds[0]:
        res["fuzzy_vs_normalized"] = median(rnd["fuzzy"]["s"] / rnd["bytes_fuzzy_sample"]["s"] for rnd in rounds)
    if len(files) * ROWS_PER_SHARD >= 2 * lim:
        res["floor_pair"] = floor_pair(files, names[1000], lim)
        print("floor_pair", json.dumps(res["floor_pair"]), flush=True)
        for n in (n for n in args.name_sizes if n != 1000):  # two automata of n names sharing the caches
            res[f"floor_pair_{n}"] = floor_pair(files, names[n], lim)
            print(f"floor_pair_{n}", json.dumps(res[f"floor_pair_{n}"]), flush=True)
    res["by_script"] = floor_by_script(files, names[1000], lim)
    print("by_script", json.dumps(res["by_script"]), flush=True)
    for n in args.name_sizes:
        # The floor at the job's names right before and right after it: the shared machine's load drifts over the
        # minute the floors above take, so each job is also compared with the mean of its two neighbouring floors.
        before = floor(files, names[n], limit=lim)
        job = run_job(files[0].parent, names[n], out / f"job_{n}")
        after = floor(files, names[n], limit=lim)
        job["floor_around"] = [r[1] / r[0] for r in (before, after)]
        res["jobs"][n] = job
        print(n, json.dumps({k: v for k, v in job.items() if k != "stats"} | {"stage_s": job["stats"]["stage_s"]}))
    write_results(out, "mine_scale", res, render)
    return 0


def render(res: dict) -> str:
    f = res["floors"]
    base = f["arrow"]["per_core"]
    lines = [
        f"Corpus: {res['captions']:,} captions, {res['corpus_bytes'] / 1e9:.2f} GB of parquet; one shard's profile: "
        f"mean {res['profile']['bytes_mean']:.0f} B, median {res['profile']['bytes_median']:.0f} B, p95 "
        f"{res['profile']['bytes_p95']:.0f} B, p99 {res['profile']['bytes_p99']:.0f} B per caption; "
        f"{res['profile']['non_ascii_share']:.1%} of captions hold a non-ASCII character; "
        f"{res['profile']['null_share']:.1%} null.",
        "",
        "| floor (1 process, 1 core, 1,000 names; medians of the rounds) | captions | captions/s "
        "| vs the Arrow floor (median of the rounds' ratios) |",
        "|---|---:|---:|---:|",
    ]
    label = {
        "arrow": "before: Arrow normalisation + automaton",
        "bytes": "**now: byte-level normalisation + automaton** (`Matcher.match`)",
        "polars_substring": "Polars `str.extract_many`, case-insensitive substrings of the raw text",
        "polars_folded": "Polars lower-case + separator folding, then `extract_many` (no accent folding)",
        "bytes_fuzzy_sample": "now, normalized, on fuzzy's sample",
        "fuzzy": "now, fuzzy (threshold 90), same sample",
    }
    for k, v in f.items():
        what = label.get(k) or f"now, at {int(k.split('_')[1]):,} names (`Matcher.match`)"
        ratio = res.get("vs_arrow", {}).get(k, v["per_core"] / base)
        lines.append(f"| {what} | {v['rows']:,} | {v['per_core']:,.0f} | {ratio:.2f}x |")
    if "fuzzy" in f:
        lines.append(
            f"\nFuzzy / normalized time on the same {f['fuzzy']['rows']:,} captions: "
            f"{res.get('fuzzy_vs_normalized', f['fuzzy']['s'] / f['bytes_fuzzy_sample']['s']):.2f}x"
            + (
                f" (median of {len(res['floor_rounds'])} rounds: "
                + ", ".join(f"{r['fuzzy']['s'] / r['bytes_fuzzy_sample']['s']:.2f}x" for r in res["floor_rounds"])
                + ")."
                if res.get("floor_rounds")
                else "."
            )
        )
    if "floor_pair" in res:
        pair = res["floor_pair"]["per_core"]
        lines.append(
            f"\nThe new floor in two processes at once (each on its own captions): {pair:,.0f} captions/s per process, "
            f"{pair / f['bytes']['per_core']:.2f}x of the floor alone: the most a two-worker job can reach per core here."
        )
    if "by_script" in res:
        a, u = res["by_script"]["ascii"]["per_core"], res["by_script"]["non_ascii"]["per_core"]
        lines += [
            "",
            f"By kind of caption (the floor's captions, matched apart): ASCII {a:,.0f} captions/s, non-ASCII {u:,.0f} "
            "captions/s. Projected floor for other non-ASCII shares: "
            + ", ".join(f"{p:.0%}: {1 / ((1 - p) / a + p / u):,.0f}" for p in (0.0, 0.05, 0.1, 0.2, 0.5))
            + " captions/s.",
        ]
    lines += [
        "",
        "| names | job wall (s) | first scan task at (s) | scan (s) | merge (s) | captions/s/core, end to end "
        "| vs the new floor at its names | vs the 1,000-name floor | vs the floors just before and after it "
        "| vs two floors at once (at its names) | worker peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, j in res["jobs"].items():
        st = j["stats"]["stage_s"]
        per_core = res["captions"] / j["wall_s"] / 2
        own = f.get(f"bytes_{n}", f["bytes"])["per_core"]  # no bytes_1000: the 1,000-name floor is "bytes"
        lines.append(
            f"| {int(n):,} | {j['wall_s']:.1f} | {st.get('first_task_s', float('nan')):.1f} | {st['scan_s']:.1f} | "
            f"{st['merge_s']:.1f} | {per_core:,.0f} | {per_core / own:.2f}x | {per_core / f['bytes']['per_core']:.2f}x | "
            + (
                f"{per_core / (sum(j['floor_around']) / 2):.2f}x ({', '.join(f'{x:,.0f}' for x in j['floor_around'])}) | "
                if j.get("floor_around")
                else "- | "
            )
            + (
                f"{per_core / res.get(f'floor_pair_{n}', res['floor_pair'])['per_core']:.2f}x | "
                if "floor_pair" in res
                else "- | "
            )
            + f"{j['worker_rss'] / 2**20:.0f} MiB |"
        )
    if all("exit_s" in j for j in res["jobs"].values()):
        lines.append(
            "\nJob wall is until the job's stderr closes (its JVM and PySpark's daemon exit after the command); the "
            "command itself exited "
            + ", ".join(
                f"{j['wall_s'] - j['exit_s']:.2f} s earlier at {int(n):,} names" for n, j in res["jobs"].items()
            )
            + "."
        )
    lines += ["", "Projection for 413M captions at each run's end-to-end rate per core (plus its start-up once):", ""]
    lines += ["| names | 2 cores | 16 cores | 64 cores | 256 cores |", "|---:|---:|---:|---:|---:|"]
    for n, j in res["jobs"].items():
        st = j["stats"]["stage_s"]
        fixed = st.get("first_task_s", 0.0)
        per_core = res["captions"] / (j["wall_s"] - fixed) / 2
        cells = [fmt_dur(fixed + LAION_CAPTIONS / (per_core * c)) for c in (2, 16, 64, 256)]
        lines.append(f"| {int(n):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
