"""The study's injection sweep: how the attack's TPR depends on how many training images a member had.

Pure pandas over the attack's per-draw rows and a truth table with `group` / `n_train_images` (the synthetic
world's truth.csv, or any controlled experiment's).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import schemas
from idia.core.errors import InputFileError
from schemas.validate import conform


def rates_by(
    attacks: pd.DataFrame, table: pd.DataFrame, k: int, by: list[str]
) -> list[tuple[tuple, pd.DataFrame, dict]]:
    """Per value of `by` (columns of `table`, joined on identity_id) at `k`: the share of identities predicted member
    in each draw, as mean and std over draws (ddof = 1, as the study); with the group's rows. Groups in order of appearance."""
    a = attacks[attacks["k"] == k][["identity_id", "draw", "predicted_member"]]
    d = a.merge(table, on="identity_id", how="inner")
    out = []
    for key, g in d.groupby(by, sort=False):
        per_draw = g.groupby("draw")["predicted_member"].mean()
        rates = {
            "n_identities": int(g["identity_id"].nunique()),
            "mean": float(per_draw.mean()),
            "std": float(per_draw.std(ddof=1)) if len(per_draw) > 1 else 0.0,
            "n_draws": int(len(per_draw)),
        }
        out.append((key if isinstance(key, tuple) else (key,), g, rates))
    return out


def rates_by_group(attacks: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per truth group at `k`: identities, training images, and the share predicted member (mean +- std over draws).

    For member groups that share is the TPR, for the non-member group the FPR. Identities absent from `attacks`
    (skipped by the attack) are not counted; `n_identities` says how many were.
    """
    need = set(schemas.TRUTH.names)
    missing = need - set(truth.columns)
    if missing:
        raise ValueError(f"truth table lacks column(s) {', '.join(sorted(missing))}")
    rows = []
    for (group,), g, rates in rates_by(attacks, truth[list(schemas.TRUTH.names)], k, ["group"]):
        is_member = bool(g["is_member"].iloc[0])
        rows.append(
            {
                "group": group,
                "is_member": is_member,
                "n_train_images": int(g["n_train_images"].iloc[0]),
                "rate": "tpr" if is_member else "fpr",
                **rates,
            }
        )
    out = pd.DataFrame(rows, columns=schemas.SWEEP.names)
    return out.sort_values(["is_member", "n_train_images", "group"], ascending=[False, True, True]).reset_index(
        drop=True
    )


def read_truth_csv(path: str | Path) -> pd.DataFrame:
    """A controlled experiment's truth table (schemas.TRUTH), checked: missing columns and bad values name the file."""
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=schemas.TRUTH))
    except (OSError, ValueError) as exc:  # pyarrow: ArrowInvalid (a ValueError) for bad values, OSError for I/O
        raise InputFileError(f"{path}: cannot read the truth table: {exc}") from None
    return conform(table, schemas.TRUTH, str(path)).to_pandas()
