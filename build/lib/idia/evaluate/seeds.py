"""The controlled experiment over several training seeds: one world + tiny CLIP + attack per seed, and every group's
rate as mean ± std over seeds beside the spread over draws.

A single run shows one trained model; the spread over seeds says how much of a group's rate is the model's luck.
Per seed, a group's rate is the mean over draws of the share of its identities predicted member (the sweep table,
`evaluate/sweep.csv`). Over seeds: the mean of those rates and their sample standard deviation (ddof = 1), and the
mean over seeds of the spread over draws.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from idia.core import storage
from idia.core.atomic import write_text
from schemas import files

SEEDS_CSV = "seeds.csv"


def aggregate_seeds(runs: dict[int, Path]) -> pd.DataFrame:
    """One row per group: training images, identities, rate, mean and std over seeds, mean std over draws, seeds."""
    parts = []
    for seed, run in sorted(runs.items()):
        s = storage.read_csv(storage.location(run) / files.RUN_STAGE_DIRS["evaluate"] / files.SWEEP_CSV)
        parts.append(s.assign(seed=seed))
    d = pd.concat(parts, ignore_index=True)
    rows = []
    for (group, is_member, n_train, rate), g in d.groupby(["group", "is_member", "n_train_images", "rate"], sort=False):
        rows.append(
            {
                "group": group,
                "is_member": bool(is_member),
                "n_train_images": int(n_train),
                "rate": rate,
                "n_identities": int(g["n_identities"].iloc[0]),
                "n_seeds": int(g["seed"].nunique()),
                "mean_over_seeds": float(g["mean"].mean()),
                "std_over_seeds": float(g["mean"].std(ddof=1)) if len(g) > 1 else 0.0,
                "mean_std_over_draws": float(g["std"].mean()),
                "per_seed": ", ".join(f"{m:.3f}" for m in g.sort_values("seed")["mean"]),
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(["is_member", "n_train_images", "group"], ascending=[False, True, True]).reset_index(
        drop=True
    )


def write_seeds_report(out: Path, table: pd.DataFrame, headlines: dict[int, dict], k: int, tau: int) -> dict:
    """seeds.csv, the sweep plot with both spreads, report.md and report.html in the multi-seed run folder."""
    from idia.evaluate.html_report import seeds_page
    from idia.evaluate.plots import seeds_sweep_plot

    out = storage.location(out)
    write_text(table.to_csv(index=False, lineterminator="\n"), out / SEEDS_CSV)
    plot = seeds_sweep_plot(table, k, out / files.PLOTS_DIR / "sweep_over_seeds.png")
    seeds = sorted(headlines)
    lines = [
        "# IDIA over training seeds",
        "",
        f"Seeds {', '.join(map(str, seeds))}: one world, tiny CLIP and attack each (`seed-N/`), k = {k}, tau = {tau}.",
        "Each group's rate per seed is the mean over draws; over seeds: mean ± sample std (ddof = 1), and beside it the",
        "mean spread over draws.",
        "",
        "| group | training images each | identities | rate | mean ± std over seeds | std over draws (mean) | per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    text = [
        f"IDIA over {len(seeds)} training seeds ({', '.join(map(str, seeds))}) at k = {k}, tau = {tau}: "
        "mean ± std over seeds (spread over draws)"
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.group} | {r.n_train_images} | {r.n_identities} | {r.rate.upper()} | "
            f"{r.mean_over_seeds:.3f} ± {r.std_over_seeds:.3f} | {r.mean_std_over_draws:.3f} | {r.per_seed} |"
        )
        text.append(
            f"  {r.group:<12} {r.n_train_images:>3} training images each, {r.n_identities:>3} identities: "
            f"{r.rate.upper()} {r.mean_over_seeds:.3f} ± {r.std_over_seeds:.3f} ({r.mean_std_over_draws:.3f})"
        )
    lines += [
        "",
        f"![sweep over seeds]({files.PLOTS_DIR}/{plot.name})",
        "",
        "## Headline per seed",
        "",
        "| seed | TPR | FPR | accuracy |",
        "|---|---|---|---|",
    ]
    for s in seeds:
        h = headlines[s]
        lines.append(
            f"| {s} | {h.get('tpr', float('nan')):.3f} | {h.get('fpr', float('nan')):.3f} | "
            f"{h.get('accuracy', float('nan')):.3f} |"
        )
    lines += ["", "Outputs hold personal data (names and faces): keep the run folder private."]
    write_text("\n".join(lines) + "\n", out / files.REPORT_MD)
    page = seeds_page(out, table, headlines, k, tau, plot)
    text.append(f"report: {out / files.REPORT_MD}; {storage.as_uri(page)}")
    return {"k": k, "tau": tau, "seeds": seeds, "groups": table.to_dict("records"), "text": "\n".join(text)}
