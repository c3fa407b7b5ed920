"""The single source of truth for every table that crosses a stage boundary.

Each boundary table is an Arrow schema here. Input validation (`schemas.validate`) is derived from
these, file names and layouts are in `schemas.files`; no stage spells a column list of its own.
"""

from __future__ import annotations

import pyarrow as pa

# --------------------------------------------------------------------------------------------
# Input: LAION metadata shards
# --------------------------------------------------------------------------------------------

#: LAION-400M metadata, exactly as published (32 snappy parquet files, ~12.9M rows each).
LAION_400M = pa.schema(
    [
        pa.field("SAMPLE_ID", pa.int64()),
        pa.field("URL", pa.string()),
        pa.field("TEXT", pa.string()),
        pa.field("HEIGHT", pa.int32()),
        pa.field("WIDTH", pa.int32()),
        pa.field("LICENSE", pa.string()),
        pa.field("NSFW", pa.string()),
        pa.field("similarity", pa.float64()),
    ]
)

#: laion2B-en(-joined) metadata columns.
LAION_2B_EN = pa.schema(
    [
        pa.field("URL", pa.string()),
        pa.field("TEXT", pa.string()),
        pa.field("WIDTH", pa.int64()),
        pa.field("HEIGHT", pa.int64()),
        pa.field("similarity", pa.float64()),
        pa.field("hash", pa.int64()),
        pa.field("punsafe", pa.float32()),
        pa.field("pwatermark", pa.float32()),
    ]
)

#: The canonical caption row every stage works on after column mapping (LAION-400M names).
CAPTIONS = LAION_400M

#: Explicit column mappings: canonical column -> column in the source layout (None: absent, filled with null).
#: Source types are cast to the canonical ones after renaming.
COLUMN_MAPPINGS: dict[str, dict[str, str | None]] = {
    "laion400m": {f.name: f.name for f in LAION_400M},
    "laion2b-en": {
        "SAMPLE_ID": "hash",
        "URL": "URL",
        "TEXT": "TEXT",
        "HEIGHT": "HEIGHT",
        "WIDTH": "WIDTH",
        "LICENSE": None,
        "NSFW": None,
        "similarity": "similarity",
    },
    # clip-retrieval embedding metadata and some mirrors: lowercase url / caption.
    "lowercase": {
        "SAMPLE_ID": None,
        "URL": "url",
        "TEXT": "caption",
        "HEIGHT": None,
        "WIDTH": None,
        "LICENSE": None,
        "NSFW": None,
        "similarity": None,
    },
}

#: Columns without which mining cannot run, whatever the layout.
REQUIRED_CAPTION_COLUMNS = ("URL", "TEXT")

# --------------------------------------------------------------------------------------------
# Names list (parsed and validated)
# --------------------------------------------------------------------------------------------

#: identity_id: a stable slug ([A-Za-z0-9_-], at most 64 chars), given or derived from the name.
#: Identity names never become paths; identity_id may (it is validated to be path-safe).
IDENTITIES = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("aliases", pa.list_(pa.string())),
        pa.field("sex", pa.string()),  # "m" / "f" / null where unknown; used for fake candidate names
        pa.field("source_line", pa.int32()),  # 1-based line in the names file
    ]
)

#: Columns of a names CSV (`identity_id,name[,aliases][,sex]`; only `name` is required, extra columns ignored).
NAMES_CSV_COLUMNS = ("identity_id", "name", "aliases", "sex")
#: aliases are joined with this character in a names CSV.
ALIAS_SEPARATOR = "|"

# --------------------------------------------------------------------------------------------
# mine outputs
# --------------------------------------------------------------------------------------------

COUNTS = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("n_captions", pa.int64(), nullable=False),  # caption rows matched
        pa.field("n_unique_urls", pa.int64(), nullable=False),
        pa.field("match_mode", pa.string(), nullable=False),
    ]
)

