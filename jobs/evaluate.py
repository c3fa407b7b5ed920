"""Evaluate an attack: join its per-draw results with the ground truth -> metrics per k and tau, membership, plots."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from idia.atomic import write_json, write_parquet, write_text
from idia.config import from_file_and_args, to_dict
from idia.errors import InputFileError, UserError
from idia.metrics import compute_metrics, load_ground_truth, membership_table, metrics_markdown


@dataclass
class EvaluateConfig:
    attack: str = ""  # attack output folder
    ground_truth: str = ""  # mine output folder, occurrences parquet/CSV, or CSV identity_id,is_member
    out: str = ""
    tau: int | None = None  # default: the attack's tau
    k: int | None = None  # k of the membership table, the score plot and the tau sweep; default the largest k
    eval_subset: bool = False  # only identities flagged in_eval_subset (mine) plus non-members
    plots: bool = True


def _read(attack: Path, name: str) -> pd.DataFrame:
    p = attack / name
    if not p.is_file():
        raise InputFileError(f"{p}: not found; is {attack} an attack output folder?")
    return pq.read_table(p).to_pandas()


def _names(attack: Path, attacks: pd.DataFrame) -> pd.DataFrame:
    """identity_id -> name from the attack's candidates (the true names); the id itself where none is known."""
    ids = pd.DataFrame({"identity_id": sorted(set(attacks["identity_id"]))})
    p = attack / "candidates.parquet"
    if p.is_file():
        c = pq.read_table(p).to_pandas().dropna(subset=["identity_id"])[["identity_id", "name"]]
        ids = ids.merge(c, on="identity_id", how="left")
    else:
        ids["name"] = None
    ids["name"] = ids["name"].where(ids["name"].notna(), ids["identity_id"])
    return ids


def run_evaluate(cfg: EvaluateConfig) -> dict:
    if not cfg.attack or not cfg.ground_truth or not cfg.out:
        raise UserError("evaluate: --attack, --ground-truth and --out are required")
    attack = Path(cfg.attack)
    out = Path(cfg.out)
    attacks = _read(attack, "attacks.parquet")
    status = _read(attack, "attack_status.parquet")
    acfg = json.loads((attack / "config.json").read_text()) if (attack / "config.json").is_file() else {}
    tau = cfg.tau or int(acfg.get("tau", 1))
    n_templates = len(acfg.get("templates_used", [])) or 21
    truth = load_ground_truth(cfg.ground_truth)
    if cfg.eval_subset:
        if "in_eval_subset" not in truth.columns:
            raise UserError(f"{cfg.ground_truth}: --eval-subset needs mine's occurrences table (in_eval_subset)")
        truth = truth[truth["in_eval_subset"] | ~truth["is_member"]]
    attacked = set(attacks["identity_id"])
    known = set(truth["identity_id"])
    counts = {
        "identities_in_attack": int(len(status)),
        "identities_attacked": int((status["status"] == "attacked").sum()),
        "identities_skipped": int((status["status"] != "attacked").sum()),
        "evaluated": len(attacked & known),
        "attacked_without_ground_truth": len(attacked - known),
        "ground_truth_not_attacked": len(known - attacked),
        "members_evaluated": int(truth[truth["identity_id"].isin(attacked)]["is_member"].sum()),
    }
    counts["non_members_evaluated"] = counts["evaluated"] - counts["members_evaluated"]
    taus = list(range(1, n_templates + 1))
    metrics = compute_metrics(attacks, truth, taus)
    k = cfg.k or (int(attacks["k"].max()) if len(attacks) else 1)
    names = _names(attack, attacks)
    membership = membership_table(attacks, names, truth, k, tau)
    write_parquet(metrics, out / "metrics.parquet")
    write_parquet(membership, out / "membership.parquet")
    md = metrics_markdown(metrics, tau)
    write_text(f"# IDIA evaluation\n\nAttack: `{attack}`  \nGround truth: `{cfg.ground_truth}`\n\n"
               + "".join(f"- {a}: {b}\n" for a, b in counts.items()) + "\n" + md, out / "metrics.md")
    plots = []
    if cfg.plots and len(attacks):
        from idia import plots as P

        mdf = metrics.to_pandas()
        plots.append(P.rates_vs_k(mdf, tau, out / "plots" / "rates_vs_k.png"))
        plots.append(P.rates_vs_tau(mdf, k, out / "plots" / "rates_vs_tau.png"))
        scores = attacks[attacks["k"] == k].merge(truth[["identity_id", "is_member"]], on="identity_id")
        plots.append(P.score_distribution(scores, k, n_templates, out / "plots" / "score_distribution.png"))
    mdf = metrics.to_pandas()
    at = mdf[(mdf["tau"] == tau) & (mdf["k"] == k)].set_index("metric")
    headline = {m: (None if pd.isna(at.loc[m, "mean"]) else round(float(at.loc[m, "mean"]), 4)) if m in at.index else None
                for m in ("tpr", "fpr", "accuracy")}
    summary = {**counts, "tau": tau, "k": k, **{f"{m}_at_k": v for m, v in headline.items()},
               "plots": [str(p) for p in plots]}
    write_json(to_dict(cfg), out / "config.json")
    write_json(summary, out / "stats.json")
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML/JSON file with EvaluateConfig keys; command-line options override it")
    p.add_argument("--attack", help="attack output folder (attacks.parquet, attack_status.parquet, config.json)")
    p.add_argument("--ground-truth", help="mine output folder (identity_lists/occurrences.parquet) or CSV identity_id,is_member")
    p.add_argument("--out", help="output folder: metrics.parquet, metrics.md, membership.parquet, plots/")
    p.add_argument("--tau", type=int, help="correct templates needed for 'member' (default: the attack's tau)")
    p.add_argument("--k", type=int, help="k of the membership table, score plot and tau sweep (default the largest k)")
    p.add_argument("--eval-subset", action="store_true", default=None,
                   help="only mine's eval subset (members with count < member_max) plus non-members")
    p.add_argument("--no-plots", dest="plots", action="store_false", default=None, help="skip the PNG plots")


def main(args: argparse.Namespace) -> int:
    cfg = from_file_and_args(EvaluateConfig, args, "evaluate config")
    s = run_evaluate(cfg)
    print(f"evaluate -> {cfg.out}")
    for k, v in s.items():
        print(f"  {k:32s} {v}")
    md = (Path(cfg.out) / "metrics.md").read_text()
    print(md[md.index("Metrics at"):])
    return 0


if __name__ == "__main__":
    from pipelines.cli import main as cli_main

    sys.exit(cli_main(["evaluate", *sys.argv[1:]]))
