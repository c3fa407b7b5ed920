"""The reference name lists, loaded once for every stage."""

from idia.core import census


def test_surnames_are_the_1000_ranked_rows_only():
    s = census.surnames(None)
    assert len(s) == 1000 and s[:3] == ("Smith", "Johnson", "Williams") and s[-1] == "Archer"
    assert not any(":" in n or not n for n in s)  # the table's source line and footnote are not surnames
    assert census.surnames(10) == s[:10]


def test_first_names_per_sex_and_title_case():
    assert census.first_names("f", 3) == ("Mary", "Patricia", "Linda")
    assert census.first_names("m", 2) == ("James", "John")
    assert census.title_case("O'NEIL") == "O'Neil" and census.title_case("MCDONALD") == "Mcdonald"
