"""Candidate names: true names + seeded fakes per sex, never a real name or alias; explicit lists."""

import pyarrow as pa
import pytest

import schemas
from idia.attack.candidates import build_candidates, read_candidates_file, study_fakes
from idia.core import census
from idia.core.errors import InputFileError, UserError
from idia.mine.normalize import name_key


def _ids(rows):
    return pa.table(
        {
            "identity_id": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "aliases": pa.array([r[2] for r in rows], pa.list_(pa.string())),
            "sex": [r[3] for r in rows],
            "source_line": pa.array(range(len(rows)), pa.int32()),
        },
        schema=schemas.IDENTITIES,
    )


IDS = _ids([("b", "Zelda Quux", [], "f"), ("a", "Yorick Vax", ["Y. Vax"], "m"), ("c", "Pat Doe", [], None)])


def test_true_names_first_then_fakes():
    c = build_candidates(IDS, 200, seed=1)
    assert c.schema == schemas.CANDIDATES and c.num_rows == 200
    assert c.column("identity_id").to_pylist()[:3] == ["a", "b", "c"]
    assert c.column("name").to_pylist()[:3] == ["Yorick Vax", "Zelda Quux", "Pat Doe"]
    fakes = c.column("name").to_pylist()[3:]
    assert all(c.column("is_fake").to_pylist()[3:]) and not any(c.column("is_fake").to_pylist()[:3])
    assert len({name_key(n) for n in fakes}) == 197
    assert all(n == n.title() for n in fakes)
    assert build_candidates(IDS, 200, seed=1).equals(c)
    assert not build_candidates(IDS, 200, seed=2).equals(c)


def test_fakes_per_sex():
    male, female = set(census.first_names("m")), set(census.first_names("f"))
    only_m = _ids([(f"m{i}", f"Man{i} Xy", [], "m") for i in range(4)])
    fakes = build_candidates(only_m, 60, seed=0).column("name").to_pylist()[4:]
    assert all(n.split()[0] in male for n in fakes)
    only_f = _ids([(f"f{i}", f"Woman{i} Xy", [], "f") for i in range(4)])
    assert all(n.split()[0] in female for n in build_candidates(only_f, 60, seed=0).column("name").to_pylist()[4:])


def test_a_fake_never_equals_a_real_name_or_alias():
    first = build_candidates(IDS, 50, seed=5).column("name").to_pylist()
    victim = first[10]  # a name the generator would draw: make it a real identity's alias (other case, accent)
    ids2 = _ids(
        [("b", "Zelda Quux", [victim.upper()], "f"), ("a", "Yorick Vax", ["Y. Vax"], "m"), ("c", "Pat Doe", [], None)]
    )
    again = build_candidates(ids2, 50, seed=5).column("name").to_pylist()
    assert name_key(victim) not in {name_key(n) for n in again[3:]}
    assert len(again) == 50


def test_num_candidates_equal_to_identities_means_no_fakes_and_too_few_is_an_error():
    c = build_candidates(IDS, 3)
    assert c.num_rows == 3 and not any(c.column("is_fake").to_pylist())
    with pytest.raises(UserError, match="smaller than the number of identities"):
        build_candidates(IDS, 2)


def test_candidates_file(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("Someone Else\nzelda quux\nY. Vax\nPat Doe\n")
    c = read_candidates_file(f, IDS)
    assert c.column("identity_id").to_pylist() == [None, "b", "a", "c"]
    f.write_text("Someone Else\nZelda Quux\n")
    with pytest.raises(InputFileError, match="not a candidate"):
        read_candidates_file(f, IDS)
    f.write_text("Zelda Quux\nZELDA QUUX\n")
    with pytest.raises(InputFileError, match="c.txt:2: duplicate"):
        read_candidates_file(f, IDS)


def test_fakes_are_census_first_names_and_surnames_only():
    """Every fake is '<first name> <surname>' from the census lists: no table header or footnote ever becomes a name."""
    surnames = set(census.surnames())
    firsts = set(census.first_names("m")) | set(census.first_names("f"))
    fakes = build_candidates(IDS, 1000, seed=0).column("name").to_pylist()[3:]
    assert all(len(n.split(" ")) == 2 and n.split(" ")[0] in firsts and n.split(" ")[1] in surnames for n in fakes)
    assert len(surnames) == 1000 and "Archer" in surnames  # rank "1,000": the last data row


def test_study_fakes_are_the_pandas_draw_the_study_made():
    """The study: first names x surnames as a cross product, then groupby("sex").sample(n, random_state=42)."""
    pd = pytest.importorskip("pandas")
    first = pd.DataFrame([(n, s) for s in ("m", "f") for n in census.ssa_first_names(s)], columns=["first_name", "sex"])
    last = pd.DataFrame({"last_name": list(census.surnames(1000, casing="study"))})
    cross = pd.merge(first[first.sex == "f"], last, how="cross")
    cross = pd.concat([cross, pd.merge(first[first.sex == "m"], last, how="cross")], ignore_index=True)
    sampled = cross.groupby("sex").sample(226, random_state=42)
    expected = [f"{a} {b}" for a, b in zip(sampled.first_name, sampled.last_name)]
    assert study_fakes(226, 42) == expected
    assert len(set(expected)) == 452


def test_study_candidates_fill_to_num_candidates_per_sex():
    c = build_candidates(IDS, 1000, seed=42, fakes="study")
    names = c.column("name").to_pylist()
    assert names[:3] == ["Yorick Vax", "Zelda Quux", "Pat Doe"] and len(names) == 3 + 2 * 498
    female = set(census.ssa_first_names("f"))
    assert sum(n.split()[0] in female for n in names[3 : 3 + 498]) == 498  # the study's "f" group first
    assert names[3:] == study_fakes(498, 42)
    # A fake that is a real identity's name is dropped, never replaced: the list is one shorter.
    victim = names[3]
    ids2 = _ids([("b", "Zelda Quux", [victim.lower()], "f"), ("a", "Yorick Vax", [], "m"), ("c", "Pat Doe", [], None)])
    again = build_candidates(ids2, 1000, seed=42, fakes="study").column("name").to_pylist()
    assert len(again) == len(names) - 1 and victim not in again


def test_ssa_first_names_rebuilt_the_studys_way():
    m, f = census.ssa_first_names("m"), census.ssa_first_names("f")
    assert len(m) == len(f) == 1000 and len(set(m)) == len(set(f)) == 1000
    # The 1880s' most given names lead (their share of births was the largest of any year).
    assert m[:3] == ("John", "William", "James") and f[:3] == ("Mary", "Anna", "Emma")
    assert census.surnames(3, casing="study") == ("Smith", "Johnson", "Williams")
