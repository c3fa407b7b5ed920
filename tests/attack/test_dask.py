"""The attack job on a real Dask cluster (scheduler + worker processes on 127.0.0.1): accounting, determinism,
resume, warm text cache, and a worker killed midway giving the same tables."""

import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from idia.attack.config import AttackConfig
from idia.core.errors import ConfigError
from jobs.attack import run_attack
from tests.support.dask_cluster import ROOT, DaskTestCluster, register_slow_tasks
from tests.support.tiny_model import save_tiny_model, write_identities, write_image_folder

pytestmark = pytest.mark.cluster

IDS = [f"id{i:02d}" for i in range(10)] + ["skipme", "broken", "ghost"]
TABLES = ("attacks.parquet", "attack_status.parquet", "candidates.parquet")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("attack")
    spec = save_tiny_model(d / "model")
    counts = {i: 4 + (n % 3) for n, i in enumerate(IDS[:10])}
    counts.update({"skipme": 2, "stranger": 3})
    write_image_folder(d / "images", counts, corrupt={"id03": 1, "broken": 2})
    write_identities(d / "ids.parquet", IDS)
    cluster = DaskTestCluster(d / "dask")
    cluster.start_scheduler()
    env = {"PYTHONPATH": str(ROOT)}  # the workers import the test plugin below from tests.support
    cluster.add_worker("a", env, cwd=d / "worker-a")  # each worker in a working directory of its own
    cluster.add_worker("b", env, cwd=d / "worker-b")
    cluster.wait_workers(2)
    register_slow_tasks(cluster.address, 0.3)  # widens the window in which the kill test strikes
    yield d, spec, cluster
    cluster.stop()


def _cfg(d, spec, cluster, out, **kw):
    base = dict(
        images=str(d / "images"),
        identities=str(d / "ids.parquet"),
        model=spec,
        out=str(out),
        k=[1, 3, 5],
        draws=4,
        num_candidates=40,
        cache_dir=str(d / "cache"),
        group_size=1,
        min_images=3,
        scheduler=cluster.address,
        batch_size=4,
    )
    base.update(kw)
    return AttackConfig(**base)


def _same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        assert pq.read_table(a / name).equals(pq.read_table(b / name)), name
    pa_ = sorted(p.name for p in (a / "predictions").glob("*.parquet"))
    assert pa_ == sorted(p.name for p in (b / "predictions").glob("*.parquet"))
    for n in pa_:
        assert pq.read_table(a / "predictions" / n).equals(pq.read_table(b / "predictions" / n)), n


def test_attack_on_dask_accounts_for_everything_and_resumes(world):
    d, spec, cluster = world
    s = run_attack(_cfg(d, spec, cluster, d / "out1"), progress=False)
    assert s["identities_in"] == 13
    assert s["identities_attacked"] == 10
    assert s["identities_skipped_no_images"] == 1  # ghost
    assert s["identities_skipped_too_few_images"] == 1  # skipme: 2 < min_images 3
    assert s["identities_skipped_no_readable_images"] == 1  # broken: only corrupt files
    assert s["images_corrupt"] == 3 and s["images_unknown_identity"] == 3
    assert s["images_listed"] == s["images_encoded"] + s["images_corrupt"]
    assert s["text_prompts_computed"] == 21 * 40
    status = pq.read_table(d / "out1" / "attack_status.parquet").to_pandas().set_index("identity_id")
    assert status.loc["id03", "n_corrupt_images"] == 1 and status.loc["ghost", "reason"] == "no_images"
    attacks = pq.read_table(d / "out1" / "attacks.parquet").to_pandas()
    assert len(attacks) == 10 * 3 * 4
    assert set(attacks[attacks.identity_id == "id00"].k_used) == {1, 3, 4}  # k=5 capped at the 4 images
    assert (attacks.predicted_member == (attacks.correct_templates >= 1)).all()
    preds = pq.read_table(d / "out1" / "predictions").to_pandas()
    assert len(preds) == 21 * (s["images_encoded"])
    preds = preds[preds.identity_id == "id00"]
    assert len(preds) == 4 * 21 and set(preds.template_index) == set(range(21))
    assert not (d / "out1" / "membership.parquet").exists()  # membership is evaluate's

    # a rerun into the same folder resumes: nothing is recomputed, the tables are the same
    again = run_attack(_cfg(d, spec, cluster, d / "out1"), progress=False)
    assert again["groups_resumed"] == again["groups"] == 12 and again["groups_run"] == 0
    # a fresh run with a warm text cache computes no text embedding and gives identical tables
    fresh = run_attack(_cfg(d, spec, cluster, d / "out2"), progress=False)
    assert fresh["text_prompts_computed"] == 0 and fresh["text_cache_hit"] is True
    _same_tables(d / "out1", d / "out2")
    # another output-changing setting on the same folder: an error naming it, before any task runs
    with pytest.raises(ConfigError, match=r"holds attack results made with other settings \(draws: 4 -> 5\)"):
        run_attack(_cfg(d, spec, cluster, d / "out1", draws=5), progress=False)


def test_relative_paths_on_workers_elsewhere_equal_a_local_cluster(world, monkeypatch):
    """The client's relative --images / --out / --cache-dir reach workers running in other folders as the same
    files, and the tables equal a LocalCluster's on this machine."""
    d, spec, cluster = world
    monkeypatch.chdir(d)
    relative = _cfg(d, spec, cluster, "relative", images="images", identities="ids.parquet", cache_dir="cache")
    stats = run_attack(relative, progress=False)
    assert stats["identities_attacked"] == 10 and (d / "relative" / "attacks.parquet").is_file()
    assert not (d / "worker-a" / "relative").exists() and not (d / "worker-b" / "relative").exists()
    # the LocalCluster's worker decodes in 2 processes of its own (its workers are not daemonic), the same tables
    run_attack(_cfg(d, spec, cluster, d / "local", scheduler=None, n_workers=1, decode_processes=2), progress=False)
    _same_tables(d / "relative", d / "local")
    import json

    decode = {json.loads(p.read_text())["timings"]["decode"] for p in (d / "local" / "parts" / "_done").glob("group-*")}
    assert decode == {"processes:2"}


