"""Metrics per k and tau over draws, ground-truth formats, the membership table."""

import numpy as np
import pandas as pd
import pytest

import schemas
from idia.core.errors import InputFileError
from idia.evaluate.metrics import compute_metrics, load_ground_truth, membership_table, metrics_markdown


def _attacks():
    # 4 identities (m1, m2 members; n1, n2 non-members), k = 1 and 3, 2 draws
    rows = []
    scores = {
        ("m1", 1): [2, 0],
        ("m2", 1): [1, 1],
        ("n1", 1): [0, 1],
        ("n2", 1): [0, 0],
        ("m1", 3): [5, 4],
        ("m2", 3): [0, 3],
        ("n1", 3): [0, 0],
        ("n2", 3): [0, 0],
    }
    for (iid, k), s in scores.items():
        for d, v in enumerate(s):
            rows.append(
                {"identity_id": iid, "k": k, "k_used": k, "draw": d, "correct_templates": v, "predicted_member": v >= 1}
            )
    return pd.DataFrame(rows)


TRUTH = pd.DataFrame(
    {
        "identity_id": ["m1", "m2", "n1", "n2", "zz"],
        "is_member": [True, True, False, False, True],
        "caption_count": pd.array([5, 1, 0, 0, 3], dtype="Int64"),
    }
)


def test_metrics_per_k_and_tau():
    m = compute_metrics(_attacks(), TRUTH, [1, 2]).to_pandas()
    assert set(m.columns) == set(schemas.METRICS.names)

    def get(k, tau, metric):
        r = m[(m.k == k) & (m.tau == tau) & (m.metric == metric)].iloc[0]
        return r["mean"], r["std"]

    # k=1, tau=1: draw0 pred m1,m2 -> TPR 1, FPR 0; draw1 pred m2,n1 -> TPR .5, FPR .5
    sd2 = pd.Series([1.0, 0.5]).std()  # the sample std (ddof = 1) of two draws half a rate apart, as the study
    assert get(1, 1, "tpr") == pytest.approx((0.75, sd2))
    assert get(1, 1, "fpr") == pytest.approx((0.25, sd2))
    assert get(1, 1, "fnr") == pytest.approx((0.25, sd2))
    assert get(1, 1, "accuracy") == pytest.approx((0.75, sd2))
    assert get(1, 1, "precision") == pytest.approx((0.75, sd2))
    # k=3, tau=2: draw0 m1 only; draw1 m1, m2
    assert get(3, 2, "tpr") == pytest.approx((0.75, sd2))
    assert get(3, 2, "tnr") == pytest.approx((1.0, 0.0))
    assert set(m[m.metric == "tpr"].n_draws) == {2}
    # k=1, tau=2: draw1 predicts no member, so its precision is undefined and left out of the mean
    assert m[(m.k == 1) & (m.tau == 2) & (m.metric == "precision")].n_draws.iloc[0] == 1
    md = metrics_markdown(compute_metrics(_attacks(), TRUTH, [1]), 1)
    assert "| 1 | 0.750 +- 0.354" in md


def test_precision_undefined_is_null():
    a = _attacks()
    a["correct_templates"] = 0
    m = compute_metrics(a, TRUTH, [1]).to_pandas()
    r = m[(m.k == 1) & (m.metric == "precision")].iloc[0]
    assert r["mean"] is None or np.isnan(r["mean"])
    assert r["n_draws"] == 0


def test_membership_majority_of_draws():
    ids = pd.DataFrame({"identity_id": ["m1", "m2", "n1", "n2"], "name": ["A", "B", "C", "D"]})
    t = membership_table(_attacks(), ids, TRUTH, 3, 1).to_pandas().set_index("identity_id")
    assert t.loc["m1", "predicted_member"] and t.loc["m1", "score"] == 4.5
    assert t.loc["m2", "member_rate"] == 0.5 and not t.loc["m2", "predicted_member"]  # 1 of 2 is no majority
    assert t.loc["m1", "caption_count"] == 5 and t.loc["n1", "is_member"] == False  # noqa: E712


def test_ground_truth_formats(tmp_path):
    f = tmp_path / "truth.csv"
    f.write_text("identity_id,is_member,n_train_images,group\na,1,3,x\nb,0,0,y\nc,true,1,x\n")
    g = load_ground_truth(f)
    assert g["is_member"].tolist() == [True, False, True]
    f.write_text("identity_id,membership,count\na,member,4\nb,non_member,0\n")
    g = load_ground_truth(f)
    assert g["is_member"].tolist() == [True, False] and g["caption_count"].tolist() == [4, 0]
    f.write_text("identity_id,is_member\na,maybe\n")
    with pytest.raises(InputFileError, match="row 2"):
        load_ground_truth(f)
    with pytest.raises(InputFileError, match="ground truth not found"):
        load_ground_truth(tmp_path / "nope")
