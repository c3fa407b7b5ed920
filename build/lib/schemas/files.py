"""Every file and folder name the stages write and read, and the manifest layout: defined once, imported everywhere.

Identity names never appear in a path; identity_id may (it is validated path-safe).
"""

from __future__ import annotations

import zlib
from pathlib import Path

# Every stage's folder
CONFIG_JSON = "config.json"  # the resolved configuration + provenance
STATS_JSON = "stats.json"  # the run's accounting
SETTINGS_JSON = "_settings.json"  # the settings the folder is pinned to (idia.core.resume)
#: Beside an output folder OUT: OUT's parent/.OUT-name + this, naming the process writing OUT (idia.core.lock).
#: Beside, not inside: a stage whose folder appears whole at its end (train, world) must not create it early.
LOCK_SUFFIX = ".idia-lock.json"
DONE_DIR = "_done"  # done-markers of finished units of work

# mine
COUNTS_PARQUET = "counts.parquet"
COUNTS_BY_MODE_PARQUET = "counts_by_mode.parquet"
IDENTITIES_PARQUET = "identities.parquet"
MANIFESTS_DIR = "manifests"
MANIFEST_PART = "part-00000.parquet"
IDENTITY_LISTS_DIR = "identity_lists"
OCCURRENCES_PARQUET = "occurrences.parquet"
OCCURRENCES_CSV = "occurrences.csv"
LIST_CSVS = {"members": "members.csv", "non_members": "non_members.csv", "eval_subset": "eval_subset.csv"}
MINE_STAGING_PREFIX = ".mine-staging-"

# download
SHARDS_DIR = "shards"
INDEX_PARQUET = "index.parquet"
REQUESTS_PARQUET = "requests.parquet"
REQUESTS_JSON = "requests.json"
ROUNDS_DIR = "rounds"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"

# attack
CANDIDATES_PARQUET = "candidates.parquet"
CANDIDATES_TXT = "candidates.txt"
PREDICTIONS_DIR = "predictions"
ATTACKS_PARQUET = "attacks.parquet"
ATTACK_STATUS_PARQUET = "attack_status.parquet"
PARTS_DIR = "parts"

# evaluate
METRICS_PARQUET = "metrics.parquet"
METRICS_MD = "metrics.md"
MEMBERSHIP_PARQUET = "membership.parquet"
BIN_K_PARQUET = "tpr_by_bin_and_k.parquet"
BIN_K_CSV = "tpr_by_bin_and_k.csv"
PER_IDENTITY_CSV = "per_identity.csv"
PLOTS_DIR = "plots"
SWEEP_CSV = "sweep.csv"

# synthetic world and tiny CLIP
WORLD_JSON = "world.json"
WORLD_IDENTITIES_CSV = "identities.csv"
TRUTH_CSV = "truth.csv"
QUERIES_TSV = "queries.tsv"
LAION_DIR = "laion"
TRAIN_JSON = "train.json"

# a pipeline run folder: one subfolder per stage, the report at the top
RUN_STAGE_DIRS = {
    "world": "world",
    "train": "model",
    "mine": "mine",
    "compare-lists": "compare",
    "download": "download",
    "attack": "attack",
    "evaluate": "evaluate",
}
#: A pipeline's second and later models (`models:`): MODELS_DIR/<model label>/attack and .../evaluate.
MODELS_DIR = "models"
#: compare-lists' outputs: every name on either side (CSV) and the summary with the differing names (markdown).
COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
PIPELINE_CONFIG_JSON = "pipeline_config.json"
SUMMARY_JSON = "summary.json"


def bucket_of(identity_id: str, buckets: int) -> int:
    """Stable manifest bucket of an identity (CRC-32, independent of Python's hash seed)."""
    return zlib.crc32(identity_id.encode("utf-8")) % buckets


def manifest_bucket_dir(root: str | Path, bucket: int) -> Path:
    """manifests/bucket=NNN under a mine output (or staging) folder: one identity's rows are one bucket read.
    `root` may be any Path-like (a UPath for object storage) and keeps its type."""
    root = root if hasattr(root, "joinpath") else Path(root)
    return root / MANIFESTS_DIR / f"bucket={bucket:03d}"


def manifest_files(manifests_dir: str | Path) -> list[Path]:
    """Every manifest part under a manifests/ folder, in bucket order."""
    root = manifests_dir if hasattr(manifests_dir, "joinpath") else Path(manifests_dir)
    return sorted(root.glob("bucket=*/*.parquet"), key=str)