def test_workers_without_idia_or_with_other_sources_are_refused_by_name(world, tmp_path):
    """Before any task: a worker whose Python lacks idia, and one importing another copy of it (another version),
    are each named with what is wrong; nothing is written."""
    import shutil

    from distributed import Client

    from idia.core.errors import UserError
    from jobs.dask_cluster import check_workers

    d, spec, _ = world
    other = tmp_path / "other-idia"
    shutil.copytree(ROOT / "idia", other / "idia", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "idia" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9+other-'))
    bad = DaskTestCluster(tmp_path / "dask")
    try:
        bad.start_scheduler()
        bad.add_worker("bare", cwd=tmp_path / "bare", without_idia=True)
        bad.add_worker("other", {"PYTHONPATH": str(other)}, cwd=tmp_path / "w-other")
        bad.wait_workers(2)
        with Client(bad.address, timeout="30s") as client:
            names = {w["name"]: a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            with pytest.raises(UserError) as err:
                check_workers(client)
        msg = str(err.value)
        assert f"worker {names['bare']}" in msg and "cannot import idia: ModuleNotFoundError" in msg
        assert f"worker {names['other']}" in msg and "idia 9.9.9+other-" in msg and "but the client has" in msg
        with pytest.raises(UserError, match="cannot import idia"):
            run_attack(_cfg(d, spec, bad, tmp_path / "out"), progress=False)
        assert not (tmp_path / "out" / "attacks.parquet").exists()
    finally:
        bad.stop()


def test_a_worker_killed_midway_gives_the_same_tables(world):
    d, spec, cluster = world
    if not (d / "out1" / "attacks.parquet").exists():
        run_attack(_cfg(d, spec, cluster, d / "out1"), progress=False)
    out = d / "killed"
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "attack",
        "--images",
        str(d / "images"),
        "--identities",
        str(d / "ids.parquet"),
        "--model",
        spec,
        "--out",
        str(out),
        "--k",
        "1,3,5",
        "--draws",
        "4",
        "--num-candidates",
        "40",
        "--cache-dir",
        str(d / "cache"),
        "--group-size",
        "1",
        "--min-images",
        "3",
        "--batch-size",
        "4",
        "--scheduler",
        cluster.address,
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(Path(__file__).parents[2]))
    markers = out / "parts" / "_done"
    deadline = time.time() + 120
    done_at_kill = None
    while time.time() < deadline and proc.poll() is None:
        n = len(list(markers.glob("group-*.json"))) if markers.exists() else 0
        if n >= 1:
            cluster.kill(cluster.workers[1])
            done_at_kill = n
            break
        time.sleep(0.05)
    output = proc.communicate(timeout=180)[0].decode()
    assert proc.returncode == 0, output[-3000:]
    assert done_at_kill is not None and done_at_kill < 12, "the run finished before a worker could be killed"
    _same_tables(d / "out1", out)
    assert "identities_attacked" in output  # the one-screen summary


def test_the_client_killed_as_its_merge_starts_reruns_to_the_same_tables(world):
    """kill -9 of the `idia attack` client (its process group; the Dask workers live on) once every group is done,
    as the merge starts: the rerun recomputes nothing, merges, and gives the tables of an undisturbed run."""
    from tests.support.processes import kill_group_when

    d, spec, cluster = world
    if not (d / "out1" / "attacks.parquet").exists():
        run_attack(_cfg(d, spec, cluster, d / "out1"), progress=False)
    out = d / "client-killed"
    cmd = [sys.executable, "-m", "pipelines.cli", "attack", "--images", str(d / "images"), "--identities"]
    cmd += [str(d / "ids.parquet"), "--model", spec, "--out", str(out), "--k", "1,3,5", "--draws", "4"]
    cmd += ["--num-candidates", "40", "--cache-dir", str(d / "cache"), "--group-size", "1", "--min-images", "3"]
    cmd += ["--batch-size", "4", "--scheduler", cluster.address, "--quiet"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT), start_new_session=True
    )
    markers = out / "parts" / "_done"
    kill_group_when(proc, lambda: markers.exists() and len(list(markers.glob("group-*.json"))) == 12, 180, poll=0.005)
    assert not (out / "stats.json").exists()  # killed before the merge finished
    again = run_attack(_cfg(d, spec, cluster, out), progress=False)
    assert again["groups_run"] == 0 and again["groups_resumed"] == 12
    _same_tables(d / "out1", out)


def test_the_stage_without_an_engine_gives_the_dask_tables(world):
    """The attack logic is plain functions: on the in-process executor it writes the same tables as on Dask."""
    from contextlib import nullcontext

    from idia.attack.stage import run_attack as run_stage
    from idia.core.tasks import SerialExecutor

    d, spec, cluster = world
    if not (d / "out1" / "attacks.parquet").exists():
        run_attack(_cfg(d, spec, cluster, d / "out1"), progress=False)
    s = run_stage(_cfg(d, spec, cluster, d / "serial"), lambda: nullcontext(SerialExecutor()))
    assert s["groups_run"] == 12 and s["identities_attacked"] == 10
    _same_tables(d / "out1", d / "serial")
