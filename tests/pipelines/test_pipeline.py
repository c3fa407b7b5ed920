"""The whole pipeline on a reduced synthetic world: world -> tiny CLIP -> Spark mine -> img2dataset download over
loopback HTTP -> Dask attack -> evaluate -> report; then a rerun that resumes instead of recomputing."""

from __future__ import annotations

import dataclasses
import json
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from idia.core.config import ConfigError
from pipelines.cli import main as cli_main
from pipelines.run import PipelineConfig, WorldSection, load_pipeline, run_pipeline
from tests.support.pipeline_config import reduced_config, run_tables

pytestmark = pytest.mark.slow


def test_pipeline_runs_end_to_end_and_members_score_above_non_members(run):
    cfg, out, summary = run
    assert (out / "report.md").is_file()
    report = (out / "report.md").read_text()
    assert "## Headline" in report and "## Injection sweep" in report
    for png in ("rates_vs_k.png", "rates_vs_tau.png", "score_distribution.png", "sweep_tpr_vs_training_images.png"):
        assert (out / "evaluate" / "plots" / png).stat().st_size > 1000, png
    assert summary["k"] == 10 and "tpr" in summary["headline"] and "fpr" in summary["headline"]

    truth = pd.read_csv(out / "world" / "truth.csv")
    attacks = pq.read_table(out / "attack" / "attacks.parquet").to_pandas()
    at_k = attacks[attacks["k"] == attacks["k"].max()].merge(truth, on="identity_id")
    member_score = at_k[at_k["is_member"]]["correct_templates"].mean()
    non_member_score = at_k[~at_k["is_member"]]["correct_templates"].mean()
    # The controlled experiment's claim in miniature: people whose names and images were in training score higher.
    assert member_score > non_member_score, (member_score, non_member_score)


def test_mined_ground_truth_matches_the_world(run):
    _, out, _ = run
    truth = pd.read_csv(out / "world" / "truth.csv")
    occ = pq.read_table(out / "mine" / "identity_lists" / "occurrences.parquet").to_pandas()
    merged = truth.merge(occ, on="identity_id", how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), "every identity under test is in the mined list, and only those"
    assert ((merged["membership"] == "member") == merged["is_member"]).all()
    # Each member's mined caption count is at least its injected training images (captions name the person).
    members = merged[merged["is_member"]]
    assert (members["count"] >= members["n_train_images"]).all()


def test_every_row_url_and_identity_is_accounted_for(run):
    _, out, summary = run
    mine = json.loads((out / "mine" / "stats.json").read_text())
    totals = mine.get("totals", mine)
    assert totals["rows_read"] == totals["null_or_empty"] + totals["unmatched"] + totals["matched"]

    queries = pd.read_csv(out / "world" / "queries.tsv", sep="\t")
    index = pq.read_table(out / "download" / "index.parquet").to_pandas()
    assert len(index) == len(queries), "every query URL ends in exactly one state"
    assert set(index["status"]) <= {"success", "failed"}

    ids = pd.read_csv(out / "world" / "identities.csv")
    status = pq.read_table(out / "attack" / "attack_status.parquet").to_pandas()
    assert sorted(status["identity_id"]) == sorted(ids["identity_id"])
    assert ((status["status"] == "attacked") | (status["status"] == "skipped")).all()


def test_rerun_resumes_and_gives_identical_tables(run):
    cfg, out, _ = run
    before = pq.read_table(out / "attack" / "attacks.parquet").to_pandas()
    again = run_pipeline(cfg)
    after = pq.read_table(out / "attack" / "attacks.parquet").to_pandas()
    pd.testing.assert_frame_equal(before, after)
    # Nothing expensive is recomputed: the world is not re-rendered, the model not retrained, the shards not re-mined.
    assert again["stages"]["world"]["skipped"] is True
    assert again["stages"]["train"]["skipped"] is True
    assert again["stages"]["mine"].get("resumed") is True
    assert again["stages"]["attack"]["groups_run"] == 0


def test_a_changed_setting_stops_the_rerun_naming_it(run, tmp_path):
    cfg, out, _ = run
    changed = PipelineConfig(**{**cfg.__dict__, "attack": {**cfg.attack, "draws": 6}})
    with pytest.raises(ConfigError, match=r"attack results made with other settings \(draws: 5 -> 6\)"):
        run_pipeline(changed)


def test_pipeline_config_rejects_unknown_and_wired_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: x\nmine: {}\nattack: {}\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_pipeline(bad)
    cfg = reduced_config(tmp_path / "r")
    cfg.mine = {"out": "/elsewhere"}
    with pytest.raises(ConfigError, match="set by the pipeline"):
        run_pipeline(cfg)


