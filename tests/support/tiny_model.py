"""A tiny open_clip model with random weights, saved in local-dir: form, and tiny image folders for attack tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_tiny_model(folder: str | Path, seed: int = 0, cfg: dict | None = None) -> str:
    """Write open_clip_config.json + open_clip_model.safetensors; returns the 'local-dir:' spec."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = cfg or TINY_CFG
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": cfg,
                "preprocess_cfg": {
                    "mean": [0.5, 0.5, 0.5],
                    "std": [0.25, 0.25, 0.25],
                    "interpolation": "bilinear",
                    "resize_mode": "shortest",
                },
            }
        )
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return f"local-dir:{folder}"


def write_image_folder(
    root: str | Path, counts: dict[str, int], seed: int = 0, size: int = 40, corrupt: dict[str, int] | None = None
) -> Path:
    """root/<identity_id>/NNN.png random images (counts per identity), plus `corrupt` truncated .jpg files."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for iid, n in counts.items():
        d = root / iid
        d.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, size=3)
        for j in range(n):
            arr = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{j:03d}.png")
    for iid, n in (corrupt or {}).items():
        d = root / iid
        d.mkdir(parents=True, exist_ok=True)
        for j in range(n):
            (d / f"bad{j:02d}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def write_identities(path: str | Path, ids: list[str]) -> Path:
    """An identities parquet (schemas.IDENTITIES) with made-up names, alternating sex."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import schemas

    first = ["Alma", "Bruno", "Carla", "Dario", "Elsa", "Fritz", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lars"]
    table = pa.table(
        {
            "identity_id": ids,
            "name": [f"{first[i % len(first)]} Testperson{i}" for i in range(len(ids))],
            "aliases": pa.array([[] for _ in ids], pa.list_(pa.string())),
            "sex": ["f" if i % 2 == 0 else "m" for i in range(len(ids))],
            "source_line": pa.array(range(2, len(ids) + 2), pa.int32()),
        },
        schema=schemas.IDENTITIES,
    )
    path = Path(path)
    pq.write_table(table, path)
    return path
