"""The one resume policy: a folder pinned to its settings, done-markers under its fingerprint, --force."""

from __future__ import annotations

import json

import pytest

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


def test_a_setting_added_later_at_its_default_resumes_an_older_folder(tmp_path):
    old = StageFolder(tmp_path, "demo", {"a": 1})  # made before setting "extra" existed
    old.check()
    old.mark_done("u1", {"rows": 3})
    old.release()
    newer = StageFolder(tmp_path, "demo", {"a": 1, "extra": []}, defaults={"a": 0, "extra": []})
    newer.check()  # the folder was made with extra's default: not a change
    assert newer.done("u1") == {"rows": 3, "fingerprint": old.fingerprint}
    newer.mark_done("u2")
    assert read_marker(tmp_path / "_done", "u2", old.fingerprint) is not None  # resumed under the folder's settings
    newer.release()
    changed = StageFolder(tmp_path, "demo", {"a": 1, "extra": ["x"]}, defaults={"extra": []})
    with pytest.raises(ConfigError, match=r'extra: null -> \["x"\]'):
        changed.check()  # a non-default value of the new setting is a change


def test_stage_configs_report_their_defaults():
    from idia.download.config import DownloadConfig
    from idia.mine.config import MineConfig

    mine = MineConfig().defaults()
    assert mine["also_count"] == [] and mine["match"] == "normalized"
    assert "batch_size" not in mine  # execution settings are not pinned, so they have no default to compare
    assert "max_body_bytes" in DownloadConfig().defaults()
