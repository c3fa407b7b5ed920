"""Prompt templates: the study's 21 verbatim, and templates files validated line by line."""

import pytest

from idia.attack.prompts import TEMPLATES, load_templates, prompts
from idia.core.errors import InputFileError


def test_study_templates():
    assert len(TEMPLATES) == 21 and len(set(TEMPLATES)) == 21
    assert all(t.count("{}") == 1 for t in TEMPLATES)
    assert TEMPLATES[4] == "a photo of a person named {}" and TEMPLATES[-1] == "{} in a dress"
    assert load_templates(None) == list(TEMPLATES)


def test_prompts_order_and_braces_in_names():
    p = prompts(["a {}", "{} b"], ["X", "Y {z}"])
    assert p == ["a X", "a Y {z}", "X b", "Y {z} b"]


def test_templates_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("# comment\na photo of {}\n\n{0} at home\n")
    assert load_templates(f) == ["a photo of {}", "{} at home"]


@pytest.mark.parametrize(
    "bad,line", [("a photo\n", 1), ("ok {}\n{} and {}\n", 2), ("{x} {}\n", 1), ("a {}\na {}\n", 2)]
)
def test_templates_file_errors_name_the_line(tmp_path, bad, line):
    f = tmp_path / "t.txt"
    f.write_text(bad)
    with pytest.raises(InputFileError, match=f"t.txt:{line}"):
        load_templates(f)
