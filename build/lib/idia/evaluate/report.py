"""The run report: headline numbers, the injection sweep, stage accounting and plots, as report.md in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from idia.core import storage
from idia.core.atomic import write_text
from idia.evaluate.metrics import headline
from idia.evaluate.plots import sweep_plot
from idia.evaluate.sweep import read_truth_csv
from schemas import files


def _fmt(ms: tuple[float, float] | None) -> str:
    return "n/a" if ms is None else f"{ms[0]:.3f} ± {ms[1]:.3f}"


def accounting_lines(out: Path) -> list[str]:
    """Where every caption row, URL and identity ended up, read back from each stage's own stats."""
    rows = []
    mine = out / files.RUN_STAGE_DIRS["mine"] / files.STATS_JSON
    if mine.is_file():
        t = json.loads(mine.read_text())["totals"]
        rows.append(
            f"mine: {t['rows_read']} caption rows read = {t['null_or_empty']} null/empty + {t['unmatched']} "
            f"unmatched + {t['matched']} matched; {t['identities_with_match']} of {t['identities']} identities "
            f"matched at least once; {t['files_read']} of {t['files_in']} files read, {t['files_skipped']} skipped"
        )
    dl = out / files.RUN_STAGE_DIRS["download"] / files.REPORT_JSON
    if dl.is_file():
        t = json.loads(dl.read_text())["totals"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(t["failed_by_reason"].items())) or "none"
        rows.append(
            f"download: {t['requested']} URLs requested = {t['downloaded']} downloaded + {t['failed']} failed "
            f"(by reason: {reasons}); {t['identities_with_images']} of {t['identities']} identities have images"
        )
    at = out / files.RUN_STAGE_DIRS["attack"] / files.STATS_JSON
    if at.is_file():
        t = json.loads(at.read_text())
        skipped = t["identities_in"] - t["identities_attacked"]
        rows.append(
            f"attack: {t['identities_in']} identities = {t['identities_attacked']} attacked + {skipped} skipped "
            f"(reasons in attack/attack_status.parquet); {t['images_listed']} images listed, "
            f"{t['images_encoded']} encoded; {t['text_prompts_computed']} text prompts computed "
            f"(text cache {'hit' if t['text_cache_hit'] else 'miss'})"
        )
    return rows


def report_settings(run: str | Path) -> tuple[int, int]:
    """The report's k and tau for a finished run folder, as `idia run` chose them."""
    run = storage.location(run)
    summary = run / files.SUMMARY_JSON
    if summary.is_file():
        s = json.loads(summary.read_text())
        return int(s["k"]), int(s["tau"])
    ev = json.loads((run / files.RUN_STAGE_DIRS["evaluate"] / files.STATS_JSON).read_text())
    return int(ev["k"]), int(ev["tau"])


def report_k(ks: list[int], k: int) -> int:
    """The headline k, or the nearest k the attack ran when it did not run that one (few images per identity)."""
    return k if k in ks or not ks else min(ks, key=lambda x: (abs(x - k), x))


def model_rows(models: list[tuple[str, str, str]], k: int, tau: int) -> list[list]:
    """One row per model (label, attack folder, evaluate folder): the model and its headline metrics at k, tau."""
    rows = []
    for label, _attack, evaluate in models:
        m = storage.read_parquet(storage.location(evaluate) / files.METRICS_PARQUET).to_pandas()
        h = headline(m, k, tau)
        rows.append([label, *[_fmt(h.get(x)) for x in ("tpr", "fpr", "accuracy", "precision")]])
    return rows


