"""The controlled experiment over training seeds: one reduced world + tiny CLIP + attack per seed, rates over seeds."""

from __future__ import annotations

import json
import socket

import pandas as pd
import pytest

from idia.core.config import ConfigError
from pipelines.run import PipelineConfig, WorldSection, run_pipeline

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_seeds_give_every_group_mean_and_std_over_seeds(tmp_path):
    cfg = PipelineConfig(
        out=str(tmp_path / "seeds"),
        world=WorldSection(preset="reduced", train_preset="reduced", port=_free_port()),
        mine={"buckets": 2},
        download={"image_size": 64, "processes": 1, "threads": 8, "crop_to_bbox": False},
        attack={
            "k": [1, 10],
            "draws": 3,
            "num_candidates": 60,
            "group_size": 8,
            "n_workers": 1,
            "cache_dir": str(tmp_path / "cache"),
        },
        headline_k=10,
        seeds=[3, 4],
    )
    summary = run_pipeline(cfg)
    out = tmp_path / "seeds"
    per_seed = {s: pd.read_csv(out / f"seed-{s}" / "evaluate" / "sweep.csv").set_index("group") for s in (3, 4)}
    worlds = [json.loads((out / f"seed-{s}" / "world" / "world.json").read_text())["seed"] for s in (3, 4)]
    assert worlds == [3, 4]  # each seed its own world (and model and attack draws)
    table = pd.read_csv(out / "seeds.csv").set_index("group")
    assert set(table.index) == set(per_seed[3].index) and (table["n_seeds"] == 2).all()
    for group, r in table.iterrows():
        rates = pd.Series([per_seed[3].loc[group, "mean"], per_seed[4].loc[group, "mean"]])
        assert r["mean_over_seeds"] == pytest.approx(rates.mean())
        assert r["std_over_seeds"] == pytest.approx(rates.std(ddof=1))
        assert r["mean_std_over_draws"] == pytest.approx(
            (per_seed[3].loc[group, "std"] + per_seed[4].loc[group, "std"]) / 2
        )
    page = (out / "report.html").read_text()
    assert "mean over seeds" in page and "http://" not in page and (out / "plots" / "sweep_over_seeds.png").is_file()
    assert summary["seeds"] == [3, 4] and len(summary["groups"]) == len(table)
    assert "over 2 training seeds" in summary["text"]
    # a rerun resumes every seed's stages
    assert run_pipeline(cfg)["seeds"] == [3, 4]


def test_seeds_need_a_world_and_two_distinct_seeds(tmp_path):
    with pytest.raises(ConfigError, match="needs the world section"):
        run_pipeline(PipelineConfig(out=str(tmp_path / "x"), seeds=[0, 1]))
    with pytest.raises(ConfigError, match="at least two distinct seeds"):
        run_pipeline(PipelineConfig(out=str(tmp_path / "x"), world=WorldSection(preset="reduced"), seeds=[1, 1]))
