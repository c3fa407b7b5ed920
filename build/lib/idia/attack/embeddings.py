"""Embeddings: text (templates x candidates, cached on disk under a content hash) and images (batched, once each)."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from idia.attack.models import autocast, fingerprint
from idia.attack.prompts import prompts
from idia.core.atomic import atomic_path, write_json


def text_cache_key(model_fingerprint: str, templates: list[str], candidate_names: list[str]) -> str:
    h = hashlib.sha256()
    h.update(model_fingerprint.encode())
    for part in (templates, candidate_names):
        h.update(b"\x00" + json.dumps(part, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()[:32]


def _normalise(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


@torch.no_grad()
def encode_texts(
    model, tokenizer, texts: list[str], device: str = "cpu", precision: str = "auto", batch_size: int = 1024
) -> np.ndarray:
    """L2-normalised text embeddings [len(texts), D] (float32)."""
    out = []
    for s in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[s : s + batch_size]).to(device)
        with autocast(device, precision):
            out.append(_normalise(model.encode_text(tokens)))
    return np.concatenate(out, axis=0).astype(np.float32, copy=False)


def text_embeddings(
    model,
    tokenizer,
    templates: list[str],
    candidate_names: list[str],
    cache_dir: str | Path | None,
    device: str = "cpu",
    precision: str = "auto",
    batch_size: int = 1024,
) -> tuple[np.ndarray, dict]:
    """[T, C, D] embeddings of every (template, candidate) prompt, from the cache when the same model, templates and
    candidates were embedded before. Returns (embeddings, info) with info['computed'] = prompts encoded now."""
    key = text_cache_key(fingerprint(model, tokenizer), templates, candidate_names)
    t0 = time.perf_counter()
    path = Path(cache_dir) / f"text-{key}.npy" if cache_dir else None
    if path is not None and path.is_file():
        emb = np.load(path)
        if emb.shape[:2] == (len(templates), len(candidate_names)):
            return emb, {"key": key, "cache_hit": True, "computed": 0, "seconds": time.perf_counter() - t0}
    flat = encode_texts(model, tokenizer, prompts(templates, candidate_names), device, precision, batch_size)
    emb = flat.reshape(len(templates), len(candidate_names), -1)
    if path is not None:
        with atomic_path(path, suffix=".npy") as tmp:
            with open(tmp, "wb") as fh:  # a file object: np.save would append .npy to a bare name
                np.save(fh, emb)
        write_json(
            {"key": key, "templates": templates, "n_candidates": len(candidate_names), "shape": list(emb.shape)},
            path.with_suffix(".json"),
        )
    return emb, {
        "key": key,
        "cache_hit": False,
        "computed": len(templates) * len(candidate_names),
        "seconds": time.perf_counter() - t0,
    }


@torch.no_grad()
def encode_image_tensor(model, batch: torch.Tensor, device: str = "cpu", precision: str = "auto") -> np.ndarray:
    with autocast(device, precision):
        return _normalise(model.encode_image(batch.to(device, non_blocking=True)))


def embed_images(
    model,
    preprocess: Callable,
    items: Iterable[tuple[str, Callable[[], object]]],
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "auto",
    decode_threads: int = 2,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]], dict]:
    """Encode images once each, batched; decoding + preprocessing of the next batch overlaps the forward pass.

    items: (key, open_fn) where open_fn() returns a PIL image. A corrupt image is skipped and reported in
    `failed` as (key, reason). Returns (keys ok, embeddings [n, D] float32, failed, timings)."""
    items = list(items)

    def load(item):
        key, open_fn = item
        try:
            img = open_fn()
            return key, preprocess(img.convert("RGB")), None
        except Exception:  # PIL raises many types for corrupt data; each is a skipped image
            return key, None, "corrupt"

    def load_batch(chunk):
        return [load(it) for it in chunk]

    chunks = [items[s : s + batch_size] for s in range(0, len(items), batch_size)]
    keys: list[str] = []
    embs: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    timings = {"decode_wait_s": 0.0, "forward_s": 0.0}
    with ThreadPoolExecutor(max_workers=max(1, decode_threads)) as pool:
        pending = [pool.submit(load_batch, c) for c in chunks[:2]]
        nxt = 2
        while pending:
            t0 = time.perf_counter()
            loaded = pending.pop(0).result()
            timings["decode_wait_s"] += time.perf_counter() - t0
            if nxt < len(chunks):
                pending.append(pool.submit(load_batch, chunks[nxt]))
                nxt += 1
            ok = [(k, x) for k, x, err in loaded if err is None]
            failed.extend((k, err) for k, x, err in loaded if err is not None)
            if not ok:
                continue
            t0 = time.perf_counter()
            embs.append(encode_image_tensor(model, torch.stack([x for _, x in ok]), device, precision))
            timings["forward_s"] += time.perf_counter() - t0
            keys.extend(k for k, _ in ok)
    dim = embs[0].shape[1] if embs else 0
    return keys, (np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)), failed, timings
