"""Unit tests for idia.mine.names.read_names: both file formats, normalisation and every rejection with its line."""

from __future__ import annotations

import pytest

from idia.core.errors import InputFileError
from idia.mine.names import derive_identity_id, parse_names, read_names
from schemas import IDENTITIES


def write(tmp_path, text, name="names.txt", raw: bytes | None = None):
    p = tmp_path / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_plain_text_derives_stable_ids_and_counts_blank_lines(tmp_path):
    p = write(tmp_path, "\nAdrianne León\n\n  Barack   Obama \t\n\n")
    table, stats = parse_names(p)
    assert table.schema.remove_metadata() == IDENTITIES
    assert table.column("name").to_pylist() == ["Adrianne León", "Barack Obama"]
    assert table.column("source_line").to_pylist() == [2, 4]
    assert stats["blank_lines"] == 3 and stats["lines"] == 5 and stats["identities"] == 2
    ids = table.column("identity_id").to_pylist()
    assert ids[0].startswith("adrianne-leon-") and ids[1].startswith("barack-obama-")
    # Stable: same name -> same id regardless of line position or file.
    p2 = write(tmp_path, "Barack Obama\nAdrianne León\n", "other.txt")
    assert sorted(read_names(p2).column("identity_id").to_pylist()) == sorted(ids)
    assert derive_identity_id("Adrianne León") != derive_identity_id("Adrianne Leon")


def test_csv_with_aliases_sex_and_extra_columns(tmp_path):
    p = write(
        tmp_path,
        "identity_id,name,aliases,sex,notes\n"
        "obama,Barack Obama,Obama|Barack H. Obama| |Obama,M,x\n"
        "\n"
        'leon,"Adrianne León",,female,"multi\nline note"\n'
        ",Chris Evans,,,\n",
        "names.csv",
    )
    t = read_names(p)
    assert t.column("identity_id").to_pylist()[:2] == ["obama", "leon"]
    assert t.column("identity_id").to_pylist()[2] == derive_identity_id("Chris Evans")
    assert t.column("aliases").to_pylist() == [["Obama", "Barack H. Obama"], [], []]
    assert t.column("sex").to_pylist() == ["m", "f", None]
    assert t.column("source_line").to_pylist() == [2, 4, 6]


def test_published_counts_csv_reads_as_names_list():
    from pathlib import Path

    import idia

    t = read_names(Path(idia.__file__).parent / "resources" / "laion400m_membership_counts_published.csv")
    assert t.num_rows == 548
    assert "Adrianne León" in t.column("name").to_pylist()


def test_nfc_normalisation_makes_decomposed_duplicate(tmp_path):
    decomposed = "Adrianne Leo\u0301n"  # o + combining acute
    p = write(tmp_path, f"Adrianne León\n{decomposed}\n")
    with pytest.raises(InputFileError, match=r"line 2: name 'Adrianne León' duplicates line 1"):
        read_names(p)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("Alice Smith\nBob\u200b Jones\n", r"line 2: .*U\+200B"),
        ("Alice Smith\nBob\x07Jones\n", r"line 2: .*U\+0007"),
        ("Alice Smith\n\n\u00adBob\n", r"line 3: .*U\+00AD"),
        ("Alice\n!!!\n", r"line 2: name '!!!' has no letter or digit"),
        ("x" * 300 + "\n", r"line 1: name is 300 characters long"),
    ],
)
def test_rejections_name_the_line(tmp_path, text, pattern):
    with pytest.raises(InputFileError, match=pattern):
        read_names(write(tmp_path, text))


def test_invalid_utf8_reports_line(tmp_path):
    p = write(tmp_path, None, raw="Alice\nBob\n".encode() + b"Caf\xe9 Owner\n")
    with pytest.raises(InputFileError, match=r"line 3: invalid UTF-8 \(byte 0xe9\)"):
        read_names(p)


def test_bom_is_ignored(tmp_path):
    p = write(tmp_path, None, raw=b"\xef\xbb\xbfidentity_id,name\na1,Alice\n")
    assert read_names(p).column("identity_id").to_pylist() == ["a1"]


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("identity_id,name\na,Alice\nb,Bob\na,Carol\n", r"line 4: identity_id 'a' duplicates line 2"),
        ("identity_id,name\na,Alice\nb,Bob\nc,Alice\n", r"line 4: name 'Alice' duplicates line 2"),
        (
            "identity_id,name,aliases\na,Alice,Al\nb,Bob,Al\n",
            r"line 3: alias 'Al' is already a name or alias on line 2",
        ),
        ("identity_id,name\n../etc,Alice\n", r"line 2: identity_id '../etc' is not path-safe"),
        ("identity_id,name,sex\na,Alice,x\n", r"line 2: sex must be"),
        ("identity_id,name\na,\n", r"line 2: empty name"),
    ],
)
def test_csv_rejections(tmp_path, text, pattern):
    with pytest.raises(InputFileError, match=pattern):
        read_names(write(tmp_path, text, "n.csv"))


