"""What made an output: package versions, the project's git revision, the Python and platform.

Saved in every stage's config.json beside the resolved settings, so a result can be traced to the code that made it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "idia-audit",
    "torch",
    "open_clip_torch",
    "pyspark",
    "dask",
    "distributed",
    "img2dataset",
    "pyarrow",
    "numpy",
    "pandas",
    "ahocorasick_rs",
    "rapidfuzz",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The checkout's commit (with '-dirty' when files differ from it), or None outside a git checkout."""
    if not (PROJECT_ROOT / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


@lru_cache(maxsize=1)
def provenance() -> dict:
    return {
        "packages": {p: _version(p) for p in PACKAGES},
        "git_revision": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
