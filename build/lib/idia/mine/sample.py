"""Write LAION-400M-schema parquet shards whose captions mention a names list at controlled rates, with expected counts.

Hard cases are planted on purpose: case variants, accents stripped or decomposed, possessives, hyphenated
names, a name glued into a longer word ("Chris Evansville"), several people in one caption, overlapping names
("Barack Obama" / "Obama"), aliases, null and empty captions, very long captions, non-Latin scripts, repeated
URLs. The expected counts per mode (`normalized`, `paper`, `literal`) are computed by an independent brute-force
oracle over every caption (n-gram lookups, `re.search` per name as pandas `str.contains` does, plain Python `in`; no
automaton), so tests check the job exactly.
Deterministic: the same arguments and seed give byte-identical shards.
"""

from __future__ import annotations

import csv
import io
import re
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from idia.core import census
from idia.core.atomic import write_json, write_parquet, write_text
from idia.core.config import ConfigError, option
from idia.mine.normalize import normalize_text
from schemas import ALIAS_SEPARATOR, LAION_400M, NAMES_CSV_COLUMNS

# Hand-made identities that exercise every hard case. (identity_id, name, aliases, sex)
SPECIAL = [
    ("adrianne-leon", "Adrianne León", [], "f"),
    ("bernhard-hoecker", "Bernhard Hoëcker", [], "m"),
    ("harriet-herbig-matten", "Harriet Herbig-Matten", [], "f"),
    ("chris-evans", "Chris Evans", [], "m"),
    ("barack-obama", "Barack Obama", ["Obama"], "m"),
    ("johannes-b-kerner", "Johannes B. Kerner", [], "m"),
    ("bruce-lee", "Bruce Lee", ["李小龙"], "m"),
    ("vladimir-vysotsky", "Владимир Высоцкий", ["Vladimir Vysotsky"], "m"),
    ("eleni-karaindrou", "Ελένη Καραΐνδρου", [], "f"),
    ("david-schuetter", "David Schütter", [], "m"),
    ("never-mentioned", "Malu Leicher", [], "f"),
]

FILLER = (
    "photo of the at a in on with and red blue green street party gala stage festival portrait smiling "
    "walking award show premiere night city beach summer winter event press conference interview "
    "wallpaper poster art print vintage new york london paris berlin image picture stock hd"
).split()
SCRIPT_FILLER = {
    "ru": "фото на сцене в москве".split(),
    "zh": list("我爱看电影明星照片"),
    "el": "φωτογραφία στη σκηνή".split(),
}

# Written into the first rows of shard 0 so every hard case occurs at least once whatever the seed.
GUARANTEED = [
    "Chris Evansville rocks the stage",  # glued: a paper-mode match only
    "Barack Obama's speech at the gala",  # possessive; overlapping name + alias
    "ADRIANNE LEON at the premiere",  # case + accent stripped: normalized only
    "Bernhard Hoe\u0308cker on stage",  # decomposed accent (NFD)
    "Harriet Herbig Matten portrait",  # hyphen written as a space
    "Johannes B Kerner, interview",  # initial without its dot
    "Johannes Bx Kerner on the red carpet",  # the study's regex: "." matches the "x" (paper mode only)
    "我爱李小龙的电影",  # Han alias inside a longer run of Han characters
    "Владимир Высоцкий на сцене в москве",
    "Ελένη Καραΐνδρου συναυλία",
    "Chris Evans and Bruce Lee and Adrianne León at the party",  # several people in one caption
    "chris-evans david_schütter",  # separators other than spaces
]

# Ways to write a mention. Each returns the text written into the caption.
VARIANTS = ("exact", "upper", "lower", "possessive", "ascii", "nfd", "hyphen_space", "glued", "alias")


