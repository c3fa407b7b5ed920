"""The study's analysis by occurrence: TPR per occurrence bin against k (its heatmap), and the per-identity table.

A bin is how often the name is in the training captions (mine's occurrence table: "[0, 25)", ..., "[300, 1000000)").
Per k and per draw, a bin's TPR is the share of its members predicted member (correct templates >= tau); the cell
is the mean (and sample std) over draws. Members only: the study divided the bin's true positives by the bin's
largest membership group, which for its bin [0, 25) was the members too, so the figures agree where its did.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

import schemas
from idia.evaluate.sweep import rates_by
from schemas.validate import conform


def bin_start(label: str) -> int:
    """The bin's lower edge ("[25, 50)" -> 25), its sort key; -1 for a label of another shape."""
    try:
        return int(str(label).strip().lstrip("[(").split(",")[0])
    except ValueError:
        return -1


def tpr_by_bin_and_k(attacks: pd.DataFrame, truth: pd.DataFrame, tau: int) -> pa.Table:
    """schemas.BIN_K: one row per (bin, k) over the members of `truth` (needs its `bin` column) that were attacked."""
    known = truth["bin"].notna() & ~truth["bin"].astype(str).isin(["", "nan", "None"])
    members = truth[truth["is_member"] & known][["identity_id", "bin"]]
    # The same per-draw rate as the injection sweep's (sweep.rates_by), at this evaluation's tau, once per k.
    scored = attacks.assign(predicted_member=attacks["correct_templates"] >= tau)
    rows = [
        {
            "bin": b,
            "k": int(k),
            "members": r["n_identities"],
            "tpr_mean": r["mean"],
            "tpr_std": r["std"],
            "n_draws": r["n_draws"],
        }
        for k in sorted(set(scored["k"]))
        for (b,), _g, r in rates_by(scored, members, int(k), ["bin"])
    ]
    if not rows:
        return schemas.BIN_K.empty_table()
    cells = pd.DataFrame(rows)
    cells["bin_start"] = cells["bin"].map(bin_start)
    cells = cells.sort_values(["bin_start", "bin", "k"]).reset_index(drop=True)
    table = pa.Table.from_pandas(cells[list(schemas.BIN_K.names)], preserve_index=False)
    return conform(table, schemas.BIN_K, "TPR per bin and k")


def pivot(cells: pd.DataFrame) -> pd.DataFrame:
    """k (rows, ascending) x bin (columns, by bin start) of the mean TPR."""
    order = sorted(set(cells["bin"]), key=lambda b: (bin_start(b), b))
    return cells.pivot(index="k", columns="bin", values="tpr_mean").reindex(columns=order).sort_index()
