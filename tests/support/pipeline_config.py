"""The reduced-world pipeline config the pipeline tests run (and compare against)."""

from __future__ import annotations

import socket

from pipelines.run import PipelineConfig, WorldSection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reduced_config(out) -> PipelineConfig:
    cache = str(out.parent / "text-cache")  # keep the test's text-embedding cache out of ~/.cache
    return PipelineConfig(
        out=str(out),
        world=WorldSection(preset="reduced", train_preset="reduced", port=_free_port()),
        mine={"buckets": 4},
        download={"image_size": 64, "processes": 1, "threads": 8, "crop_to_bbox": False},
        attack={
            "k": [1, 3, 5, 10],
            "draws": 5,
            "num_candidates": 100,
            "group_size": 4,
            "n_workers": 1,
            "cache_dir": cache,
        },
        headline_k=10,
    )


def run_tables(root: str, fs=None) -> dict[str, list]:
    """Every table a run folder's stages wrote (parquet rows by relative path; the world and the model left out, run
    records and hidden files too; mine's source_file, the path a shard was read from, too), on local disk or under
    bucket/prefix `root` of `fs`. img2dataset writes a shard's
    rows as its threads finish them: those are compared sorted by key."""
    import fsspec

    from tests.support.s3_server import run_data

    data = run_data(fs or fsspec.filesystem("file"), root, drop_columns=("source_file",))  # where shards were read
    out = {k: v for k, v in data.items() if k.endswith(".parquet") and k.split("/")[0] not in ("world", "model")}
    for k in out:
        if k.startswith("download/shards/"):
            out[k] = sorted(out[k], key=lambda r: r["key"])
    return out
