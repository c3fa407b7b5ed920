"""The reduced-world pipeline run that several modules compare against (one per test session)."""

from __future__ import annotations

import pytest

from pipelines.run import run_pipeline
from tests.support.pipeline_config import reduced_config


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    cfg = reduced_config(out)
    summary = run_pipeline(cfg)
    return cfg, out, summary