#: Caption counts per identity in every mode a mining run counted: its main mode (as in counts.parquet) and each
#: --also-count mode (counts only), in names-file order, mode by mode.
MODE_COUNTS = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("match_mode", pa.string(), nullable=False),
        pa.field("n_captions", pa.int64(), nullable=False),
        pa.field("is_main", pa.bool_(), nullable=False),  # the mode the run's manifests and lists come from
    ]
)

#: One row per (identity, matched caption row). Written under manifests/bucket=NNN/, sorted by
#: identity_id, so one identity's rows are one bucket read with a row-group filter.
MANIFEST = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("SAMPLE_ID", pa.int64()),
        pa.field("URL", pa.string()),
        pa.field("TEXT", pa.string()),
        pa.field("WIDTH", pa.int32()),
        pa.field("HEIGHT", pa.int32()),
        pa.field("NSFW", pa.string()),
        pa.field("similarity", pa.float64()),
        pa.field("matched_alias", pa.string()),  # the name or alias that matched
        pa.field("match_score", pa.float64()),  # 100.0 for exact modes, rapidfuzz score for fuzzy
        pa.field("n_identities_in_caption", pa.int32()),
        pa.field("source_file", pa.string()),
    ]
)

#: Regenerated identity list, the study's occurrence table plus the derived lists.
IDENTITY_LIST = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field(
            "membership", pa.string(), nullable=False
        ),  # "member" / "non_member" / "excluded" (0 < count < member_min)
        pa.field(
            "bin", pa.string(), nullable=False
        ),  # as the published table: "[0, 25)", ..., "[150, 200)", ..., "[300, 1000000)"
        pa.field("in_eval_subset", pa.bool_(), nullable=False),  # count < member_max
    ]
)

# --------------------------------------------------------------------------------------------
# download inputs and outputs
# --------------------------------------------------------------------------------------------

#: An external query-image list, FaceScrub layout: tab-separated with this header (extra columns ignored; an
#: optional `identity_id` column overrides the name lookup). bbox "x1,y1,x2,y2" or empty; sha256 64 hex or empty.
QUERY_LIST_COLUMNS = ("name", "image_id", "face_id", "url", "bbox", "sha256")
QUERY_LIST_OPTIONAL_COLUMNS = ("identity_id",)

#: The rows a download fetches (requests.parquet in the download folder): one per (identity_id, source_id).
REQUESTS = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),  # SAMPLE_ID as text, or the query list's image_id
        pa.field("url", pa.string(), nullable=False),
        pa.field("bbox", pa.string()),  # "x1,y1,x2,y2" face box to crop to, or null
        pa.field("sha256", pa.string()),  # expected sha256 of the downloaded bytes, or null
    ]
)

#: One row per requested URL: where it ended up. Requested = downloaded + failed, per identity.
DOWNLOAD_INDEX = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),  # SAMPLE_ID or the query list's image_id
        pa.field("url", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # "success" or "failed"
        pa.field("reason", pa.string()),  # null on success; else a short reason code
        pa.field("shard", pa.string()),  # tar path relative to the download folder (success only)
        pa.field("key", pa.string()),  # webdataset key inside the shard (success only)
    ]
)

# --------------------------------------------------------------------------------------------
# attack outputs
# --------------------------------------------------------------------------------------------

CANDIDATES = pa.schema(
    [
        pa.field("candidate_index", pa.int32(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("identity_id", pa.string()),  # null for fake names
        pa.field("is_fake", pa.bool_(), nullable=False),
    ]
)

PREDICTIONS = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("image_key", pa.string(), nullable=False),
        pa.field("template_index", pa.int16(), nullable=False),
        pa.field("predicted_candidate", pa.int32(), nullable=False),
        pa.field("correct", pa.bool_(), nullable=False),
    ]
)

ATTACKS = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("k", pa.int32(), nullable=False),  # images requested for this attack
        pa.field("k_used", pa.int32(), nullable=False),  # images actually used (< k if fewer exist)
        pa.field("draw", pa.int32(), nullable=False),
        pa.field("correct_templates", pa.int32(), nullable=False),  # the score
        pa.field("predicted_member", pa.bool_(), nullable=False),  # score >= tau
    ]
)

