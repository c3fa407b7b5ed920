"""Attack metrics per k (and per tau): TPR, FNR, FPR, TNR, accuracy, precision as mean +- std over draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

import schemas
from idia.core import storage
from idia.core.errors import InputFileError
from schemas import files
from schemas.validate import conform

METRIC_NAMES = ("tpr", "fnr", "fpr", "tnr", "accuracy", "precision")
_TRUE = {"1", "true", "yes", "member", "t", "y"}
_FALSE = {"0", "false", "no", "non_member", "non-member", "f", "n"}


def load_ground_truth(path: str | Path) -> pd.DataFrame:
    """identity_id, is_member (bool), caption_count (nullable) from a mine output folder, an occurrences
    parquet/CSV (IDENTITY_LIST), or a CSV with identity_id,is_member (the synthetic world's truth.csv)."""
    path = storage.location(path)
    if path.is_dir():
        path = path / files.IDENTITY_LISTS_DIR / files.OCCURRENCES_PARQUET
    if not path.is_file():
        raise InputFileError(
            f"{path}: ground truth not found (give a mine output folder or a CSV identity_id,is_member)"
        )
    if path.suffix == ".parquet":
        df = storage.read_parquet(path).to_pandas()
    else:
        try:
            with path.open("rb") as fh:
                df = pd.read_csv(fh, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise InputFileError(f"{path}: cannot read CSV: {exc}") from None
    if "identity_id" not in df.columns:
        raise InputFileError(f"{path}: missing column 'identity_id'; columns: {', '.join(df.columns)}")
    if "is_member" in df.columns:
        raw = df["is_member"]
    elif "membership" in df.columns:
        raw = df["membership"]
    else:
        raise InputFileError(f"{path}: needs a column 'is_member' or 'membership'")
    vals = []
    for i, v in enumerate(raw.tolist()):
        s = str(v).strip().lower()
        if isinstance(v, (bool, np.bool_)):
            vals.append(bool(v))
        elif s in _TRUE:
            vals.append(True)
        elif s in _FALSE:
            vals.append(False)
        else:
            raise InputFileError(f"{path}: row {i + 2}: membership value {v!r} is not member/non_member/true/false")
    out = pd.DataFrame({"identity_id": df["identity_id"].astype(str), "is_member": vals})
    if "count" in df.columns:
        out["caption_count"] = pd.to_numeric(df["count"], errors="coerce").astype("Int64")
    else:
        out["caption_count"] = pd.array([pd.NA] * len(out), dtype="Int64")
    if "bin" in df.columns:
        out["bin"] = df["bin"].astype(str)
    if "in_eval_subset" in df.columns:
        out["in_eval_subset"] = df["in_eval_subset"].astype(str).str.lower().isin(["true", "1"])
    if out["identity_id"].duplicated().any():
        dup = out.loc[out["identity_id"].duplicated(), "identity_id"].iloc[0]
        raise InputFileError(f"{path}: identity_id {dup!r} appears twice")
    return out


def _rates(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int((pred & truth).sum())
    fn = int((~pred & truth).sum())
    fp = int((pred & ~truth).sum())
    tn = int((~pred & ~truth).sum())

    def div(a, b):
        return a / b if b else np.nan

    return {
        "tpr": div(tp, tp + fn),
        "fnr": div(fn, tp + fn),
        "fpr": div(fp, fp + tn),
        "tnr": div(tn, fp + tn),
        "accuracy": div(tp + tn, tp + tn + fp + fn),
        "precision": div(tp, tp + fp),
    }


def compute_metrics(attacks: pd.DataFrame, truth: pd.DataFrame, taus: list[int]) -> pa.Table:
    """METRICS rows for every (k, tau, metric). Per draw, the identities with known truth at that k are scored;
    then mean and std over draws (the sample std, ddof = 1, as the study's pandas `.std()`; 0 for one draw). A rate with an empty denominator is null."""
    df = attacks.merge(truth[["identity_id", "is_member"]], on="identity_id", how="inner")
    rows = []
    for (k,), g in df.groupby(["k"], sort=True):
        for tau in taus:
            per_draw = []
            for _, d in g.groupby("draw", sort=True):
                per_draw.append(_rates(d["correct_templates"].to_numpy() >= tau, d["is_member"].to_numpy(bool)))
            for m in METRIC_NAMES:
                vals = np.array([p[m] for p in per_draw], dtype=float)
                ok = vals[~np.isnan(vals)]
                rows.append(
                    {
                        "k": int(k),
                        "tau": int(tau),
                        "metric": m,
                        "mean": float(ok.mean()) if len(ok) else None,
                        "std": float(ok.std(ddof=1)) if len(ok) > 1 else (0.0 if len(ok) else None),
                        "n_draws": len(ok),
                    }
                )
    table = pa.Table.from_pylist(rows, schema=schemas.METRICS) if rows else schemas.METRICS.empty_table()
    return conform(table, schemas.METRICS, "metrics")


def membership_table(
    attacks: pd.DataFrame, identities: pd.DataFrame, truth: pd.DataFrame | None, k: int, tau: int
) -> pa.Table:
    """One row per attacked identity at k (or its largest k when k was skipped for it): mean score over draws,
    share of draws predicted member, and the verdict = a strict majority of draws."""
    if attacks.empty:
        return schemas.MEMBERSHIP.empty_table()
    at_k = attacks[attacks["k"] <= k]
    chosen = at_k.groupby("identity_id")["k"].max().rename("k_chosen")
    d = at_k.merge(chosen, left_on="identity_id", right_index=True)
    d = d[d["k"] == d["k_chosen"]]
    d = d.assign(member=d["correct_templates"] >= tau)
    agg = (
        d.groupby("identity_id")
        .agg(k=("k", "first"), score=("correct_templates", "mean"), member_rate=("member", "mean"))
        .reset_index()
    )
    agg["predicted_member"] = agg["member_rate"] > 0.5
    agg = agg.merge(identities[["identity_id", "name"]], on="identity_id", how="left")
    if truth is not None:
        agg = agg.merge(truth[["identity_id", "is_member", "caption_count"]], on="identity_id", how="left")
    else:
        agg["is_member"] = None
        agg["caption_count"] = None
    agg = agg.sort_values("identity_id")
    table = pa.table(
        {
            "identity_id": agg["identity_id"].tolist(),
            "name": agg["name"].tolist(),
            "is_member": pa.array([None if pd.isna(x) else bool(x) for x in agg["is_member"]], pa.bool_()),
            "caption_count": pa.array([None if pd.isna(x) else int(x) for x in agg["caption_count"]], pa.int64()),
            "k": pa.array(agg["k"].astype(int).tolist(), pa.int32()),
            "score": agg["score"].astype(float).tolist(),
            "member_rate": agg["member_rate"].astype(float).tolist(),
            "predicted_member": agg["predicted_member"].astype(bool).tolist(),
        }
    )
    return conform(table, schemas.MEMBERSHIP, "membership")


def metrics_markdown(metrics: pa.Table, tau: int) -> str:
    """A markdown table: one row per k at the given tau, each metric as mean +- std."""
    df = metrics.to_pandas()
    df = df[df["tau"] == tau]
    lines = [
        f"Metrics at tau = {tau} (mean +- std over draws)",
        "",
        "| k | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for k, g in df.groupby("k", sort=True):
        cells = []
        for m in METRIC_NAMES:
            r = g[g["metric"] == m]
            if r.empty or pd.isna(r["mean"].iloc[0]):
                cells.append("n/a")
            else:
                cells.append(f"{r['mean'].iloc[0]:.3f} +- {r['std'].iloc[0]:.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def headline(metrics: pd.DataFrame, k: int, tau: int) -> dict[str, tuple[float, float]]:
    """metric -> (mean, std over draws) at one k and tau; metrics with no value (an empty denominator) left out."""
    at = metrics[(metrics["k"] == k) & (metrics["tau"] == tau)].set_index("metric")
    return {m: (float(at.loc[m, "mean"]), float(at.loc[m, "std"])) for m in at.index if pd.notna(at.loc[m, "mean"])}