@dataclass
class SampleConfig:
    """What `generate` writes; every field is an option of `idia sample-laion`."""

    out: str = option("", required=True, help="output folder (names.csv, shards/, expected.json)")
    shards: int = option(3, help="number of parquet shards")
    rows_per_shard: int = option(2000, help="caption rows per shard")
    names: int = option(40, help="generated identities on top of the hand-made hard cases")
    names_file: str | None = option(
        None,
        help="mention the people of this names list instead (e.g. the study's 548: "
        "idia/resources/laion400m_membership_counts_published.csv); --names is then ignored",
    )
    mention_rate: float = option(0.15, help="share of captions that mention someone")
    null_rate: float = option(0.02, help="share of null captions")
    empty_rate: float = option(0.02, help="share of empty/whitespace captions")
    long_rate: float = option(0.002, help="share of very long (~20k chars) captions")
    url_repeat_rate: float = option(0.03, help="share of rows repeating an earlier URL and caption (re-crawls)")
    nonmember_share: float = option(0.2, help="share of generated identities never mentioned")
    seed: int = option(0, help="random seed (same seed -> same files)")
    expected: bool = option(True, help="compute the brute-force expected counts (turn off for benchmark-size data)")
    base_url: str = option("http://images.example.invalid", help="base of the generated image URLs")
    row_group_size: int = option(65536, help="parquet row group size")
    caption_pool: int = option(
        0, help="draw each shard's captions from a pool this size (fast bulk data; 0 = all distinct)"
    )

    def validate(self) -> None:
        if not self.out:
            raise ConfigError("sample-laion: out is required (--out)")
        if self.shards < 1 or self.rows_per_shard < 1:
            raise ConfigError("sample-laion: shards and rows_per_shard must be >= 1")


def generate_names(n: int, seed: int) -> list[tuple[str, str, list[str], str | None]]:
    """The hand-made identities plus n generated 'First Last' (or 'First M. Last' beyond the pairs) names."""
    rng = np.random.default_rng([seed, 1])
    firsts = list(dict.fromkeys(census.first_names("m", 400) + census.first_names("f", 400)))
    lasts = census.surnames(None)
    specials = {s[1] for s in SPECIAL} | {a for s in SPECIAL for a in s[2]}
    out = list(SPECIAL)
    seen = set(specials)
    i = 0
    while len(out) < len(SPECIAL) + n:
        f = firsts[int(rng.integers(len(firsts)))]
        last = lasts[int(rng.integers(len(lasts)))]
        name = f"{f} {last}" if i < 50_000 else f"{f} {chr(65 + int(rng.integers(26)))}. {last}"
        i += 1
        if name in seen:
            continue
        seen.add(name)
        out.append((f"id{len(out):06d}", name, [], None))
    return out


def _variant_text(name: str, aliases: list[str], variant: str) -> str:
    if variant == "upper":
        return name.upper()
    if variant == "lower":
        return name.lower()
    if variant == "possessive":
        return name + "'s"
    if variant == "ascii":
        return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or name
    if variant == "nfd":
        return unicodedata.normalize("NFD", name)
    if variant == "hyphen_space":
        return name.replace("-", " ")
    if variant == "glued":
        return name + "ville"
    if variant == "alias" and aliases:
        return aliases[0]
    return name


def _caption(rng: np.random.Generator, mentions: list[str], long: bool) -> str:
    words = [FILLER[int(i)] for i in rng.integers(len(FILLER), size=int(rng.integers(2, 9)))]
    if rng.random() < 0.1:
        key = ("ru", "zh", "el")[int(rng.integers(3))]
        sf = SCRIPT_FILLER[key]
        words += [sf[int(i)] for i in rng.integers(len(sf), size=3)]
    for m in mentions:
        words.insert(int(rng.integers(len(words) + 1)), m)
    if rng.random() < 0.05:
        words.insert(0, "-")  # punctuation runs between tokens
    text = " ".join(words)
    if long:
        pad = " ".join(FILLER[int(i)] for i in rng.integers(len(FILLER), size=int(rng.integers(1500, 3000))))
        text = pad + " " + text  # the name sits ~15-20k characters in
    return text


