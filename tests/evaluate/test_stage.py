"""idia evaluate: attack tables + ground truth -> metrics.parquet, metrics.md, membership, plots."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from idia.core.errors import ConfigError
from idia.evaluate.stage import EvaluateConfig, run_evaluate
from pipelines.cli import main as cli_main


@pytest.fixture()
def attack_dir(tmp_path):
    a = tmp_path / "attack"
    a.mkdir()
    rows = []
    for n, iid in enumerate(["m1", "m2", "m3", "n1", "n2"]):
        member = iid.startswith("m")
        for k in (1, 3):
            for d in range(3):
                score = (k + d + n) % 4 if member else int(d == 2 and k == 1)
                rows.append(
                    {
                        "identity_id": iid,
                        "k": k,
                        "k_used": k,
                        "draw": d,
                        "correct_templates": score,
                        "predicted_member": score >= 1,
                    }
                )
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.ATTACKS), a / "attacks.parquet")
    status = [
        {"identity_id": i, "status": "attacked", "reason": None, "n_images": 3, "n_corrupt_images": 0}
        for i in ["m1", "m2", "m3", "n1", "n2"]
    ]
    status.append(
        {"identity_id": "x", "status": "skipped", "reason": "no_images", "n_images": 0, "n_corrupt_images": 0}
    )
    pq.write_table(pa.Table.from_pylist(status, schema=schemas.ATTACK_STATUS), a / "attack_status.parquet")
    cands = [
        {"candidate_index": i, "name": f"Name {iid}", "identity_id": iid, "is_fake": False}
        for i, iid in enumerate(["m1", "m2", "m3", "n1", "n2"])
    ]
    pq.write_table(pa.Table.from_pylist(cands, schema=schemas.CANDIDATES), a / "candidates.parquet")
    (a / "config.json").write_text(json.dumps({"tau": 1, "templates_used": ["{}"] * 4}))
    return a


def test_evaluate_writes_metrics_membership_and_plots(tmp_path, attack_dir):
    truth = tmp_path / "truth.csv"
    truth.write_text("identity_id,is_member\nm1,1\nm2,1\nm3,1\nn1,0\nn2,0\nx,1\n")
    out = tmp_path / "eval"
    s = run_evaluate(EvaluateConfig(attack=str(attack_dir), ground_truth=str(truth), out=str(out)))
    assert s["evaluated"] == 5 and s["members_evaluated"] == 3 and s["ground_truth_not_attacked"] == 1
    m = pq.read_table(out / "metrics.parquet").to_pandas()
    assert set(m.tau) == {1, 2, 3, 4} and set(m.k) == {1, 3}
    fpr1 = m[(m.k == 1) & (m.tau == 1) & (m.metric == "fpr")].iloc[0]
    assert fpr1["mean"] == pytest.approx(1 / 3) and fpr1["n_draws"] == 3  # both non-members flagged in draw 2
    assert s["fpr_at_k"] == 0.0 and s["k"] == 3
    assert "| 3 |" in (out / "metrics.md").read_text()
    for png in ("rates_vs_k", "rates_vs_tau", "score_distribution"):
        data = (out / "plots" / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    mem = pq.read_table(out / "membership.parquet").to_pandas()
    assert len(mem) == 5 and mem.is_member.tolist() == [True, True, True, False, False]
    assert mem.name.tolist()[0] == "Name m1"


def test_evaluate_cli_with_mine_output_and_eval_subset(tmp_path, attack_dir, capsys):
    mine = tmp_path / "mine"
    (mine / "identity_lists").mkdir(parents=True)
    occ = pd.DataFrame(
        {
            "identity_id": ["m1", "m2", "m3", "n1", "n2"],
            "name": list("ABCDE"),
            "count": [3, 500, 7, 0, 0],
            "membership": ["member"] * 3 + ["non_member"] * 2,
            "bin": ["[0, 25)", "[300, 1000000)", "[0, 25)", "[0, 25)", "[0, 25)"],
            "in_eval_subset": [True, False, True, True, True],
        }
    )
    pq.write_table(pa.Table.from_pandas(occ, preserve_index=False), mine / "identity_lists" / "occurrences.parquet")
    rc = cli_main(
        [
            "evaluate",
            "--attack",
            str(attack_dir),
            "--ground-truth",
            str(mine),
            "--out",
            str(tmp_path / "e"),
            "--eval-subset",
            "--no-plots",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "members_evaluated" in printed and "Metrics at tau = 1" in printed
    s = json.loads((tmp_path / "e" / "stats.json").read_text())
    assert s["members_evaluated"] == 2 and s["evaluated"] == 4  # m2 (count 500) is outside the eval subset
    mem = pq.read_table(tmp_path / "e" / "membership.parquet").to_pandas()
    assert mem.set_index("identity_id").loc["m1", "caption_count"] == 3
    # The study's analysis by bin: members m1, m3 in [0, 25) (m2 is outside the subset); per draw TPR 1, 0.5, 1.
    cells = pd.read_csv(tmp_path / "e" / "tpr_by_bin_and_k.csv")
    assert cells[["bin", "k", "members"]].values.tolist() == [["[0, 25)", 1, 2], ["[0, 25)", 3, 2]]
    assert cells["tpr_mean"].tolist() == pytest.approx([5 / 6, 5 / 6])
    assert cells["tpr_std"].tolist() == pytest.approx([pd.Series([1, 0.5, 1]).std()] * 2)
    per = pd.read_csv(tmp_path / "e" / "per_identity.csv", keep_default_na=False).set_index("identity_id")
    assert per.loc["m1", "bin"] == "[0, 25)" and per.loc["m1", "predicted_member"] in (True, "True")


def test_evaluate_missing_attack_folder_is_a_user_error(tmp_path):
    rc = cli_main(
        ["evaluate", "--attack", str(tmp_path / "none"), "--ground-truth", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert rc == 2


def test_rerun_with_another_setting_names_it_and_force_redoes(tmp_path, attack_dir):
    truth = tmp_path / "truth.csv"
    truth.write_text("identity_id,is_member\nm1,1\nm2,1\nm3,1\nn1,0\nn2,0\n")
    cfg = EvaluateConfig(attack=str(attack_dir), ground_truth=str(truth), out=str(tmp_path / "e"), plots=False)
    first = run_evaluate(cfg)
    assert run_evaluate(cfg) == first  # same settings: the same result again
    with pytest.raises(ConfigError, match=r"holds evaluate results made with other settings \(tau: null -> 2\)"):
        run_evaluate(EvaluateConfig(**{**cfg.__dict__, "tau": 2}))
    assert run_evaluate(EvaluateConfig(**{**cfg.__dict__, "tau": 2, "force": True}))["tau"] == 2
