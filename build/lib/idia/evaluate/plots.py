"""Every plot the project draws (matplotlib, Agg backend: no display needed), each written atomically: the
attack's rates and scores, the injection sweep, and the tiny CLIP's training loss."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from idia.core.atomic import atomic_path  # noqa: E402


def _save(fig, path: Path, dpi: int = 110, tight: bool = True) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(fig)
    return path


def _band(ax, d: pd.DataFrame, x: str, label: str) -> None:
    ax.plot(d[x], d["mean"], marker="o", label=label)
    # rates live in [0, 1]; the +- std band is clipped there
    ax.fill_between(d[x], (d["mean"] - d["std"]).clip(0, 1), (d["mean"] + d["std"]).clip(0, 1), alpha=0.2)


def rates_vs_k(metrics: pd.DataFrame, tau: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in ("tpr", "fpr"):
        d = metrics[(metrics["tau"] == tau) & (metrics["metric"] == m)].dropna(subset=["mean"]).sort_values("k")
        _band(ax, d, "k", m.upper())
    ax.set(
        xlabel="k (images per attack)", ylabel="rate", ylim=(-0.02, 1.02), title=f"IDIA: TPR and FPR vs k (tau={tau})"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def rates_vs_tau(metrics: pd.DataFrame, k: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in ("tpr", "fpr"):
        d = metrics[(metrics["k"] == k) & (metrics["metric"] == m)].dropna(subset=["mean"]).sort_values("tau")
        _band(ax, d, "tau", m.upper())
    ax.set(
        xlabel="tau (correct templates needed)",
        ylabel="rate",
        ylim=(-0.02, 1.02),
        title=f"IDIA: TPR and FPR vs tau (k={k})",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def score_distribution(scores: pd.DataFrame, k: int, n_templates: int, path: Path) -> Path:
    """scores: correct_templates and is_member per (identity, draw) at k."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [x - 0.5 for x in range(n_templates + 2)]
    for member, label in ((True, "members"), (False, "non-members")):
        d = scores[scores["is_member"] == member]["correct_templates"]
        if len(d):
            ax.hist(d, bins=bins, alpha=0.6, density=True, label=f"{label} (n={len(d)})")
    ax.set(xlabel="correct templates", ylabel="share of attacks", title=f"IDIA: correct templates at k={k}")
    ax.legend()
    return _save(fig, path)


def sweep_plot(sweep: pd.DataFrame, k: int, path: Path) -> Path:
    """Members' TPR against their training images (errorbars: std over draws), the non-members' FPR as a line."""
    mem = (
        sweep[sweep["is_member"]]
        .groupby("n_train_images", as_index=False)
        .agg(mean=("mean", "mean"), std=("std", "mean"))
    )
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
    return _save(fig, path, dpi=120, tight=False)


def loss_curve(losses: list[float], path: Path) -> Path:
    """A training loss per step with its running mean."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.8, alpha=0.5, label="step")
    w = max(1, len(losses) // 30)
    if len(losses) >= w:
        smooth = [
            sum(losses[max(0, i - w + 1) : i + 1]) / len(losses[max(0, i - w + 1) : i + 1]) for i in range(len(losses))
        ]
        ax.plot(range(1, len(losses) + 1), smooth, lw=1.5, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("CLIP loss")
    ax.set_title("tiny CLIP training loss")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path, dpi=100, tight=False)


def seeds_sweep_plot(table: pd.DataFrame, k: int, path: Path) -> Path:
    """Members' TPR against training images over several seeds: errorbars = std over seeds, band = spread over draws
    (mean over seeds); the non-members' FPR as a line with its band."""
    mem = (
        table[table["is_member"]]
        .groupby("n_train_images", as_index=False)
        .agg(mean=("mean_over_seeds", "mean"), seeds=("std_over_seeds", "mean"), draws=("mean_std_over_draws", "mean"))
    )
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    xs = [int(x) for x in mem["n_train_images"]]
    ax.fill_between(
        xs,
        (mem["mean"] - mem["draws"]).clip(0, 1),
        (mem["mean"] + mem["draws"]).clip(0, 1),
        alpha=0.2,
        label="± std over draws (mean over seeds)",
    )
    ax.errorbar(xs, mem["mean"], yerr=mem["seeds"], marker="o", capsize=3, label="members: TPR, ± std over seeds")
    non = table[~table["is_member"]]
    if len(non):
        ax.axhline(float(non["mean_over_seeds"].iloc[0]), color="tab:red", ls="--", label="non-members: FPR")
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlim(min(xs) * 0.8, max(xs) * 1.25)
    ax.set(
        xlabel="training images per member",
        ylabel=f"rate at k = {k}",
        ylim=(-0.02, 1.02),
        title=f"IDIA vs images of a person in training, over {int(table['n_seeds'].max())} seeds",
    )
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi=120, tight=False)


def tpr_heatmap(grid: pd.DataFrame, path: Path, title: str = "") -> Path:
    """The study's heatmap: mean TPR per occurrence bin (x) and k (y, smallest at the bottom), 0..1, Blues."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * max(len(grid.columns), 3), 1.2 + 0.32 * max(len(grid.index), 3)))
    values = grid.to_numpy(dtype=float)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0, vmax=1, origin="lower", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], rotation=45, ha="right")
    ax.set_yticks(range(len(grid.index)), [str(k) for k in grid.index])
    for (i, j), v in np.ndenumerate(values):
        if v == v:
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.set(
        xlabel="captions naming the person (occurrence bin)",
        ylabel="k (images used for the IDIA)",
        title=title or "TPR per occurrence bin and k",
    )
    fig.colorbar(im, ax=ax, label="TPR (mean over draws)")
    return _save(fig, path)
