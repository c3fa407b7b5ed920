"""One config pattern: typed dataclasses with `option`s, generated command-line options, --config files."""

from __future__ import annotations

import argparse

import pytest

from idia.core.config import ConfigError, from_dict, parse_assignment
from idia.mine.config import MineConfig
from pipelines.options import add_config_options, config_from_args


def _parse(cls, argv):
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_config_options(p, cls)
    return p.parse_args(argv)


def test_options_carry_help_defaults_and_required_marks():
    p = argparse.ArgumentParser()
    add_config_options(p, MineConfig)
    text = p.format_help()
    assert "--buckets BUCKETS" in text and "(default: 16)" in text
    assert "--conf KEY=VALUE" in text and "--skip-bad-files" in text and "--force" in text
    assert "(required)" in text


def test_file_then_options_then_validation(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("names: n.csv\nout: o\nshards: [a.parquet]\nbuckets: 8\nspark_conf: {spark.executor.memory: 2g}\n")
    cfg = config_from_args(
        MineConfig,
        _parse(MineConfig, ["--config", str(f), "--buckets", "4", "--conf", "spark.executor.cores=3"]),
        "mine config",
    )
    assert (cfg.buckets, cfg.shards, cfg.names) == (4, ["a.parquet"], "n.csv")
    assert cfg.spark_conf == {"spark.executor.memory": "2g", "spark.executor.cores": 3}
    with pytest.raises(ConfigError, match=r"mine: names is required \(--names\)"):
        config_from_args(MineConfig, _parse(MineConfig, ["--out", "o", "--shards", "a"]), "mine config")
    with pytest.raises(ConfigError, match="mine: buckets must be in 1..4096, got 0"):
        config_from_args(MineConfig, _parse(MineConfig, ["--config", str(f), "--buckets", "0"]), "mine config")


def test_unknown_keys_and_wrong_types_name_the_key():
    with pytest.raises(ConfigError, match=r"x: unknown key\(s\) bogus"):
        from_dict(MineConfig, {"bogus": 1}, "x")
    with pytest.raises(ConfigError, match=r"x.buckets: expected a number, got 'many'"):
        from_dict(MineConfig, {"buckets": "many"}, "x")


def test_settings_leave_out_execution_options_and_the_folder():
    cfg = MineConfig(shards=["a"], names="n", out="o", master="spark://h:7077", batch_size=5)
    s = cfg.settings()
    assert "master" not in s and "batch_size" not in s and "out" not in s and "force" not in s
    assert s["match"] == "normalized" and s["buckets"] == 16


def test_assignments_read_values_as_yaml():
    assert parse_assignment("attack.k=[1, 5]", "--set") == ("attack.k", [1, 5])
    assert parse_assignment("a=true", "--set") == ("a", True)
    assert parse_assignment("a=x=y", "--set") == ("a", "x=y")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_assignment("novalue", "--set")


def test_yaml_with_python_tags_is_refused_not_executed(tmp_path):
    """A config file is data: YAML tags that would build Python objects are refused with the file named."""
    from idia.core.config import load_file

    marker = tmp_path / "ran"
    f = tmp_path / "evil.yaml"
    f.write_text(f"out: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=r"evil.yaml: cannot parse"):
        load_file(f)
    assert not marker.exists()
