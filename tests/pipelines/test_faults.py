"""Faults during a whole `idia run` (the reduced world, real engines): Ctrl-C and SIGTERM in each stage, a corrupt
completion marker, a truncated webdataset shard, a full disk. Each ends with a clear message and nothing
half-written in view, and the run that follows completes with the same tables as the undisturbed run (compared row
by row: `run_tables`). Fault injection lives here, in the tests (signals, a tmpfs, files cut short), never in idia.

The world and the tiny CLIP are the undisturbed run's own (`world_dir`), so the faults hit the pipeline's stages."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from idia.core.config import to_dict
from pipelines.run import run_pipeline
from tests.support.pipeline_config import run_tables

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _config_file(cfg, out: Path, folder: Path) -> Path:
    """The undisturbed run's config with another run folder (the same world, model and loopback port)."""
    data = to_dict(dataclasses.replace(cfg, out=str(out), world_dir=str(Path(cfg.out))))
    path = folder / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _hidden_leftovers(out: Path) -> list[str]:
    """Temporary files of atomic writes, and lock files, left in view after a run ended."""
    return sorted(
        str(p.relative_to(out.parent))
        for p in out.parent.rglob("*")
        if p.name.endswith(".tmp") or "idia-lock" in p.name
    )


def _interrupt(config: Path, stage: str, sig: int, ready) -> str:
    """Start `idia run`, wait for `stage`'s header and then until `ready()` (the stage is at work: a file it writes
    while working), send `sig` (SIGINT to the process group, as Ctrl-C does; SIGTERM to the command, as a scheduler
    does); the command's output. (A fixed delay after the header could land while Spark's JVM is still starting on
    a loaded machine, which is a different fault, tested in tests/mine/test_spark_session.py.)"""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
        start_new_session=True,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if f"] {stage} ===" in line:
            break
    deadline = time.time() + 120
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    rest = proc.communicate(timeout=180)[0]
    output = "".join(lines) + rest
    expected = 130 if sig == signal.SIGINT else 143
    assert proc.returncode == expected, output[-3000:]
    return output


def test_ctrl_c_and_sigterm_in_each_stage_then_rerun_give_the_undisturbed_tables(run, tmp_path):
    cfg, out, _ = run
    config = _config_file(cfg, tmp_path / "run", tmp_path)
    r = tmp_path / "run"

    def group_markers() -> int:
        return len(list((r / "attack" / "parts" / "_done").glob("group-*.json")))

    def more_groups_than(n: int):
        return lambda: group_markers() > n

    for stage, sig, ready in (
        ("mine", signal.SIGINT, lambda: any(r.glob("mine/.mine-staging-*/units/*.json"))),
        ("download", signal.SIGTERM, lambda: (r / "download" / "rounds" / "000" / "round.json").exists()),
        ("attack", signal.SIGINT, more_groups_than(0)),
        ("attack", signal.SIGTERM, more_groups_than(group_markers())),
    ):
        output = _interrupt(config, stage, sig, ready)
        what = "interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)"
        assert f"idia run: {what}; finished units are kept" in output and "Traceback" not in output
        assert _hidden_leftovers(tmp_path / "run") == []  # no temporary file and no lock left behind
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", str(config)],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert run_tables(str(tmp_path / "run")) == run_tables(str(out))


def test_interrupted_while_the_world_is_made_and_the_model_trained_the_rerun_gives_the_same_model(run, tmp_path):
    """SIGTERM while the synthetic world is generated and Ctrl-C while the tiny CLIP trains (this run makes its own
    world and model): the rerun gives the undisturbed run's world files, model weights and tables."""
    cfg, out, _ = run
    data = to_dict(dataclasses.replace(cfg, out=str(tmp_path / "run")))
    config = tmp_path / "own-world.yaml"
    config.write_text(yaml.safe_dump(data))
    r = tmp_path / "run"
    for stage, sig, ready in (
        ("world", signal.SIGTERM, lambda: any((r / "world").rglob("*.jpg"))),
        ("train", signal.SIGINT, lambda: time.sleep(1.5) is None),  # training writes nothing while it runs
    ):
        output = _interrupt(config, stage, sig, ready)
        assert "finished units are kept" in output and "Traceback" not in output
        assert _hidden_leftovers(tmp_path / "run") == []
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", str(config)], capture_output=True, text=True, cwd=str(ROOT)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    new, old = tmp_path / "run", Path(out)
    assert (new / "model" / "open_clip_model.safetensors").read_bytes() == (
        old / "model" / "open_clip_model.safetensors"
    ).read_bytes()
    for f in sorted((old / "world").rglob("*")):
        if f.is_file() and f.suffix in (".parquet", ".csv", ".tsv", ".jpg"):
            assert (new / "world" / f.relative_to(old / "world")).read_bytes() == f.read_bytes(), f
    assert run_tables(str(new)) == run_tables(str(old))