def test_dry_run_prints_every_resolved_stage_with_overrides(tmp_path, capsys):
    cfgfile = tmp_path / "p.yaml"
    cfgfile.write_text(
        "out: runs/x\nworld: {preset: reduced, train_preset: reduced}\nmine: {buckets: 4}\n"
        "attack: {k: [1, 3], draws: 5}\n"
    )
    rc = cli_main(
        [
            "run",
            str(cfgfile),
            "--dry-run",
            "--set",
            "attack.draws=7",
            "--set",
            "world.config.seed=3",
            "--set",
            "mine.match=paper",
        ]
    )
    assert rc == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["attack"]["draws"] == 7 and resolved["attack"]["k"] == [1, 3]
    assert resolved["world"]["seed"] == 3 and resolved["mine"]["match"] == "paper" and resolved["mine"]["buckets"] == 4
    assert resolved["mine"]["out"] == "runs/x/mine" and resolved["attack"]["model"] == "local-dir:runs/x/model"
    assert not (tmp_path / "runs").exists()
    assert cli_main(["run", str(cfgfile), "--dry-run", "--set", "attack.bogus=1"]) == 2


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_html_is_self_contained(run):
    _, out, summary = run
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # no external URL: nothing is fetched when it opens
    import re

    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) >= 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for section in (
        "Headline",
        "Injection sweep",
        "Rates per occurrence bin",
        "Metrics per k",
        "Metrics per tau",
        "Per identity",
        "Accounting",
        "Configuration and versions",
        "Personal data",
    ):
        assert section in page, section
    names = pd.read_csv(out / "world" / "identities.csv")["name"].tolist()
    assert sum(n in page for n in names) == len(names)  # every identity attacked or skipped is in the table
    assert "report.html" in summary["text"]


