"""The one-screen summary each command prints when it ends (what happened, where the outputs are)."""

from __future__ import annotations

from pathlib import Path

from schemas import files


def sample(s: dict, out: str) -> None:
    rows = sum(f["rows"] for f in s["files"].values())
    print(f"sample-laion: {len(s['files'])} shards, {rows} captions, {s['identities']} identities -> {out}")
    print(f"  names: {out}/names.csv   shards: {out}/shards/   expected: {out}/expected.json")
    for mode, d in s.get("expected", {}).items():
        print(
            f"  {mode}: {sum(v[0] > 0 for v in d.values())} identities with >= 1 caption, "
            f"{sum(v[0] for v in d.values())} matches"
        )
    print(f"  wall time {s['wall_s']} s")


def mine(s: dict, out: str) -> None:
    t = s["totals"]
    if s.get("resumed"):
        print(f"mine: {out} already holds this run (same inputs and settings); use --force to redo it")
    print(
        f"mine ({s['match_mode']}): {t['files_read']} files read, {t['files_skipped']} skipped, {t['rows_read']} rows"
    )
    print(f"  rows: {t['null_or_empty']} null/empty + {t['unmatched']} unmatched + {t['matched']} matched")
    print(
        f"  identities: {t['identities_with_match']} of {t['identities']} with >= 1 caption; "
        f"{t['match_pairs']} caption x identity matches"
    )
    others = {m: n for m, n in s.get("identities_with_match_by_mode", {}).items() if m != s["match_mode"]}
    if others:
        print("  beside it: " + ", ".join(f"{n} identities with >= 1 caption in {m} mode" for m, n in others.items()))
    li = s["identity_lists"]
    print(f"  lists: {li['members']} members, {li['non_members']} non-members, {li['eval_subset']} in eval subset")
    for b in s["skipped_files"]:
        print(f"  skipped {b['file']}: {b['reason']}")
    steps = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in s.get("stage_s", {}).items())
    units = f"{s.get('work_units', 0)} scan tasks" + (
        f", {t.get('units_resumed', 0)} reused" if t.get("units_resumed") else ""
    )
    if steps:
        print(f"  time: {steps} ({units})")
    print(
        f"  outputs: {out}/{files.COUNTS_PARQUET}, {files.MANIFESTS_DIR}/, {files.IDENTITY_LISTS_DIR}/, "
        f"{files.STATS_JSON}   ({s['wall_s']} s)"
    )


def compare(s: dict, out: str) -> None:
    print(f"compare-lists: {s['names']} names; " + ", ".join(f"{k}: {v}" for k, v in s["differences"].items()))
    print(f"  outputs: {', '.join(s['outputs'])}")


def download(report: dict, out: str) -> None:
    t = report["totals"]
    s = report["settings"]
    print(
        f"\ndownload: {t['requested']} requested, {t['downloaded']} downloaded, {t['failed']} failed "
        f"({t['identities_with_images']}/{t['identities']} identities with images) in {report['wall_s']} s"
    )
    for reason, n in sorted(t["failed_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))[:12]:
        print(f"  failed {reason:<26} {n}")
    print(f"  addresses: {s['address_policy']}; opt-out headers: {'IGNORED' if s['ignore_opt_out'] else 'honoured'}")
    if report["unfinished_shards"]:
        print(f"  {report['unfinished_shards']} shard(s) did not finish: rerun the same command to resume")
    print(f"  index: {out}/{files.INDEX_PARQUET}  report: {out}/{files.REPORT_MD}  shards: {out}/{files.SHARDS_DIR}/")


def table(title: str, s: dict, out: str) -> None:
    print(f"{title} -> {out}")
    for k, v in s.items():
        print(f"  {k:32s} {v}")


def evaluate(s: dict, out: str) -> None:
    table("evaluate", s, out)
    md = (Path(out) / files.METRICS_MD).read_text()
    print(md[md.index("Metrics at") :])


def world(s: dict, out: str) -> None:
    state = "already complete (same config and base URL), skipped" if s["skipped"] else "written"
    print(f"world {out}: {state}")
    print(
        f"  seed {s['seed']}, {s['n_identities']} identities under test: {s['n_members']} members, "
        f"{s['n_non_members']} non-members; groups {s['groups']}"
    )
    print(f"  caption rows {s['caption_rows']} in {s['laion_shards']} shard(s): {s['rows_by_kind']}")
    print(f"  query images {s['query_images']}; URLs on {s['base_url']}")
    print(
        f"  files: {files.WORLD_IDENTITIES_CSV}, {files.TRUTH_CSV}, {files.LAION_DIR}/part-NNNNN.parquet, "
        f"{files.QUERIES_TSV}, images/, {files.WORLD_JSON}"
    )


def train(info: dict, out: str) -> None:
    state = "already trained (same config and world), skipped" if info["skipped"] else "trained"
    print(f"tiny CLIP {state}: {info['model_spec']}")
    print(
        f"  pairs {info['n_pairs']}, steps {info['config']['steps']} x batch {info['config']['batch_size']} "
        f"({info['epochs']} epochs)"
    )
    print(f"  loss {info['loss_first_10pct']:.3f} (first 10%) -> {info['loss_last_10pct']:.3f} (last 10%)")
    print(f"  time: load {info['load_seconds']} s, train {info['train_seconds']} s; rows {info['stats']}")
    print(f"  files: open_clip_config.json, open_clip_model.safetensors, loss.png, losses.json, {files.TRAIN_JSON}")


def lookup(hits: list[dict], query: str) -> None:
    print(f"lookup {query!r}: {len(hits)} identit{'y' if len(hits) == 1 else 'ies'}")
    for h in hits:
        aliases = f" (aliases: {', '.join(h['aliases'])})" if h["aliases"] else ""
        print(f"  {h['identity_id']}  {h['name']}{aliases}")
        print(
            f"    {h['n_captions']} captions, {h['n_unique_urls']} unique URLs ({h['match_mode']} matching); "
            f"bin {h['bin']}; {h['membership'].replace('_', '-')}"
            f"{'' if h['in_eval_subset'] else '; outside the evaluation subset'}"
        )
        for r in h["rows"]:
            text = (r["TEXT"] or "").replace("\n", " ")
            print(f"    {r['URL']}  {text[:100]}{'...' if len(text) > 100 else ''}")


def check(r: dict, verbose: bool = True) -> None:
    draws = "" if r["draws"] == 1 else f", {r['draws']} draws, member in {r['member_rate']:.0%} of them"
    caps = f"; {r['captions']} captions in the mining run" if "captions" in r else ""
    correct = r["correct_templates"]
    correct = f"{correct:.1f}" if isinstance(correct, float) and not correct.is_integer() else f"{int(correct)}"
    print(
        f"check {r['name']!r} with {r['model']}: {r['verdict'].upper()} - own name the plurality in {correct} of "
        f"{r['templates']} templates ({r['photos']} photos, k = {r['k']}{draws}; {r['candidates']} candidates; "
        f"{r['seconds']} s){caps}"
    )
    if r["unreadable"]:
        print(f"  {r['unreadable']} photo(s) could not be read and were left out")
    if verbose:
        for t in r["per_template"]:
            who = t["plurality"] or "(tie)"
            print(f"  {'+' if t['correct'] else ' '} {t['template']:<40} {who} ({t['votes']} of {r['photos']} photos)")
