"""The study preset end to end on a LAION-shaped sample: shards mentioning the study's 548 names (idia sample-laion),
FaceScrub-layout query files and the German personalities' URL lists served over loopback HTTP, two tiny CLIPs;
and `idia run pipelines/laion400m.yaml --dry-run` showing the study's value for every setting."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from idia.core.census import PUBLISHED_COUNTS_CSV
from idia.mine.sample import SampleConfig, generate
from idia.world.server import LoopbackServer
from pipelines.cli import main as cli_main
from pipelines.presets import STUDY_GERMAN_QUERIES, STUDY_NAME_FIXES
from pipelines.run import PipelineConfig, run_pipeline
from tests.support.tiny_model import save_tiny_model, write_image_folder

pytestmark = pytest.mark.slow

# FaceScrub people as FaceScrub's own files spell them (two of them misspelled, fixed by the study's table).
ACTORS = ["Leslie Neilsen", "Tom Hanks"]
ACTRESSES = ["Tatyana M. Ali", "Jennifer Aniston"]
PHOTOS = 4


def test_dry_run_of_the_laion_config_shows_the_study(capsys):
    assert cli_main(["run", "pipelines/laion400m.yaml", "--dry-run"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["mine"]["match"], d["mine"]["also_count"], d["mine"]["member_min"], d["mine"]["member_max"]) == (
        "paper",
        ["normalized"],
        1,
        300,
    )
    assert d["download"]["crop_to_bbox"] is False and d["download"]["query_aliases"] == str(STUDY_NAME_FIXES)
    german = [q for q in d["download"]["queries"] if q.endswith("laion_european_celebs")]
    assert len(german) == 1 and len(list(STUDY_GERMAN_QUERIES.rglob("*.txt"))) == 18
    a = d["attack"]
    assert a["k"] == [*range(1, 30, 2), 30] and (a["draws"], a["tau"], a["min_images"]) == (20, 1, 30)
    assert (a["precision"], a["fake_names"], a["seed"], a["num_candidates"]) == ("fp32", "study", 42, 1000)
    assert a["identities"].endswith("/download")  # the names list with the sexes the query files gave
    assert d["evaluate"]["eval_subset"] is True and d["evaluate"]["ground_truth"].endswith("/mine")
    assert d["pipeline"]["headline_k"] == 30 and d["pipeline"]["preset"] == "study"


def _query_file(path, names, srv, first):
    lines = ["name\timage_id\tface_id\turl\tbbox\tsha256"]
    for i, name in enumerate(names):
        for j in range(PHOTOS):
            lines.append(
                f"{name}\t{(first + i) * 100 + j}\t{j}\t{srv.url(f'p/p{first + i:02d}/{j:03d}.png')}\t1,1,20,20\t"
            )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_study_preset_end_to_end(tmp_path):
    sample = tmp_path / "sample"
    generate(SampleConfig(out=str(sample), shards=2, rows_per_shard=2500, names_file=str(PUBLISHED_COUNTS_CSV), seed=3))
    site = tmp_path / "site"
    german = sorted(STUDY_GERMAN_QUERIES.rglob("*.txt"))
    n_people = len(ACTORS) + len(ACTRESSES) + len(german)
    write_image_folder(site / "p", {f"p{i:02d}": PHOTOS for i in range(n_people)}, seed=5)
    with LoopbackServer(site) as srv:
        q = tmp_path / "queries"
        q.mkdir()
        _query_file(q / "facescrub_actors.txt", ACTORS, srv, 0)
        _query_file(q / "facescrub_actresses.txt", ACTRESSES, srv, len(ACTORS))
        # The study's German URL lists, each URL replaced by a photo on the loopback server (the first PHOTOS lines).
        for i, f in enumerate(german, len(ACTORS) + len(ACTRESSES)):
            dest = q / "celebs" / f.relative_to(STUDY_GERMAN_QUERIES)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text("".join(srv.url(f"p/p{i:02d}/{j:03d}.png") + "\n" for j in range(PHOTOS)), encoding="utf-8")
        models = [save_tiny_model(tmp_path / f"clip{s}", seed=s) for s in (0, 1)]
        out = tmp_path / "run"
        cfg = PipelineConfig(
            out=str(out),
            preset=None,
            mine={"shards": [str(sample / "shards" / "*.parquet")], "names": str(sample / "names.csv"), "buckets": 4},
            download={
                "queries": [str(q / "facescrub_actors.txt"), str(q / "facescrub_actresses.txt"), str(q / "celebs")],
                "identities": str(sample / "names.csv"),
                "allowed_networks": ["127.0.0.1/32"],
                "image_size": 32,
                "processes": 1,
                "threads": 8,
            },
            attack={"k": [1, 3], "draws": 3, "min_images": 3, "n_workers": 1, "cache_dir": str(tmp_path / "cache")},
            models=models,
            compare_published=True,
        )
        from pipelines.presets import apply_preset

        data = apply_preset({k: v for k, v in cfg.__dict__.items() if v is not None}, "study")
        data["headline_k"] = 3
        summary = run_pipeline(PipelineConfig(**data))
    # Mining: the study's regex counts, the normalised ones beside them.
    by_mode = pq.read_table(out / "mine" / "counts_by_mode.parquet").to_pandas()
    assert set(by_mode["match_mode"]) == {"paper", "normalized"}
    # Download: every query photo, the FaceScrub misspellings mapped, the sexes from the files and folders.
    req = json.loads((out / "download" / "requests.json").read_text())
    assert req["requested"] == n_people * PHOTOS and req.get("skipped_unknown_name", 0) == 0
    people = pq.read_table(out / "download" / "identities.parquet").to_pandas().set_index("name")
    assert people.loc["Leslie Nielsen", "sex"] == "m" and people.loc["Tatyana Ali", "sex"] == "f"
    assert people.loc["Malu Leicher", "sex"] == "f" and people.loc["Johannes B. Kerner", "sex"] == "m"
    # Attack: the study's candidates (548 real + 226 fakes per sex), fp32, everyone with photos attacked.
    stats = json.loads((out / "attack" / "stats.json").read_text())
    assert stats["candidates"] == 1000 - stats.get("fakes_dropped_as_real_or_repeated", 0)
    assert stats["fake_names"] == "study" and stats["identities_attacked"] == n_people
    assert json.loads((out / "attack" / "config.json").read_text())["precision"] == "fp32"
    # Evaluate + report: the heatmap, the per-identity table, the list diff, one row per model.
    ev = out / "evaluate"
    assert (ev / "plots" / "tpr_by_bin_and_k.png").stat().st_size > 2000
    cells = pd.read_csv(ev / "tpr_by_bin_and_k.csv")
    assert set(cells["k"]) == {1, 3} and cells["tpr_mean"].between(0, 1).all()
    per = pd.read_csv(ev / "per_identity.csv")
    assert {"bin", "captions_normalized", "score", "predicted_member"} <= set(per.columns)
    assert len(per) == n_people
    report = (out / "report.md").read_text()
    assert "## TPR per occurrence bin and k" in report and "## Regenerated list vs the study's published one" in report
    assert "## Models" in report
    section = report[report.index("## Models") :].split("\n## ")[0]
    assert len([r for r in section.splitlines() if r.startswith("| local-dir:")]) == 2
    html = (out / "report.html").read_text()
    assert "TPR per occurrence bin and k" in html and "captions_normalized" in html and "Models (k = 3" in html
    assert (out / "models").is_dir() and len(list((out / "models").glob("*/evaluate/metrics.parquet"))) == 1
    assert summary["k"] == 3
    shutil.rmtree(out / "download" / "shards")  # faces: not left in the test's temp folder longer than needed
