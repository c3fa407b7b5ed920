"""Identity lists (bins, membership, eval subset, files) and compare-lists against the published table."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from idia.core.errors import InputFileError
from idia.mine.compare import PUBLISHED, compare, to_markdown
from idia.mine.lists import bin_label, bin_table, build_identity_list, write_identity_lists
from schemas import IDENTITY_LIST
from schemas.files import bucket_of


def counts(pairs):
    return pa.table(
        {
            "identity_id": [f"i{k}" for k in range(len(pairs))],
            "name": [p[0] for p in pairs],
            "n_captions": [p[1] for p in pairs],
        }
    )


def test_bins_match_the_study():
    assert [bin_label(c) for c in (0, 24, 25, 160, 299, 300, 10**6)] == [
        "[0, 25)",
        "[0, 25)",
        "[25, 50)",
        "[150, 200)",
        "[275, 300)",
        "[300, 1000000)",
        "[1000000, inf)",
    ]
    pub = pd.read_csv(PUBLISHED)
    assert all(bin_label(c) == b for c, b in zip(pub["count"], pub["bin"]))


def test_membership_eval_subset_and_files(tmp_path):
    lists = build_identity_list(
        counts([("A", 0), ("B", 1), ("C", 3), ("D", 299), ("E", 300)]), member_min=2, member_max=300
    )
    rows = lists.to_pylist()
    assert [r["membership"] for r in rows] == ["non_member", "excluded", "member", "member", "member"]
    assert [r["in_eval_subset"] for r in rows] == [True, False, True, True, False]
    sizes = write_identity_lists(lists, tmp_path)
    assert sizes == {"members": 3, "non_members": 1, "eval_subset": 3, "excluded": 1}
    assert pd.read_csv(tmp_path / "members.csv")["name"].tolist() == ["C", "D", "E"]
    assert pd.read_csv(tmp_path / "occurrences.csv").shape == (5, 6)
    assert dict(bin_table(lists))["[300, 1000000)"] == 1
    with pytest.raises(ValueError, match="member_min must be >= 1"):
        build_identity_list(counts([("A", 0)]), member_min=0)


def test_bucket_is_stable():
    assert bucket_of("adrianne-leon", 16) == 11  # CRC-32, not Python's per-process string hash
    assert {bucket_of(f"id{i}", 8) for i in range(200)} == set(range(8))


def test_compare_lists_reports_every_difference(tmp_path):
    reg = tmp_path / "reg.csv"
    reg.write_text(
        "name,count\nMalu Leicher,0\nAdrianne Leo\u0301n,3\nJoanna García,1\nNew Person,5\nGuido Cantz,7\n",
        encoding="utf-8",
    )
    df = compare(reg).set_index("name")
    assert df.loc["Adrianne León", "difference"] == "count+membership"  # NFD input joined after NFC
    assert df.loc["Adrianne León", "delta"] == 3
    assert df.loc["Guido Cantz", "difference"] == "count" and df.loc["Guido Cantz", "delta"] == 5
    assert df.loc["Joanna García", "difference"] == "same"
    assert df.loc["New Person", "difference"] == "only_regenerated"
    assert (df["difference"] == "only_published").sum() == 548 - 4
    md = to_markdown(df.reset_index(), str(reg), str(PUBLISHED))
    assert "| Adrianne León | 0 | 3 | 3 | non_member -> member | count+membership |" in md
    bad = tmp_path / "bad.csv"
    bad.write_text("name,count\nA,x\n")
    with pytest.raises(InputFileError, match="count"):
        compare(bad)


def test_list_csvs_quote_like_python_csv(tmp_path):
    import csv
    import io

    t = pa.table(
        {
            "identity_id": ["a", "b", "c", "d", "e"],
            "name": ['Jo, "Jr"', "Ann\nB", "plain", 'say "hi"', "Émile"],
            "count": pa.array([1, 0, 0, 300, 1_000_000], pa.int64()),
            "membership": ["member", "non_member", "non_member", "member", "member"],
            "bin": ["[0, 25)", "[0, 25)", "[0, 25)", "[300, 1000000)", "[1000000, inf)"],
            "in_eval_subset": [True, True, False, False, False],
        },
        schema=IDENTITY_LIST,
    )
    write_identity_lists(t, tmp_path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.column_names)
    w.writerows(zip(*(t.column(c).to_pylist() for c in t.column_names)))
    assert (tmp_path / "occurrences.csv").read_bytes().decode() == buf.getvalue()
    assert (tmp_path / "non_members.csv").read_text() == 'identity_id,name,count\nb,"Ann\nB",0\nc,plain,0\n'
    write_identity_lists(t.slice(0, 0), tmp_path / "empty")
    assert (tmp_path / "empty" / "members.csv").read_text() == "identity_id,name,count\n"