def test_a_corrupt_completion_marker_reruns_that_stage_only(run):
    cfg, out, _ = run
    before = run_tables(str(out))
    marker = out / "evaluate" / "_done" / "stage.json"
    marker.write_text('{"fingerprint": "trunc')  # cut short: not a marker
    again = run_pipeline(cfg)
    assert again["stages"]["attack"]["groups_run"] == 0  # the stages before it resume from their markers
    assert json.loads(marker.read_text())["fingerprint"]  # evaluate ran again and wrote a whole marker
    assert run_tables(str(out)) == before


def test_a_truncated_shard_stops_the_attack_naming_it_and_a_fresh_download_recovers(run, tmp_path):
    from idia.core.errors import UserError
    from jobs.attack import run_attack
    from jobs.download import run_download
    from pipelines.run import plan_pipeline

    cfg, out, _ = run
    folder = tmp_path / "run"
    shutil.copytree(out, folder, ignore=shutil.ignore_patterns("world", "model", "attack", "evaluate"))
    shard = sorted((folder / "download" / "shards").glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])  # a disk fault: the tar cut short
    plan = plan_pipeline(dataclasses.replace(cfg, out=str(folder), world_dir=str(out)))
    with pytest.raises(UserError, match=rf"{shard.name}: .*(truncated|corrupt).*rerun the download"):
        run_attack(plan.attack, progress=False)
    assert not (folder / "attack" / "attacks.parquet").exists()
    # what the message says: the shard's files removed, the download rerun (it fetches that shard only), then the attack
    for f in shard.parent.glob(shard.stem + "*"):
        f.unlink()
    from idia.world.server import LoopbackServer

    w = plan.world[0]
    with LoopbackServer(plan.world[3], host=w.host, port=w.port):
        run_download(plan.download)
    run_attack(plan.attack, progress=False)
    from idia.evaluate.stage import run_evaluate

    run_evaluate(plan.evaluate)
    got = {k: v for k, v in run_tables(str(folder)).items() if not k.startswith("compare/")}
    assert got == {k: v for k, v in run_tables(str(out)).items() if k in got} and "attack/attacks.parquet" in got


def _fill(disk: Path, leave: int) -> Path:
    """A ballast file that takes the disk's free space but `leave` bytes."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    with open(ballast, "r+b") as fh:
        fh.truncate(max(0, ballast.stat().st_size - leave))
    return ballast


def _cli_run(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", str(config)], capture_output=True, text=True, cwd=str(ROOT)
    )


def test_a_full_disk_in_each_stage_stops_with_one_line_and_the_rerun_completes(run, tmp_path):
    """The run folder on a tmpfs (a real disk) filled to a few KB, stage by stage (evaluate, then attack, download,
    mine: each time that stage and those after it start over): the run stops in that stage with one line naming
    "No space left on device" and keeps only whole files; with the space back the same command completes, with
    the undisturbed run's tables."""
    from schemas.files import RUN_STAGE_DIRS

    cfg, out, _ = run
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()}): the full-disk test needs root")
    try:
        config = _config_file(cfg, disk / "run", tmp_path)
        first = _cli_run(config)
        assert first.returncode == 0, first.stderr[-3000:]
        order = ["mine", "download", "attack", "evaluate"]
        for stage in reversed(order):
            for later in order[order.index(stage) :]:
                shutil.rmtree(disk / "run" / RUN_STAGE_DIRS[later], ignore_errors=True)
            ballast = _fill(disk, leave=8192)
            full = _cli_run(config)
            ballast.unlink()
            text = full.stdout + full.stderr
            headers = [ln for ln in full.stdout.splitlines() if ln.startswith("=== [") and "done in" not in ln]
            assert full.returncode == 2 and "idia run: error: No space left on device" in full.stderr, text[-3000:]
            assert headers[-1].endswith(f"] {stage} ==="), (stage, headers)  # it stopped in that stage
            assert "Traceback" not in text, text[-3000:]
            assert [p for p in (disk / "run").rglob("*") if p.name.endswith(".tmp")] == []
        done = _cli_run(config)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert run_tables(str(disk / "run")) == run_tables(str(out))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
