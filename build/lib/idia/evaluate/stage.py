"""The evaluate stage: join an attack's per-draw results with the ground truth -> metrics per k and tau, the
membership table, the headline and the plots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from idia.core import storage
from idia.core.atomic import write_json, write_parquet, write_text
from idia.core.config import StageConfig, option, storage_option, to_dict
from idia.core.errors import ConfigError, InputFileError
from idia.core.provenance import provenance
from idia.core.resume import StageFolder
from idia.evaluate.metrics import compute_metrics, headline, load_ground_truth, membership_table, metrics_markdown
from schemas import files


@dataclass
class EvaluateConfig(StageConfig):
    STAGE = "evaluate"

    attack: str = option(
        "", required=True, help="attack output folder (attacks.parquet, attack_status.parquet, config.json)"
    )
    ground_truth: str = option(
        "", required=True, help="mine output folder (identity_lists/occurrences.parquet) or a CSV identity_id,is_member"
    )
    out: str = option("", required=True, help="output folder: metrics.parquet, metrics.md, membership.parquet, plots/")
    tau: int | None = option(None, help="correct templates needed for 'member' (default: the attack's tau)")
    k: int | None = option(None, help="k of the membership table, score plot and tau sweep (default: the largest k)")
    eval_subset: bool = option(
        False, help="only mine's evaluation subset (members with count < member_max) plus non-members"
    )
    plots: bool = option(True, help="draw the PNG plots")
    storage_options: dict = storage_option("its inputs and outputs")

    def check(self) -> None:
        if self.tau is not None and self.tau < 1:
            raise ConfigError(f"evaluate: tau must be >= 1, got {self.tau}")
        if self.k is not None and self.k < 1:
            raise ConfigError(f"evaluate: k must be >= 1, got {self.k}")


def _read(attack: Path, name: str) -> pd.DataFrame:
    p = attack / name
    if not p.is_file():
        raise InputFileError(f"{p}: not found; is {attack} an attack output folder?")
    return storage.read_parquet(p).to_pandas()


def _names(attack: Path, attacks: pd.DataFrame) -> pd.DataFrame:
    """identity_id -> name from the attack's candidates (the true names); the id itself where none is known."""
    ids = pd.DataFrame({"identity_id": sorted(set(attacks["identity_id"]))})
    p = attack / files.CANDIDATES_PARQUET
    if p.is_file():
        c = storage.read_parquet(p).to_pandas().dropna(subset=["identity_id"])[["identity_id", "name"]]
        ids = ids.merge(c, on="identity_id", how="left")
    else:
        ids["name"] = None
    ids["name"] = ids["name"].where(ids["name"].notna(), ids["identity_id"])
    return ids


def per_identity_table(membership, truth: pd.DataFrame, ground_truth: str) -> pd.DataFrame:
    """The membership table with each identity's occurrence bin and, where mine counted other match modes beside its
    main one (--also-count), the caption count in each (`captions_<mode>`)."""
    df = membership.to_pandas()
    if "bin" in truth.columns:
        df = df.merge(truth[["identity_id", "bin"]], on="identity_id", how="left")
    by_mode = storage.location(ground_truth) / files.COUNTS_BY_MODE_PARQUET
    if by_mode.is_file():
        m = storage.read_parquet(by_mode).to_pandas()
        m = m[~m["is_main"]]
        if len(m):
            wide = m.pivot(index="identity_id", columns="match_mode", values="n_captions").add_prefix("captions_")
            df = df.merge(wide.reset_index(), on="identity_id", how="left")
    return df


def run_evaluate(cfg: EvaluateConfig) -> dict:
    cfg.validate()
    storage.configure(cfg.storage_options)
    attack = storage.location(cfg.attack)
    out = storage.location(cfg.out)
    folder = StageFolder(out, "evaluate", cfg.settings(), cfg.force, type(cfg))
    folder.check()
    attacks = _read(attack, files.ATTACKS_PARQUET)
    status = _read(attack, files.ATTACK_STATUS_PARQUET)
    acfg_path = attack / files.CONFIG_JSON
    acfg = json.loads(acfg_path.read_text()) if acfg_path.is_file() else {}
    tau = cfg.tau or int(acfg.get("tau", 1))
    n_templates = len(acfg.get("templates_used", [])) or 21
    truth = load_ground_truth(cfg.ground_truth)
    if cfg.eval_subset:
        if "in_eval_subset" not in truth.columns:
            raise InputFileError(f"{cfg.ground_truth}: --eval-subset needs mine's occurrences table (in_eval_subset)")
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
    metrics = compute_metrics(attacks, truth, list(range(1, n_templates + 1)))
    k = cfg.k or (int(attacks["k"].max()) if len(attacks) else 1)
    membership = membership_table(attacks, _names(attack, attacks), truth, k, tau)
    write_parquet(metrics, out / files.METRICS_PARQUET)
    write_parquet(membership, out / files.MEMBERSHIP_PARQUET)
    bin_k = None
    if "bin" in truth.columns:  # mine's occurrence table: the study's analysis by occurrence bin
        from idia.evaluate.bins import tpr_by_bin_and_k

        bin_k = tpr_by_bin_and_k(attacks, truth, tau)
        write_parquet(bin_k, out / files.BIN_K_PARQUET)
        write_text(bin_k.to_pandas().to_csv(index=False, lineterminator="\n"), out / files.BIN_K_CSV)
    per_identity = per_identity_table(membership, truth, cfg.ground_truth)
    write_text(per_identity.to_csv(index=False, lineterminator="\n"), out / files.PER_IDENTITY_CSV)
    md = metrics_markdown(metrics, tau)
    write_text(
        f"# IDIA evaluation\n\nAttack: `{attack}`  \nGround truth: `{cfg.ground_truth}`\n\n"
        + "".join(f"- {a}: {b}\n" for a, b in counts.items())
        + "\n"
        + md,
        out / files.METRICS_MD,
    )
    plots = []
    mdf = metrics.to_pandas()
    if cfg.plots and len(attacks):
        from idia.evaluate import plots as P

        plots.append(P.rates_vs_k(mdf, tau, out / files.PLOTS_DIR / "rates_vs_k.png"))
        plots.append(P.rates_vs_tau(mdf, k, out / files.PLOTS_DIR / "rates_vs_tau.png"))
        scores = attacks[attacks["k"] == k].merge(truth[["identity_id", "is_member"]], on="identity_id")
        plots.append(P.score_distribution(scores, k, n_templates, out / files.PLOTS_DIR / "score_distribution.png"))
        if bin_k is not None and bin_k.num_rows:
            from idia.evaluate.bins import pivot

            grid = pivot(bin_k.to_pandas())
            plots.append(
                P.tpr_heatmap(grid, out / files.PLOTS_DIR / "tpr_by_bin_and_k.png", f"TPR per bin and k (tau={tau})")
            )
    head = headline(mdf, k, tau)
    summary = {
        **counts,
        "tau": tau,
        "k": k,
        **{f"{m}_at_k": (round(head[m][0], 4) if m in head else None) for m in ("tpr", "fpr", "accuracy")},
        "plots": [str(p) for p in plots],
    }
    write_json({**to_dict(cfg), "provenance": provenance()}, out / files.CONFIG_JSON)
    write_json(summary, out / files.STATS_JSON)
    folder.mark_done()
    return summary
