"""Plots of an attack's evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from idia.atomic import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
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
    ax.set(xlabel="k (images per attack)", ylabel="rate", ylim=(-0.02, 1.02), title=f"IDIA: TPR and FPR vs k (tau={tau})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def rates_vs_tau(metrics: pd.DataFrame, k: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in ("tpr", "fpr"):
        d = metrics[(metrics["k"] == k) & (metrics["metric"] == m)].dropna(subset=["mean"]).sort_values("tau")
        _band(ax, d, "tau", m.upper())
    ax.set(xlabel="tau (correct templates needed)", ylabel="rate", ylim=(-0.02, 1.02), title=f"IDIA: TPR and FPR vs tau (k={k})")
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
