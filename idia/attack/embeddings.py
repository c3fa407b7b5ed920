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

from idia.attack.images import ShardError
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
        except ShardError:  # the download folder is damaged: stop, naming the shard
            raise
        except Exception:  # PIL raises many types for corrupt data; each is a skipped image
            return key, None, "corrupt"

    chunks = [items[s : s + batch_size] for s in range(0, len(items), batch_size)]
    keys: list[str] = []
    embs: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    timings = {"decode_wait_s": 0.0, "forward_s": 0.0, "decode": f"threads:{max(1, decode_threads)}"}
    with ThreadPoolExecutor(max_workers=max(1, decode_threads)) as pool:
        # every image its own decode job, the next two batches in flight while one is encoded
        pending = [[pool.submit(load, it) for it in c] for c in chunks[:2]]
        nxt = 2
        while pending:
            t0 = time.perf_counter()
            loaded = [f.result() for f in pending.pop(0)]
            timings["decode_wait_s"] += time.perf_counter() - t0
            if nxt < len(chunks):
                pending.append([pool.submit(load, it) for it in chunks[nxt]])
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


def decode_processes_for(requested: int | None, device: str, cpus: int) -> int:
    """Decoding processes per worker: as configured; by default none on the CPU (decoding threads: the encoder is
    the bottleneck there and processes would take its cores), on a GPU enough to keep it fed (CPUs - 1, at most 8)."""
    if requested is not None:
        return max(0, requested)
    return 0 if str(device) == "cpu" else min(8, max(1, cpus - 1))


def embed_image_refs(
    model,
    preprocess: Callable,
    keyed_refs: list[tuple[object, object]],
    batch_size: int = 64,
    device: str = "cpu",
    precision: str = "auto",
    decode_threads: int = 2,
    decode_processes: int = 0,
) -> tuple[list, np.ndarray, list[tuple[object, str]], dict]:
    """embed_images over (key, ImageRef) pairs: decoded in `decode_processes` processes (a torch DataLoader, each
    process with its own tar readers, batches in order) or, with 0, in threads. The same batches either way, so the
    same embeddings. A daemonic process (a Dask worker under a nanny with distributed.worker.daemon true) cannot
    start processes: it decodes in threads and says so in the timings."""
    import multiprocessing

    from idia.attack.images import ImageReader

    note = None
    if decode_processes > 0 and multiprocessing.current_process().daemon:
        decode_processes, note = (
            0,
            "daemonic worker process: decoding in threads (set distributed.worker.daemon: false)",
        )
    if decode_processes <= 0:
        with ImageReader() as reader:
            items = [(k, (lambda r=r: reader.open(r))) for k, r in keyed_refs]
            out = embed_images(model, preprocess, items, batch_size, device, precision, decode_threads)
        if note:
            out[3]["decode_note"] = note
        return out
    return _embed_with_loader(model, preprocess, keyed_refs, batch_size, device, precision, decode_processes)


_READER = None  # a decoding process's own tar readers


def _reader():
    global _READER
    if _READER is None:
        from idia.attack.images import ImageReader

        _READER = ImageReader()
    return _READER


def _fresh_reader(_worker_id: int) -> None:
    """DataLoader worker_init_fn: never use tar handles copied from the parent at fork."""
    global _READER
    _READER = None


class _RefImages(torch.utils.data.Dataset):
    def __init__(self, refs: list, preprocess: Callable):
        self.refs = refs
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int):
        try:
            return i, self.preprocess(_reader().open(self.refs[i]).convert("RGB"))
        except ShardError:
            raise
        except Exception:  # PIL raises many types for corrupt data; each is a skipped image
            return i, None


def _collate(rows: list) -> tuple[list[int], torch.Tensor | None, list[int]]:
    ok = [(i, x) for i, x in rows if x is not None]
    return [i for i, _ in ok], (torch.stack([x for _, x in ok]) if ok else None), [i for i, x in rows if x is None]


def _embed_with_loader(model, preprocess, keyed_refs, batch_size, device, precision, processes):
    keys_in = [k for k, _ in keyed_refs]
    loader = torch.utils.data.DataLoader(
        _RefImages([r for _, r in keyed_refs], preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=processes,
        collate_fn=_collate,
        worker_init_fn=_fresh_reader,
        prefetch_factor=2,
        pin_memory=str(device).startswith("cuda"),
        multiprocessing_context="fork",
    )
    keys: list = []
    embs: list[np.ndarray] = []
    failed: list[tuple[object, str]] = []
    timings = {"decode_wait_s": 0.0, "forward_s": 0.0, "decode": f"processes:{processes}"}
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            idx, batch, bad = next(it)
        except StopIteration:
            break
        timings["decode_wait_s"] += time.perf_counter() - t0
        failed.extend((keys_in[i], "corrupt") for i in bad)
        if batch is None:
            continue
        t0 = time.perf_counter()
        embs.append(encode_image_tensor(model, batch, device, precision))
        timings["forward_s"] += time.perf_counter() - t0
        keys.extend(keys_in[i] for i in idx)
    dim = embs[0].shape[1] if embs else 0
    return keys, (np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)), failed, timings