#: Per identity in: attacked, or skipped with its reason. Identities in = attacked + skipped.
ATTACK_STATUS = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # "attacked" / "skipped"
        pa.field("reason", pa.string()),
        pa.field("n_images", pa.int32(), nullable=False),
        pa.field("n_corrupt_images", pa.int32(), nullable=False),
    ]
)

MEMBERSHIP = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("is_member", pa.bool_()),  # ground truth from mining; null where unknown
        pa.field("caption_count", pa.int64()),  # mined count; null where unknown
        pa.field("k", pa.int32(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),  # mean correct templates over draws
        pa.field("member_rate", pa.float64(), nullable=False),  # share of draws predicted member
        pa.field("predicted_member", pa.bool_(), nullable=False),  # majority of draws
    ]
)

#: The study's heatmap: TPR per occurrence bin against k (members only; mean and sample std over draws).
BIN_K = pa.schema(
    [
        pa.field("bin", pa.string(), nullable=False),  # as IDENTITY_LIST.bin
        pa.field("bin_start", pa.int64(), nullable=False),  # the bin's lower edge: its sort key
        pa.field("k", pa.int32(), nullable=False),
        pa.field("members", pa.int64(), nullable=False),  # members of the bin attacked at k
        pa.field("tpr_mean", pa.float64(), nullable=False),
        pa.field("tpr_std", pa.float64(), nullable=False),
        pa.field("n_draws", pa.int64(), nullable=False),
    ]
)

METRICS = pa.schema(
    [
        pa.field("k", pa.int32(), nullable=False),
        pa.field("tau", pa.int32(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),  # tpr, fnr, fpr, tnr, accuracy, precision
        pa.field("mean", pa.float64()),
        pa.field("std", pa.float64()),
        pa.field("n_draws", pa.int32(), nullable=False),
    ]
)

# --------------------------------------------------------------------------------------------
# controlled experiments (the synthetic world) and their evaluation
# --------------------------------------------------------------------------------------------

#: Ground truth of a controlled experiment (the world's truth.csv): who was in training, with how many images.
TRUTH = pa.schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("is_member", pa.bool_(), nullable=False),
        pa.field("n_train_images", pa.int64(), nullable=False),
        pa.field("group", pa.string(), nullable=False),  # "main", "sweep_<n>", "non_member"
    ]
)

#: The injection sweep (evaluate/sweep.csv): per truth group, the share of draws predicted member at one k.
SWEEP = pa.schema(
    [
        pa.field("group", pa.string(), nullable=False),
        pa.field("is_member", pa.bool_(), nullable=False),
        pa.field("n_train_images", pa.int64(), nullable=False),
        pa.field("n_identities", pa.int64(), nullable=False),
        pa.field("rate", pa.string(), nullable=False),  # "tpr" for member groups, "fpr" for the non-member group
        pa.field("mean", pa.float64(), nullable=False),
        pa.field("std", pa.float64(), nullable=False),
        pa.field("n_draws", pa.int64(), nullable=False),
    ]
)

ALL = {
    "laion400m": LAION_400M,
    "laion2b_en": LAION_2B_EN,
    "identities": IDENTITIES,
    "counts": COUNTS,
    "mode_counts": MODE_COUNTS,
    "manifest": MANIFEST,
    "identity_list": IDENTITY_LIST,
    "requests": REQUESTS,
    "download_index": DOWNLOAD_INDEX,
    "candidates": CANDIDATES,
    "predictions": PREDICTIONS,
    "attacks": ATTACKS,
    "attack_status": ATTACK_STATUS,
    "membership": MEMBERSHIP,
    "bin_k": BIN_K,
    "metrics": METRICS,
    "truth": TRUTH,
    "sweep": SWEEP,
}
