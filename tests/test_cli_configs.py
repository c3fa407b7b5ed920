"""Stage configs from the command line: `--config FILE` values, with the options given on the command line on top."""

from __future__ import annotations

import argparse

import pytest

from idia.core.config import ConfigError
from jobs import attack, download, evaluate


def _parse(module, argv):
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return p.parse_args(argv)


def test_attack_options_override_the_config_file(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("model: ViT-B-32\ndraws: 5\ntau: 2\nk: [1, 2]\n")
    cfg = attack.config_from_args(_parse(attack, ["--config", str(f), "--tau", "3", "--k", "1,4,9"]))
    assert (cfg.model, cfg.draws, cfg.tau, cfg.k) == ("ViT-B-32", 5, 3, [1, 4, 9])


def test_config_file_with_an_unknown_key_is_refused(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text("attack: a\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        evaluate.main(_parse(evaluate, ["--config", str(f)]))


@pytest.mark.parametrize("flag, allow_all, networks", [
    ([], False, []),
    (["--allow-private-network"], True, []),
    (["--allow-private-network", "127.0.0.1/32,10.1.0.0/16"], False, ["127.0.0.1/32", "10.1.0.0/16"]),
])
def test_download_private_network_flag(tmp_path, flag, allow_all, networks):
    f = tmp_path / "d.yaml"
    f.write_text(f"out: {tmp_path / 'o'}\nimage_size: 96\n")
    cfg = download.config_from_args(_parse(download, ["--config", str(f), "--queries", "q.tsv", *flag]))
    assert (cfg.out, cfg.queries, cfg.image_size) == (str(tmp_path / "o"), "q.tsv", 96)
    assert (cfg.allow_private_network, cfg.allowed_networks) == (allow_all, networks)
