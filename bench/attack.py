"""Benchmark the attack: end-to-end images/s vs the raw image-encoder forward pass, and the warm text-cache cost.

Both rates are measured side by side on the same Dask worker, the same model and the same batches: the raw
rate times only `model.encode_image` on preprocessed batches; the end-to-end rate is a whole `run_attack`
(listing, decoding, preprocessing, forward, argmax, draws, writes, merge) with the model already built in the
worker and the text embeddings in the cache. Usage: python bench/attack.py [--model SPEC] [--decode-processes 0,1,2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

BENCH_CFG = {  # a small CLIP for the 2-core machine: ViT at 128 px, patch 16; 4-layer text tower
    "embed_dim": 256,
    "vision_cfg": {"image_size": 128, "layers": 4, "width": 256, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 4},
}


def make_images(root: Path, n_ids: int, per_id: int, size: int, seed: int = 0) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    ids = [f"p{i:04d}" for i in range(n_ids)]
    for iid in ids:
        (root / iid).mkdir(parents=True, exist_ok=True)
        for j in range(per_id):
            arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / iid / f"{j:03d}.jpg", quality=90)
    return ids


def raw_forward(spec, paths: list[str], batch_size: int, repeats: int = 1) -> dict:
    """On a worker: preprocess every image (untimed), then time only the encoder on the same batches."""
    import dataclasses

    import torch
    from PIL import Image

    from idia.attack.embeddings import encode_image_tensor
    from idia.attack.models import cached_model, local_device

    spec = dataclasses.replace(spec, device=local_device(spec.device))
    model, preprocess, _ = cached_model(spec)
    device, precision = spec.device, spec.precision
    tensors = [preprocess(Image.open(p).convert("RGB")) for p in paths]
    batches = [torch.stack(tensors[s : s + batch_size]) for s in range(0, len(tensors), batch_size)]
    encode_image_tensor(model, batches[0][:2], device, precision)  # warm-up
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in batches:
            encode_image_tensor(model, b, device, precision)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return {
        "images": len(paths),
        "seconds": best,
        "images_per_s": len(paths) / best,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="open_clip spec; default a small random-weight CLIP saved in local-dir: form")
    ap.add_argument("--identities", type=int, default=16, help="identities to attack")
    ap.add_argument("--images-per-identity", type=int, default=12, help="query images per identity")
    ap.add_argument("--image-size", type=int, default=256, help="side of the generated JPEGs")
    ap.add_argument("--num-candidates", type=int, default=1000, help="candidate names (the study: 1000)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per forward pass (both measurements)")
    ap.add_argument("--draws", type=int, default=20, help="draws per k")
    ap.add_argument("--group-size", type=int, default=8, help="identities per unit of work")
    ap.add_argument("--decode-threads", type=int, default=2, help="decoding threads per worker")
    ap.add_argument(
        "--decode-processes",
        default="0",
        help="comma-separated decoding-process counts, each a warm end-to-end run side by side (0 = threads)",
    )
    ap.add_argument("--torch-threads", type=int, default=None, help="torch threads in the worker (default all cores)")
    ap.add_argument("--precision", default="auto", help="auto / fp32 / fp16 / bf16")
    ap.add_argument("--workdir", help="folder for images, cache and outputs (default a temp folder)")
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from idia.attack.config import AttackConfig
    from idia.attack.models import ModelSpec
    from jobs.attack import run_attack
    from tests.support.tiny_model import save_tiny_model, write_identities

    work = Path(args.workdir or tempfile.mkdtemp(prefix="idia-bench-"))
    spec = args.model or save_tiny_model(work / "model", seed=0, cfg=BENCH_CFG)
    ids = make_images(work / "images", args.identities, args.images_per_identity, args.image_size)
    write_identities(work / "ids.parquet", ids)
    threads = args.torch_threads or os.cpu_count() or 1
    cfg = dict(
        images=str(work / "images"),
        identities=str(work / "ids.parquet"),
        model=spec,
        num_candidates=max(args.num_candidates, len(ids)),
        draws=args.draws,
        batch_size=args.batch_size,
        group_size=args.group_size,
        decode_threads=args.decode_threads,
        torch_threads=threads,
        precision=args.precision,
        cache_dir=str(work / "cache"),
    )
    paths = sorted(str(p) for p in (work / "images").glob("*/*.jpg"))
    import dask

    with dask.config.set({"distributed.worker.daemon": False}):  # as jobs.dask_cluster: workers may start processes
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    client = Client(cluster)
    try:
        t0 = time.perf_counter()
        cold = run_attack(AttackConfig(out=str(work / "out_cold"), **cfg), client=client, progress=False)
        cold_s = time.perf_counter() - t0
        params = ModelSpec(spec, None, 0, "auto", args.precision, threads)
        raw1 = client.submit(raw_forward, params, paths, args.batch_size, 2, pure=False).result()
        warm_runs = {}
        for n in [int(x) for x in args.decode_processes.split(",")]:
            t0 = time.perf_counter()
            out = AttackConfig(out=str(work / f"out_warm_{n}"), decode_processes=n, **cfg)
            w = run_attack(out, client=client, progress=False)
            warm_runs[n] = (w, time.perf_counter() - t0)
        warm, warm_s = warm_runs[min(warm_runs)]
        raw2 = client.submit(raw_forward, params, paths, args.batch_size, 2, pure=False).result()
    finally:
        client.close()
        cluster.close()
    raw_rate = (raw1["images_per_s"] + raw2["images_per_s"]) / 2
    e2e_rate = warm["images_encoded"] / warm_s
    res = {
        "model": spec if args.model else "bench-small (local-dir, random weights): " + json.dumps(BENCH_CFG),
        "device": raw1["device"],
        "torch_threads": raw1["threads"],
        "images": warm["images_encoded"],
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "candidates": cold["candidates"],
        "templates": cold["templates"],
        "draws": args.draws,
        "k_values": 16,
        "raw_forward_images_per_s": [round(raw1["images_per_s"], 2), round(raw2["images_per_s"], 2)],
        "end_to_end_images_per_s": round(e2e_rate, 2),
        "ratio_end_to_end_vs_raw": round(e2e_rate / raw_rate, 3),
        "by_decode_processes": {
            str(n): {
                "end_to_end_images_per_s": round(w["images_encoded"] / t, 2),
                "ratio_vs_raw": round(w["images_encoded"] / t / raw_rate, 3),
            }
            for n, (w, t) in sorted(warm_runs.items())
        },
        "cold_run_s": round(cold_s, 2),
        "cold_text_prompts_computed": cold["text_prompts_computed"],
        "cold_text_s": cold.get("text_s"),
        "warm_run_s": round(warm_s, 2),
        "warm_text_prompts_computed": warm["text_prompts_computed"],
        "warm_text_s": warm.get("text_s"),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
