"""The run report: headline numbers, the injection sweep, stage accounting and plots, as report.md in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from idia.atomic import write_text


def _headline(metrics: pd.DataFrame, k: int, tau: int) -> dict:
    at = metrics[(metrics["k"] == k) & (metrics["tau"] == tau)].set_index("metric")
    return {m: (float(at.loc[m, "mean"]), float(at.loc[m, "std"])) for m in at.index if pd.notna(at.loc[m, "mean"])}


def _fmt(ms: tuple[float, float] | None) -> str:
    return "n/a" if ms is None else f"{ms[0]:.3f} ± {ms[1]:.3f}"


def _sweep_plot(sweep: pd.DataFrame, k: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = sweep[sweep["is_member"]].groupby("n_train_images", as_index=False).agg(mean=("mean", "mean"), std=("std", "mean"))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.errorbar(mem["n_train_images"], mem["mean"], yerr=mem["std"], marker="o", capsize=3, label="members: TPR")
    non = sweep[~sweep["is_member"]]
    if len(non):
        ax.axhline(float(non["mean"].iloc[0]), color="tab:red", ls="--", label="non-members: FPR")
    xs = [int(x) for x in mem["n_train_images"]]
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlim(min(xs) * 0.8, max(xs) * 1.25)
    ax.set_xlabel("training images per member")
    ax.set_ylabel(f"rate at k = {k}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("IDIA vs images of a person in training")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _accounting(out: Path) -> list[str]:
    """Where every caption row, URL and identity ended up, read back from each stage's own stats."""
    rows = []
    mine = out / "mine" / "stats.json"
    if mine.is_file():
        t = json.loads(mine.read_text())["totals"]
        rows.append(f"- mine: {t['rows_read']} caption rows read = {t['null_or_empty']} null/empty + {t['unmatched']} "
                    f"unmatched + {t['matched']} matched; {t['identities_with_match']} of {t['identities']} identities "
                    f"matched at least once; {t['files_read']} of {t['files_in']} files read, {t['files_skipped']} skipped")
    dl = out / "download" / "report.json"
    if dl.is_file():
        t = json.loads(dl.read_text())["totals"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(t["failed_by_reason"].items())) or "none"
        rows.append(f"- download: {t['requested']} URLs requested = {t['downloaded']} downloaded + {t['failed']} failed "
                    f"(by reason: {reasons}); {t['identities_with_images']} of {t['identities']} identities have images")
    at = out / "attack" / "stats.json"
    if at.is_file():
        t = json.loads(at.read_text())
        skipped = t["identities_in"] - t["identities_attacked"]
        rows.append(f"- attack: {t['identities_in']} identities = {t['identities_attacked']} attacked + {skipped} skipped "
                    f"(reasons in attack/attack_status.parquet); {t['images_listed']} images listed, "
                    f"{t['images_encoded']} encoded; {t['text_prompts_computed']} text prompts computed "
                    f"(text cache {'hit' if t['text_cache_hit'] else 'miss'})")
    return rows


def write_report(out: Path, world_dir: Path | None, k: int, summaries: dict, times: dict) -> dict:
    out = Path(out)
    ev = out / "evaluate"
    metrics = pq.read_table(ev / "metrics.parquet").to_pandas()
    attacks = pq.read_table(out / "attack" / "attacks.parquet").to_pandas()
    acfg = json.loads((out / "attack" / "config.json").read_text())
    tau = int(summaries.get("evaluate", {}).get("tau") or acfg.get("tau", 1))
    ks = sorted(set(attacks["k"]))
    if k not in ks:  # an identity list with fewer images than the headline k: report the nearest k run
        k = min(ks, key=lambda x: (abs(x - k), x)) if ks else k
    head = _headline(metrics, k, tau)

    lines = ["# IDIA run report", "", f"Run folder: `{out}`", "",
             f"## Headline (k = {k}, tau = {tau}, mean ± std over draws)", "",
             "| metric | value |", "|---|---|"]
    for m in ("tpr", "fpr", "accuracy", "precision", "fnr", "tnr"):
        lines.append(f"| {m.upper()} | {_fmt(head.get(m))} |")
    text = [f"IDIA headline at k = {k}, tau = {tau}: TPR {_fmt(head.get('tpr'))}, FPR {_fmt(head.get('fpr'))}, "
            f"accuracy {_fmt(head.get('accuracy'))}"]

    sweep_md = ""
    if world_dir is not None and (Path(world_dir) / "truth.csv").is_file():
        from idia.sweep import rates_by_group

        truth = pd.read_csv(Path(world_dir) / "truth.csv")
        sweep = rates_by_group(attacks, truth, k)
        sweep.to_csv(ev / "sweep.csv", index=False)
        _sweep_plot(sweep, k, ev / "plots" / "sweep_tpr_vs_training_images.png")
        rows = ["| group | training images each | identities | rate | mean ± std |", "|---|---|---|---|---|"]
        for r in sweep.itertuples():
            rows.append(f"| {r.group} | {r.n_train_images} | {r.n_identities} | {r.rate.upper()} | {r.mean:.3f} ± {r.std:.3f} |")
            text.append(f"  {r.group:<12} {r.n_train_images:>3} training images each, {r.n_identities:>3} identities: "
                        f"{r.rate.upper()} {r.mean:.3f} ± {r.std:.3f}")
        sweep_md = "\n".join(["", f"## Injection sweep (k = {k})", "",
                              "Members were injected into the training captions with different numbers of images each; "
                              "non-members never appear.", "", *rows, "",
                              "![sweep](evaluate/plots/sweep_tpr_vs_training_images.png)", ""])
    lines.append(sweep_md)

    metrics_md = (ev / "metrics.md").read_text()
    table = metrics_md[metrics_md.index("Metrics at tau"):] if "Metrics at tau" in metrics_md else metrics_md
    lines += ["## Metrics per k", "", table.strip(), ""]
    for png in sorted((ev / "plots").glob("*.png")):
        if "sweep" not in png.name:
            lines += [f"![{png.stem}](evaluate/plots/{png.name})", ""]

    lines += ["## Accounting", "", *_accounting(out), "", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {times.get(name, 0):.1f} |" for name in summaries]
    lines.append("")
    lines.append("Outputs hold personal data (names and faces): keep the run folder private.")
    write_text("\n".join(lines) + "\n", out / "report.md")
    text.append(f"report: {out / 'report.md'}")
    return {"k": k, "tau": tau, "headline": {m: v[0] for m, v in head.items()}, "text": "\n".join(text)}