def test_alias_then_same_name_later_is_a_duplicate(tmp_path):
    p = write(tmp_path, "identity_id,name,aliases\na,Alice,Bob\nb,Bob,\n", "n.csv")
    with pytest.raises(InputFileError, match=r"line 3: name 'Bob' duplicates line 2"):
        read_names(p)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_names(tmp_path / "nope.txt")
    with pytest.raises(InputFileError, match="empty"):
        read_names(write(tmp_path, "\n\n  \n"))


CSV_CASES = [
    "identity_id,name,aliases\np1,Ann Lee,A. Lee|Annie\np2,  Bob   Smith ,\n\n,Carl Dunn,\n",
    "name\nAnn Lee\n\nBob\n",
    "identity_id,name,aliases,sex\np1,Ann Lee,,F\np2,Bob Ray,B. Ray,male\n,,,\np3,Cy Oh,,\n",
    "name,extra\nAnn Lee,x\n",
    "\n\nidentity_id,name\r\np1,Ann Lee\r\np2,Bob Ray\r\n",
    # quotes, non-ASCII, a ragged row
    'identity_id,name\np1,"Lee, Ann"\n',
    "identity_id,name\np1,Adrianne León\n",
    "identity_id,name,aliases\np1,Ann Lee\n",
]
CSV_ERRORS = [
    "identity_id,name\np1,Ann\np1,Bob\n",  # duplicate id
    "identity_id,name\np1,Ann\np2,Ann\n",  # duplicate name
    "identity_id,name\np1,\n",  # empty name
    "identity_id,name\np1,---\n",  # no letter or digit
    "identity_id,name\np/1,Ann\n",  # id not path-safe
    "identity_id,name,sex\np1,Ann,x\n",  # bad sex
    "identity_id,name,aliases\np1,Ann,Bob\np2,Bob,\n",  # alias then the same name
    "identity_id,name\np1,A\x07nn\n",  # control character
]


@pytest.mark.parametrize("text", CSV_CASES + CSV_ERRORS)
def test_csv_cases_parse_or_fail_with_a_line(tmp_path, text):
    """Plain, spaced, blank-lined, CRLF, quoted, accented and ragged CSV parse; each bad one names its line."""
    path = tmp_path / "names.csv"
    path.write_bytes(text.encode("utf-8"))
    if text in CSV_ERRORS:
        with pytest.raises(InputFileError, match=r"names\.csv: line \d+: "):
            parse_names(path)
    else:
        table, stats = parse_names(path)
        assert table.num_rows == stats["identities"] > 0
        assert all(" " not in (n[0], n[-1]) and "  " not in n for n in table.column("name").to_pylist())


def test_identity_id_check_agrees_with_its_regex():
    import re

    from idia.mine.names import valid_identity_id

    spec = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")  # the documented rule, as a regex

    cases = [
        "a",
        "-",
        "__",
        "a-b_c",
        "A9",
        "a" * 64,
        "a" * 65,
        "a b",
        "a.b",
        "é",
        "a\n",
        "",
        "ab/c",
        "1",
        "x\u00b2",
        "٣",
    ]
    for c in cases:
        assert valid_identity_id(c) == bool(spec.match(c)), c


def test_parsing_builds_valid_arrays_without_importing_pandas(tmp_path):
    """The names are parsed before the engine starts: pyarrow's pa.array() on Python objects would import pandas
    first (~0.2 s); the table is built from buffers instead, nulls (sex) and lists (aliases) included."""
    import subprocess
    import sys

    p = write(
        tmp_path, "identity_id,name,aliases,sex\na1,Ann Lee,Annie|A. Lee,f\nb2,Bo Chen,,\nc3,Zoë Ångström,,m\n", "n.csv"
    )
    code = (
        "import sys; from idia.mine.names import parse_names; t, _ = parse_names(sys.argv[1]); t.validate(full=True); "
        "print('pandas' in sys.modules, t.column('sex').null_count, t.column('aliases').to_pylist())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=True).stdout
    assert out.split()[:2] == ["False", "1"] and "[['Annie', 'A. Lee'], [], []]" in out
    table, _ = parse_names(p)
    assert table.column("name").to_pylist() == ["Ann Lee", "Bo Chen", "Zoë Ångström"]
    assert table.column("sex").to_pylist() == ["f", None, "m"]