def write_report(
    out: Path,
    world_dir: Path | None,
    k: int,
    summaries: dict,
    times: dict,
    redact: bool = False,
    models: list[tuple[str, str, str]] | None = None,
) -> dict:
    """report.md and report.html in the run folder; returns the headline and the text the run prints. `models`:
    (label, attack folder, evaluate folder) of every model when the run attacked several; the first is the main one."""
    out = storage.location(out)
    ev = out / files.RUN_STAGE_DIRS["evaluate"]
    metrics = storage.read_parquet(ev / files.METRICS_PARQUET).to_pandas()
    attacks = storage.read_parquet(out / files.RUN_STAGE_DIRS["attack"] / files.ATTACKS_PARQUET).to_pandas()
    acfg = json.loads((out / files.RUN_STAGE_DIRS["attack"] / files.CONFIG_JSON).read_text())
    tau = int(summaries.get("evaluate", {}).get("tau") or acfg.get("tau", 1))
    k = report_k(sorted(set(attacks["k"])), k)
    head = headline(metrics, k, tau)

    lines = [
        "# IDIA run report",
        "",
        f"Run folder: `{out}`",
        "",
        f"## Headline (k = {k}, tau = {tau}, mean ± std over draws; std is the sample std, ddof = 1, as the study)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for m in ("tpr", "fpr", "accuracy", "precision", "fnr", "tnr"):
        lines.append(f"| {m.upper()} | {_fmt(head.get(m))} |")
    text = [
        f"IDIA headline at k = {k}, tau = {tau}: TPR {_fmt(head.get('tpr'))}, FPR {_fmt(head.get('fpr'))}, "
        f"accuracy {_fmt(head.get('accuracy'))}"
    ]

    if models:
        rows = model_rows(models, k, tau)
        lines += [
            "",
            f"## Models (k = {k}, tau = {tau}, mean ± std over draws)",
            "",
            f"The sections below are the first model's; the others' outputs are under `{files.MODELS_DIR}/<model>/`.",
            "",
            "| model | TPR | FPR | accuracy | precision |",
            "|---|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
        text += [f"  {r[0]}: TPR {r[1]}, FPR {r[2]}, accuracy {r[3]}" for r in rows]

    sweep_md = ""
    if world_dir is not None and (Path(world_dir) / files.TRUTH_CSV).is_file():
        from idia.evaluate.sweep import rates_by_group

        truth = read_truth_csv(Path(world_dir) / files.TRUTH_CSV)
        sweep = rates_by_group(attacks, truth, k)
        write_text(sweep.to_csv(index=False, lineterminator="\n"), ev / files.SWEEP_CSV)
        sweep_plot(sweep, k, ev / files.PLOTS_DIR / "sweep_tpr_vs_training_images.png")
        rows = ["| group | training images each | identities | rate | mean ± std |", "|---|---|---|---|---|"]
        for r in sweep.itertuples():
            rows.append(
                f"| {r.group} | {r.n_train_images} | {r.n_identities} | {r.rate.upper()} | {r.mean:.3f} ± {r.std:.3f} |"
            )
            text.append(
                f"  {r.group:<12} {r.n_train_images:>3} training images each, {r.n_identities:>3} identities: "
                f"{r.rate.upper()} {r.mean:.3f} ± {r.std:.3f}"
            )
        sweep_md = "\n".join(
            [
                "",
                f"## Injection sweep (k = {k})",
                "",
                "Members were injected into the training captions with different numbers of images each; "
                "non-members never appear.",
                "",
                *rows,
                "",
                "![sweep](evaluate/plots/sweep_tpr_vs_training_images.png)",
                "",
            ]
        )
    lines.append(sweep_md)

    metrics_md = (ev / files.METRICS_MD).read_text()
    table = metrics_md[metrics_md.index("Metrics at tau") :] if "Metrics at tau" in metrics_md else metrics_md
    lines += ["## Metrics per k", "", table.strip(), ""]
    bin_k_path = ev / files.BIN_K_PARQUET
    if bin_k_path.is_file() and storage.parquet_rows(bin_k_path):
        from idia.evaluate.bins import pivot

        grid = pivot(storage.read_parquet(bin_k_path).to_pandas())
        lines += [
            f"## TPR per occurrence bin and k (tau = {tau}; members only, mean over draws)",
            "",
            "| k | " + " | ".join(str(c) for c in grid.columns) + " |",
            "|---|" + "---:|" * len(grid.columns),
            *(
                f"| {int(kk)} | " + " | ".join("" if pd.isna(v) else f"{v:.2f}" for v in row) + " |"
                for kk, row in grid.iterrows()
            ),
            "",
        ]
    comparison = out / files.RUN_STAGE_DIRS["compare-lists"] / files.COMPARISON_MD
    if comparison.is_file():
        body = comparison.read_text().split("\n", 1)[1]  # its own title line dropped
        lines += ["## Regenerated list vs the study's published one", body.strip(), ""]
        kinds = summaries.get("compare-lists", {}).get("differences", {})
        if kinds:
            text.append("list vs published: " + ", ".join(f"{k_}: {v}" for k_, v in sorted(kinds.items())))
    for png in sorted((ev / files.PLOTS_DIR).glob("*.png")):
        if "sweep" not in png.name:
            lines += [f"![{png.stem}](evaluate/plots/{png.name})", ""]

    lines += ["## Accounting", "", *(f"- {x}" for x in accounting_lines(out)), "", "## Stages", ""]
    lines += ["| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {times.get(name, 0):.1f} |" for name in summaries]
    lines.append("")
    lines.append("Outputs hold personal data (names and faces): keep the run folder private.")
    write_text("\n".join(lines) + "\n", out / files.REPORT_MD)
    from idia.evaluate.html_report import write_html_report

    page = write_html_report(out, k, tau, times, redact=redact, models=models)
    text.append(f"report: {out / files.REPORT_MD}")
    text.append(f"report.html (one self-contained page, plots inside; open it in any browser): {storage.as_uri(page)}")
    return {"k": k, "tau": tau, "headline": {m: v[0] for m, v in head.items()}, "text": "\n".join(text)}
