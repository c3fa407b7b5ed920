"""Matching modes side by side: the study's regex search (`paper`), the literal substring, the normalised mode,
and pandas `str.contains(name)` (the study's own call, on a subsample), one process each, the same captions.

Run: .venv/bin/python -m bench.match_modes [--rows 400000] [--out bench-out/match_modes]
Names: the study's 548 (the published list: 8 of them hold a regex character) and 1,000 generated names of which
a share are written "First M. Last" (a "." each, so a regex with a required-literal prefilter). Prints a markdown
table (also OUT/match_modes.md): captions/s per core and the ratio to the literal mode.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from bench.mine import floor, pandas_study


def dotted_names(n: int, path: Path) -> Path:
    """n generated names, every third one with a middle initial and a dot (a regex in paper mode)."""
    from idia.mine.sample import generate_names

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["identity_id", "name"])
        for j, (i, name, _a, _s) in enumerate(generate_names(n, 11)):
            if j % 3 == 0 and " " in name:
                first, last = name.split(" ", 1)
                name = f"{first} {chr(65 + j % 26)}. {last}"
            w.writerow([i, name])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400_000, help="captions in the corpus")
    ap.add_argument("--pandas-rows", type=int, default=20_000, help="captions pandas scans (extrapolated)")
    ap.add_argument("--out", default="bench-out/match_modes")
    a = ap.parse_args()
    from idia.core.census import PUBLISHED_COUNTS_CSV
    from idia.mine.sample import SampleConfig, generate

    out = Path(a.out)
    corpus = out / "corpus"
    if not (corpus / "expected.json").exists():
        shards = 4
        generate(
            SampleConfig(
                out=str(corpus),
                shards=shards,
                rows_per_shard=a.rows // shards,
                names_file=str(PUBLISHED_COUNTS_CSV),
                expected=False,
                caption_pool=50_000,
                seed=5,
            )
        )
    files = sorted((corpus / "shards").glob("*.parquet"))
    lists = {"study 548": PUBLISHED_COUNTS_CSV, "1,000 (1/3 dotted)": dotted_names(1000, out / "dotted.csv")}
    lines = [
        f"Corpus: {sum(pq_rows(f) for f in files):,} LAION-shaped captions naming the study's 548 people "
        "(`idia sample-laion --names-file`), one process, batches of 8,192.",
        "",
        "| names | mode | captions/s | vs literal | matches |",
        "|---|---|---:|---:|---:|",
    ]
    for label, names in lists.items():
        rates = {}
        for mode in ("literal", "paper", "normalized"):
            secs, rows, hits = floor(files, names, mode)
            rates[mode] = rows / secs
            lines.append(
                f"| {label} | {mode} | {rates[mode]:,.0f} | {rates[mode] / rates['literal']:.2f}x | {hits:,} |"
            )
        secs, rows, hits = pandas_study(files, names, a.pandas_rows)
        r = rows / secs
        lines.append(
            f"| {label} | pandas str.contains (study) | {r:,.0f} | {r / rates['literal']:.4f}x | {hits:,} (on {rows:,}) |"
        )
    text = "\n".join(lines) + "\n"
    (out / "match_modes.md").write_text(text)
    print(text)


def pq_rows(f: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(f).num_rows


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)")