def test_report_html_renders_in_a_real_browser(run, tmp_path):
    """Headless Chromium: the page loads without script errors, every image decodes, a phone-width screenshot."""
    import subprocess

    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (make browser installs Debian's package where apt-get works)")
    _, out, _ = run
    url = (out / "report.html").resolve().as_uri()
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    import re

    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    assert 'data-errors="0"' in body, body
    ok, total = map(int, re.search(r'data-images-ok="(\d+)/(\d+)"', body).groups())
    assert total >= 4 and ok == total
    shot = tmp_path / "report.png"
    subprocess.run([*base, "--window-size=412,2400", f"--screenshot={shot}", url], capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    import struct

    assert struct.unpack(">II", data[16:24]) == (412, 2400)


def test_redacted_report_shows_ids_not_names(run, tmp_path):
    _, out, _ = run
    target = tmp_path / "shared.html"
    assert cli_main(["report", str(out), "--redact", "--out", str(target)]) == 0
    page = target.read_text()
    ids = pd.read_csv(out / "world" / "identities.csv")
    assert not any(n in page for n in ids["name"]) and all(i in page for i in ids["identity_id"])


def test_lookup_gives_the_mined_count_for_every_identity(run, capsys):
    from idia.mine.lookup import lookup

    _, out, _ = run
    counts = pq.read_table(out / "mine" / "counts.parquet").to_pandas()
    for r in counts.itertuples():
        (hit,) = lookup(out / "mine", r.name.upper(), rows=3)  # names match after normalisation
        assert (hit["identity_id"], hit["n_captions"], hit["n_unique_urls"]) == (
            r.identity_id,
            r.n_captions,
            r.n_unique_urls,
        )
        assert len(hit["rows"]) == min(3, r.n_captions)
    assert cli_main(["lookup", counts["identity_id"][0], "--mine", str(out / "mine")]) == 0
    assert counts["name"][0] in capsys.readouterr().out
    assert cli_main(["lookup", "Nobody Atall", "--mine", str(out / "mine")]) == 2
    assert "closest names" in capsys.readouterr().err


def test_check_one_person_from_their_photos(run, tmp_path):
    """`idia check`: the member the attack found most surely is a member; a non-member is not; bad photo folders."""
    import shutil

    from idia.attack.check import CheckConfig, check_person
    from idia.core.errors import InputFileError

    cfg, out, summary = run
    assert [c["truth"] for c in summary["checks"]] == ["a member", "a non-member"]
    assert summary["checks"][1]["verdict"] == "not member"
    truth = pd.read_csv(out / "world" / "truth.csv")
    people = pd.read_csv(out / "world" / "identities.csv").set_index("identity_id")
    attacks = pq.read_table(out / "attack" / "attacks.parquet").to_pandas()
    at_k = attacks[attacks["k"] == attacks["k"].max()].groupby("identity_id")["correct_templates"].mean()
    best = at_k[at_k.index.isin(truth[truth["is_member"]]["identity_id"])].idxmax()
    photos = out / "world" / "images" / "queries" / best
    cache = str(out.parent / "text-cache")
    r = check_person(
        CheckConfig(
            name=people.loc[best, "name"],
            photos=str(photos),
            model=[f"local-dir:{out / 'model'}"],
            sex=people.loc[best, "sex"],
            mine=str(out / "mine"),
            cache_dir=cache,
        ),
        f"local-dir:{out / 'model'}",
    )
    assert r["verdict"] == "member" and r["correct_templates"] >= 1 and len(r["per_template"]) == 21
    assert r["captions"] > 0 and r["photos"] == len(list(photos.glob("*.jpg")))
    bad = tmp_path / "photos"
    shutil.copytree(photos, bad)
    (bad / "broken.jpg").write_bytes(b"not a photo")
    r2 = check_person(
        CheckConfig(name="Some One", photos=str(bad), model=["x"], k=3, draws=4, cache_dir=cache),
        f"local-dir:{out / 'model'}",
    )
    assert r2["unreadable"] == 1 and r2["k"] == 3 and r2["draws"] == 4
    with pytest.raises(
        InputFileError, match=r"readable photo\(s\), the check needs at least 99; unreadable: broken.jpg"
    ):
        check_person(CheckConfig(name="Some One", photos=str(bad), model=["x"], k=99), "x")


def test_run_folder_on_object_storage_gives_the_same_results(run, s3):
    """The same pipeline with its run folder on an S3 endpoint (moto's server on 127.0.0.1, through s3fs): every
    stage reads and writes the bucket, and the headline and every table equal the local run's. The world and the
    tiny CLIP stay local (world_dir: the local run's own, so neither is made again)."""
    cfg, out, summary = run
    url = s3.url("runs", "demo")
    remote_cfg = dataclasses.replace(cfg, out=url, world_dir=str(out), storage_options=s3.options)
    got = run_pipeline(remote_cfg)
    assert got["stages"]["world"]["skipped"] is True and got["stages"]["train"]["skipped"] is True
    assert got["headline"] == summary["headline"]
    fs = s3.fs()
    root = f"{s3.bucket}/runs/demo"
    for name in ("report.md", "report.html", "summary.json", "evaluate/plots/rates_vs_k.png", "download/shards"):
        assert fs.exists(f"{root}/{name}"), name
    assert not fs.exists(f"{root}/world") and not fs.exists(f"{root}/model")  # kept local, in world_dir

    remote, local = run_tables(root, fs), run_tables(str(out))
    assert sorted(remote) == sorted(local)
    different = sorted(k for k in remote if remote[k] != local[k])
    assert different == [], different
    # The same command again resumes from the markers on the bucket: nothing is fetched or attacked again.
    again = run_pipeline(remote_cfg)
    assert again["stages"]["mine"].get("resumed") is True
    assert again["stages"]["attack"]["groups_run"] == 0
    assert again["headline"] == summary["headline"]


def test_a_run_folder_on_object_storage_needs_a_local_world_dir(tmp_path):
    from pipelines.run import plan_pipeline

    cfg = PipelineConfig(out="s3://bucket/run", world=WorldSection(preset="reduced", train_preset="reduced"))
    with pytest.raises(ConfigError, match=r"pipeline.world_dir: .*s3://bucket/run.*set world_dir"):
        plan_pipeline(cfg)
    with pytest.raises(ConfigError, match=r"pipeline.world_dir: s3://bucket/w is a URL"):
        plan_pipeline(dataclasses.replace(cfg, world_dir="s3://bucket/w"))


def test_the_demo_attack_on_slurm_worker_jobs_gives_the_same_tables(run, slurm, tmp_path):
    """`--cluster slurm`: the demo's attack on Dask workers that Slurm started (dask-jobqueue submits them with
    sbatch to the single-node Slurm the test started), the same tables as the local run; no job left behind."""
    from jobs.attack import run_attack
    from pipelines.run import plan_pipeline

    cfg, out, _ = run
    settings = {
        "jobs": 2,
        "cores": 1,
        "memory": "2GB",
        "walltime": "00:30:00",
        "scheduler_host": "127.0.0.1",
        "log_directory": str(tmp_path / "jobs"),
        "wait_s": 240,
    }
    attack = dataclasses.replace(
        plan_pipeline(cfg).attack, out=str(tmp_path / "attack"), cluster="slurm", slurm=settings
    )
    stats = run_attack(attack, progress=False)
    assert stats["groups_run"] == stats["groups"] > 0
    for name in ("attacks.parquet", "attack_status.parquet"):
        assert pq.read_table(tmp_path / "attack" / name).equals(pq.read_table(out / "attack" / name)), name
    job_logs = sorted((tmp_path / "jobs").glob("*.err"))  # one per sbatch job: the workers' own logs
    assert len(job_logs) == 2, job_logs
    assert all("Starting Worker" in p.read_text() for p in job_logs)
    deadline = time.time() + 60
    while slurm.jobs() and time.time() < deadline:  # the jobs are cancelled when the attack ends
        time.sleep(1)
    assert slurm.jobs() == []