def _shard(cfg: SampleConfig, shard: int, idents: list, weights: np.ndarray) -> pa.Table:
    rng = np.random.default_rng([cfg.seed, 100 + shard])
    n = cfg.rows_per_shard
    texts: list[str | None] = []
    urls: list[str] = []
    kinds = rng.random(n)
    for i in range(n):
        if i > 0 and rng.random() < cfg.url_repeat_rate:
            # A re-crawled sample: same URL and caption again (n_captions counts it twice, n_unique_urls once).
            j = int(rng.integers(i))
            urls.append(urls[j])
            texts.append(texts[j])
            continue
        urls.append(f"{cfg.base_url}/{shard:05d}/{i:08d}.jpg")
        k = kinds[i]
        if k < cfg.null_rate:
            texts.append(None)
            continue
        if k < cfg.null_rate + cfg.empty_rate:
            texts.append(("", "   ", "\t")[int(rng.integers(3))])
            continue
        mentions = []
        if rng.random() < cfg.mention_rate:
            n_people = 1 + int(rng.random() < 0.2) + int(rng.random() < 0.05)
            who = rng.choice(len(idents), size=n_people, replace=False, p=weights)
            for w in who:
                _id, name, aliases, _sex = idents[int(w)]
                variant = VARIANTS[int(rng.integers(len(VARIANTS)))] if rng.random() < 0.5 else "exact"
                mentions.append(_variant_text(name, aliases, variant))
        texts.append(_caption(rng, mentions, rng.random() < cfg.long_rate))
    if shard == 0:
        long_pad = " ".join(FILLER[i % len(FILLER)] for i in range(3000))
        for i, text in enumerate([*GUARANTEED, long_pad + " Bruce Lee"][:n]):
            texts[i] = text
    return _laion_table(rng, shard, urls, pa.array(texts, pa.string()))


def _laion_table(rng: np.random.Generator, shard: int, urls: list[str], texts: pa.Array) -> pa.Table:
    """One shard in the exact LAION-400M schema around the given URLs and captions; the other columns are drawn
    from `rng` (in a fixed order, so a shard depends only on its seed)."""
    n = len(urls)
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(n, dtype=np.int64) + shard * 10**9),
            pa.array(urls, pa.string()),
            texts,
            pa.array(rng.integers(64, 2048, size=n).astype(np.int32)),
            pa.array(rng.integers(64, 2048, size=n).astype(np.int32)),
            pa.array(["?"] * n, pa.string()),
            pa.array(np.array(["UNLIKELY", "UNSURE", "NSFW"])[rng.choice(3, size=n, p=[0.9, 0.07, 0.03])]),
            pa.array(rng.uniform(0.28, 0.45, size=n)),
        ],
        schema=LAION_400M,
    )


def _pooled_shard(cfg: SampleConfig, shard: int, pool: pa.Array) -> pa.Table:
    """A shard whose captions are drawn from a pre-generated pool: same mix of cases, ~100x faster to write."""
    rng = np.random.default_rng([cfg.seed, 100 + shard])
    n = cfg.rows_per_shard
    texts = pool.take(pa.array(rng.integers(len(pool), size=n)))
    urls = [f"{cfg.base_url}/{shard:05d}/{i:08d}.jpg" for i in range(n)]
    return _laion_table(rng, shard, urls, texts)


