"""The attack's task functions, run on workers: text embeddings once per model, and one group of identities.

A group's images are encoded once each; every (image, template) gets its argmax candidate; every (k, draw) is
decided by the plurality rule (idia.attack.decision). The group's predictions, attacks and status are written
atomically, then its done-marker, so a rerun or a run that lost a worker skips finished groups.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import schemas
from idia.attack import decision
from idia.attack.images import ImageRef
from idia.attack.models import ModelSpec, cached_model, local_device
from idia.core import resume, storage
from idia.core.atomic import write_parquet
from idia.core.stats import Stats
from schemas import files
from schemas.validate import conform


@dataclass(frozen=True)
class Identity:
    """One identity of a group: its id, the index of its true name among the candidates, its images."""

    identity_id: str
    true_index: int
    images: tuple[ImageRef, ...]


@dataclass(frozen=True)
class GroupTask:
    index: int
    identities: tuple[Identity, ...]
    input_hash: str  # of the members and their images: a marker with another hash is stale

    @property
    def unit(self) -> str:
        return f"group-{self.index:05d}"


@dataclass(frozen=True)
class AttackContext:
    """What every task of one attack shares. `text_emb` is set for the group tasks, after the text task."""

    model: ModelSpec
    templates: tuple[str, ...]
    candidate_names: tuple[str, ...]
    cache_dir: str
    out: str  # absolute
    fingerprint: str  # the run's settings fingerprint (idia.core.resume)
    ks: tuple[int, ...]
    draws: int
    seed: int
    tau: int
    k_policy: str
    min_images: int
    batch_size: int
    decode_threads: int
    decode_processes: int | None = None  # None: idia.attack.embeddings.decode_processes_for chooses
    storage_conf: tuple = ()  # idia.core.storage.shipped_conf(): the client's object-store settings
    text_emb: np.ndarray | None = None

    @property
    def parts(self) -> Path:
        return storage.location(self.out) / files.PARTS_DIR


def _concrete(ctx: AttackContext) -> AttackContext:
    """The context with a concrete device (the engine may already have chosen one); this process's object-store
    settings configured first."""
    if ctx.storage_conf:
        storage.apply_shipped(ctx.storage_conf)
    if ctx.model.device != "auto":
        return ctx
    return dataclasses.replace(ctx, model=dataclasses.replace(ctx.model, device=local_device(ctx.model.device)))


def text_task(ctx: AttackContext, _task: None = None) -> dict:
    """[T, C, D] embeddings of every (template, candidate) prompt (from the cache when there) and the model's hash."""
    from idia.attack.embeddings import text_embeddings
    from idia.attack.models import fingerprint

    ctx = _concrete(ctx)
    model, _, tokenizer = cached_model(ctx.model)
    emb, info = text_embeddings(
        model,
        tokenizer,
        list(ctx.templates),
        list(ctx.candidate_names),
        ctx.cache_dir,
        device=ctx.model.device,
        precision=ctx.model.precision,
    )
    return {"emb": emb, "info": info, "model_sha256": fingerprint(model, tokenizer)}


def attack_group(ctx: AttackContext, task: GroupTask) -> dict:
    """Encode one group's images once, predict per (image, template), decide every (k, draw); write atomically."""
    from idia.attack.embeddings import decode_processes_for, embed_image_refs

    t0 = time.perf_counter()
    ctx = _concrete(ctx)
    done = resume.read_marker(ctx.parts / files.DONE_DIR, task.unit, ctx.fingerprint)
    if done and done.get("input_hash") == task.input_hash:  # a retried task after its output landed
        return done["stats"]
    model, preprocess, _ = cached_model(ctx.model)
    stats = Stats()
    # Images are keyed by (identity position, image position) in the task: no string keys to split again.
    keyed = [((i, j), ref) for i, ident in enumerate(task.identities) for j, ref in enumerate(ident.images)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    keys, emb, failed, timings = embed_image_refs(
        model,
        preprocess,
        keyed,
        ctx.batch_size,
        ctx.model.device,
        ctx.model.precision,
        ctx.decode_threads,
        decode_processes_for(ctx.decode_processes, ctx.model.device, cpus),
    )
    text_emb = ctx.text_emb
    preds = decision.predict(emb, text_emb) if len(keys) else np.zeros((0, text_emb.shape[0]), np.int32)
    row_of = {k: r for r, k in enumerate(keys)}
    corrupt = np.zeros(len(task.identities), np.int32)
    for (i, _), reason in failed:
        corrupt[i] += 1
        stats.update_reason("images", reason)
    n_t = text_emb.shape[0]
    p_cols: dict[str, list] = {name: [] for name in schemas.PREDICTIONS.names}
    a_cols: dict[str, list] = {name: [] for name in schemas.ATTACKS.names}
    s_rows = []
    for i, ident in enumerate(task.identities):
        rows = [row_of[(i, j)] for j in range(len(ident.images)) if (i, j) in row_of]
        stats["images_encoded"] += len(rows)
        p = preds[rows]
        for r, pred_row in zip(rows, p):
            p_cols["identity_id"].extend([ident.identity_id] * n_t)
            p_cols["image_key"].extend([ident.images[keys[r][1]].image_key] * n_t)
            p_cols["template_index"].extend(range(n_t))
            p_cols["predicted_candidate"].extend(pred_row.tolist())
            p_cols["correct"].extend((pred_row == ident.true_index).tolist())
        status, reason = "attacked", None
        if not rows:
            status, reason = "skipped", "no_readable_images"
        elif len(rows) < ctx.min_images:
            status, reason = "skipped", "too_few_images"
        else:
            res = decision.attack_identity(
                p, ident.true_index, ident.identity_id, ctx.ks, ctx.draws, ctx.seed, ctx.tau, ctx.k_policy
            )
            if len(res["k"]) == 0:
                status, reason = "skipped", "no_k_fits"
            a_cols["identity_id"].extend([ident.identity_id] * len(res["k"]))
            for name in ("k", "k_used", "draw", "correct_templates", "predicted_member"):
                a_cols[name].extend(res[name].tolist())
            stats["k_skipped_too_few_images"] += len(ctx.ks) - len(set(res["k"].tolist()))
        stats[f"identities_{status}"] += 1
        s_rows.append(
            {
                "identity_id": ident.identity_id,
                "status": status,
                "reason": reason,
                "n_images": len(ident.images),
                "n_corrupt_images": int(corrupt[i]),
            }
        )
    out = storage.location(ctx.out)
    write_parquet(
        conform(pa.table(p_cols, schema=schemas.PREDICTIONS), schemas.PREDICTIONS, task.unit),
        out / files.PREDICTIONS_DIR / f"{task.unit}.parquet",
    )
    write_parquet(
        conform(pa.table(a_cols, schema=schemas.ATTACKS), schemas.ATTACKS, task.unit),
        ctx.parts / f"attacks-{task.unit}.parquet",
    )
    write_parquet(pa.Table.from_pylist(s_rows, schema=schemas.ATTACK_STATUS), ctx.parts / f"status-{task.unit}.parquet")
    stats["images_in"] += sum(len(ident.images) for ident in task.identities)
    result = stats.to_dict()
    resume.write_marker(
        ctx.parts / files.DONE_DIR,
        task.unit,
        ctx.fingerprint,
        {"input_hash": task.input_hash, "stats": result, "timings": {**timings, "total_s": time.perf_counter() - t0}},
    )
    return result
