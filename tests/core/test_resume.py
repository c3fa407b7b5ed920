"""The one resume policy: a folder pinned to its settings, done-markers under its fingerprint, --force."""

from __future__ import annotations

import dataclasses
import json

import pytest

from idia.core.config import defaults_of, option
from idia.core.errors import ConfigError
from idia.core.resume import StageFolder, fingerprint, read_marker, write_marker


def test_nothing_is_pinned_until_a_unit_finishes(tmp_path):
    f = StageFolder(tmp_path / "o", "demo", {"a": 1})
    f.check()
    assert not (tmp_path / "o" / "_settings.json").exists()
    StageFolder(
        tmp_path / "o", "demo", {"a": 2}
    ).check()  # a failed first attempt pins nothing: other settings may follow


def test_same_settings_resume_units_and_other_settings_name_every_changed_key(tmp_path):
    f = StageFolder(tmp_path, "demo", {"a": 1, "b": [1, 2], "c": "x"})
    f.check()
    assert f.done("u1") is None
    f.mark_done("u1", {"rows": 5})
    saved = json.loads((tmp_path / "_settings.json").read_text())
    assert saved == {"stage": "demo", "fingerprint": f.fingerprint, "settings": {"a": 1, "b": [1, 2], "c": "x"}}
    again = StageFolder(tmp_path, "demo", {"c": "x", "b": [1, 2], "a": 1})  # key order does not matter
    again.check()
    assert again.done("u1") == {"rows": 5, "fingerprint": f.fingerprint}
    other = StageFolder(tmp_path, "demo", {"a": 2, "b": [1, 2], "d": True})
    with pytest.raises(
        ConfigError,
        match=r"holds demo results made with other settings "
        r"\(a: 1 -> 2; c: \"x\" -> null; d: null -> true\); .*--force",
    ):
        other.check()


def test_force_clears_markers_and_settings(tmp_path):
    StageFolder(tmp_path, "demo", {"a": 1}).mark_done("u1")
    forced = StageFolder(tmp_path, "demo", {"a": 2}, force=True)
    forced.check()
    assert forced.done("u1") is None and not (tmp_path / "_settings.json").exists()
    forced.mark_done()
    StageFolder(tmp_path, "demo", {"a": 2}).check()


def test_markers_count_only_under_their_fingerprint(tmp_path):
    fp = fingerprint({"a": 1})
    assert fp == fingerprint({"a": 1}) and fp != fingerprint({"a": 2}) and len(fp) == 16
    write_marker(tmp_path, "u", fp, {"n": 3})
    assert read_marker(tmp_path, "u", fp) == {"n": 3, "fingerprint": fp}
    assert read_marker(tmp_path, "u", fingerprint({"a": 2})) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_marker(tmp_path, "bad") is None


@dataclasses.dataclass
class _Cfg:
    a: int = option(0, help="a")
    paths: list[str] = option(default_factory=list, help="once one path, now a list")
    extra: list[str] = option(default_factory=list, help="added later")
    workers: int = option(2, help="not pinned", execution=True)


def test_an_older_folder_resumes_when_only_newer_settings_differ_in_form(tmp_path):
    old = StageFolder(tmp_path, "demo", {"a": 1, "paths": "q.tsv"})  # before "extra" existed, "paths" was one path
    old.check()
    old.mark_done("u1", {"rows": 3})
    old.release()
    newer = StageFolder(tmp_path, "demo", {"a": 1, "paths": ["q.tsv"], "extra": []}, config=_Cfg)
    newer.check()  # extra is at its default and "q.tsv" reads as ["q.tsv"]: the same settings
    assert newer.done("u1") == {"rows": 3, "fingerprint": old.fingerprint}
    newer.mark_done("u2")
    assert read_marker(tmp_path / "_done", "u2", old.fingerprint) is not None  # resumed under the folder's settings
    newer.release()
    for changed, message in (
        ({"a": 1, "paths": ["q.tsv"], "extra": ["x"]}, r'extra: null -> \["x"\]'),  # a new setting, not its default
        ({"a": 1, "paths": ["r.tsv"], "extra": []}, r'paths: "q.tsv" -> \["r.tsv"\]'),
    ):
        with pytest.raises(ConfigError, match=message):
            StageFolder(tmp_path, "demo", changed, config=_Cfg).check()


def test_defaults_cover_the_pinned_settings_only():
    from idia.mine.config import MineConfig

    assert defaults_of(_Cfg) == {"a": 0, "paths": [], "extra": []}
    mine = defaults_of(MineConfig)
    assert mine["also_count"] == [] and mine["match"] == "normalized"
    assert "batch_size" not in mine  # execution settings are not pinned, so they have no default to compare