def expected_counts(idents: list, texts: list[str | None], urls: list[str]) -> dict:
    """Brute-force oracle: per mode, identity_id -> [n_captions, n_unique_urls]. No automaton involved."""
    keys_norm: dict[str, set[int]] = defaultdict(set)
    keys_raw: list[tuple[str, int]] = []
    lengths = set()
    for idx, (_id, name, aliases, _s) in enumerate(idents):
        for raw in [name, *aliases]:
            k = normalize_text(raw)
            keys_norm[k].add(idx)
            lengths.add(len(k.split(" ")))
            keys_raw.append((raw, idx))
    hits = {"normalized": defaultdict(set), "paper": defaultdict(set), "literal": defaultdict(set)}  # idx -> {row}
    regexes = [(re.compile(raw), idx) for raw, idx in keys_raw]
    for r, t in enumerate(texts):
        if t is None or not t.strip():
            continue
        toks = normalize_text(t).split(" ")
        for n in lengths:
            for s in range(len(toks) - n + 1):
                for idx in keys_norm.get(" ".join(toks[s : s + n]), ()):
                    hits["normalized"][idx].add(r)
        for raw, idx in keys_raw:
            if raw in t:
                hits["literal"][idx].add(r)
        for rx, idx in regexes:
            if rx.search(t):
                hits["paper"][idx].add(r)
    out = {}
    for mode, h in hits.items():
        out[mode] = {
            idents[i][0]: [len(h.get(i, ())), len({urls[r] for r in h.get(i, ())})] for i in range(len(idents))
        }
    return out


def generate(cfg: SampleConfig) -> dict:
    """Write names.csv, shards/part-NNNNN.parquet, expected.json (+ expected_counts.csv); return a summary."""
    t0 = time.time()
    out = Path(cfg.out)
    if cfg.names_file:
        from idia.mine.names import read_names

        listed = read_names(cfg.names_file).select(["identity_id", "name", "aliases", "sex"]).to_pylist()
        idents = [(r["identity_id"], r["name"], list(r["aliases"] or []), r["sex"]) for r in listed]
        first_generated = 0
    else:
        idents = generate_names(cfg.names, cfg.seed)
        first_generated = len(SPECIAL)
    rng = np.random.default_rng([cfg.seed, 2])
    # Zipf-like popularity so counts span the study's bins; some generated identities never appear.
    weights = 1.0 / (1.0 + rng.permutation(len(idents)))
    never = [i for i in range(first_generated, len(idents)) if rng.random() < cfg.nonmember_share]
    if not cfg.names_file:
        never.append(next(i for i, s in enumerate(SPECIAL) if s[0] == "never-mentioned"))
    weights[never] = 0.0
    weights /= weights.sum()

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(NAMES_CSV_COLUMNS)
    for i, name, aliases, sex in idents:
        w.writerow([i, name, ALIAS_SEPARATOR.join(aliases), sex or ""])
    write_text(buf.getvalue(), out / "names.csv")

    files = {}
    all_texts: list[str | None] = []
    all_urls: list[str] = []
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in requirements; keep the library importable without it
        tqdm = lambda x, **k: x  # noqa: E731
    pool = None
    if cfg.caption_pool:
        from dataclasses import replace

        pool = _shard(replace(cfg, rows_per_shard=cfg.caption_pool), 0, idents, weights).column("TEXT").combine_chunks()
    for s in tqdm(range(cfg.shards), desc="sample shards", unit="shard"):
        if pool is None:
            table = _shard(cfg, s, idents, weights)
        else:
            table = _pooled_shard(cfg, s, pool)
        fname = f"part-{s:05d}.parquet"
        write_parquet(table, out / "shards" / fname, row_group_size=cfg.row_group_size, compression="snappy")
        texts = table.column("TEXT").to_pylist()
        files[fname] = {
            "rows": table.num_rows,
            "null_or_empty": sum(1 for t in texts if t is None or not t.strip()),
        }
        if cfg.expected:
            all_texts += texts
            # URLs are global keys: the same URL string in two shards is the same image.
            all_urls += table.column("URL").to_pylist()
    summary = {"config": cfg.__dict__, "files": files, "identities": len(idents)}
    if cfg.expected:
        exp = expected_counts(idents, all_texts, all_urls)
        summary["expected"] = exp
        rows = ["identity_id,mode,n_captions,n_unique_urls"]
        for mode, d in exp.items():
            rows += [f"{k},{mode},{v[0]},{v[1]}" for k, v in d.items()]
        write_text("\n".join(rows) + "\n", out / "expected_counts.csv")
    write_json(summary, out / "expected.json")
    summary["wall_s"] = round(time.time() - t0, 2)
    return summary
