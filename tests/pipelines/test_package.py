"""The package as a user installs it: the wheel built from this tree, installed into a fresh virtual environment,
runs `idia --version`, `idia --help` and `idia sample-laion` from there (its code and resources from the wheel).

The fresh environment reaches its third-party dependencies in the project's pinned environment (a .pth line after
its own packages) instead of downloading torch's several GB again; that the wheel's declared dependencies are all met
by that pinned stack is checked from the wheel's own metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import idia

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp(
        "src"
    )  # a copy of what the wheel is made of: the build never writes into the checkout
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("idia", "jobs", "pipelines", "schemas"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = dist.glob("idia_audit-*.whl")
    return whl


def test_the_wheel_declares_dependencies_the_pinned_stack_meets(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
        names = z.namelist()
    assert f"Version: {idia.__version__}" in text
    reqs = [
        Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("Requires-Dist:")
    ]
    runtime = [r for r in reqs if r.marker is None]
    assert {r.name for r in runtime} >= {"torch", "open_clip_torch", "pyspark", "img2dataset", "dask", "pyarrow"}
    extras = {str(r.marker).split("==")[-1].strip(" \"'") for r in reqs if r.marker is not None}
    assert extras >= {"s3", "gcs", "gpu", "slurm", "dev"}
    unmet = [
        f"{r} (have {metadata.version(r.name)})"
        for r in runtime
        if not r.specifier.contains(metadata.version(r.name), prereleases=True)
    ]
    assert unmet == []
    # the package's data travels with it: the shipped reference lists and the pipeline configs
    assert any(n.startswith("idia/resources/us_census_2010_surnames") for n in names)
    assert "pipelines/demo.yaml" in names and "pipelines/laion400m.yaml" in names


def test_the_wheel_runs_from_a_fresh_virtual_environment(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    vpy = env_dir / "bin" / "python"
    subprocess.run(
        [str(vpy), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300
    )
    # The pinned stack after the fresh environment's own packages (a path line in a .pth file is appended to
    # sys.path; that folder's own .pth files, among them the editable install of this checkout, are not run).
    purelib = subprocess.run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "pinned-stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NO_ALBUMENTATIONS_UPDATE": "1"}
    idia_cmd = str(env_dir / "bin" / "idia")

    def run(*args: str) -> str:
        r = subprocess.run([*args], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return r.stdout

    where = run(str(vpy), "-c", "import idia, pipelines, jobs, schemas; print(idia.__file__, pipelines.__file__)")
    assert all(str(env_dir) in p for p in where.split()), where  # the wheel's code, not this checkout's
    assert run(idia_cmd, "--version").strip() == f"idia {idia.__version__}"
    assert "sample-laion" in run(idia_cmd, "--help")
    out = tmp_path / "sample"
    run(idia_cmd, "sample-laion", "--out", str(out), "--shards", "1", "--rows-per-shard", "300", "--names", "10")
    assert len(list((out / "shards").glob("*.parquet"))) == 1 and (out / "names.csv").is_file()
