"""Dask job: run the identity inference attack (IDIA) with an open_clip model over images per identity.

The model is built once inside each worker; text embeddings (templates x candidates) are computed once and
cached on disk; work is split into groups of identities, each written atomically with a completion marker,
so a rerun (or a run that lost a worker) resumes and produces the same tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from idia import aggregate
from idia.atomic import mark_done, read_done, write_json, write_parquet
from idia.config import from_file_and_args, to_dict
from idia.errors import UserError
from idia.stats import Stats, check_sum
from schemas.validate import conform

PARTS = "parts"


@dataclass
class AttackConfig:
    images: str = ""  # download output folder (index.parquet + shards) or root/<identity_id>/*.jpg
    identities: str = ""  # names file, identities parquet, or a mine output folder
    model: str = ""  # open_clip spec: ViT-B-32, hf-hub:org/repo, local-dir:/path
    out: str = ""
    pretrained: str | None = None  # tag or checkpoint file for a built-in architecture
    k: list[int] = field(default_factory=lambda: list(aggregate.DEFAULT_KS))
    draws: int = 20
    tau: int = 1
    num_candidates: int = 1000
    candidates: str | None = None  # explicit candidate list, one name a line
    templates: str | None = None  # templates file, one a line with {} for the name
    seed: int = 0
    init_seed: int = 0  # seeds random weights when the model has none, so every worker builds the same model
    scheduler: str | None = None
    n_workers: int | None = None
    batch_size: int = 64
    ground_truth: str | None = None
    k_policy: str = "cap"  # k > images available: "cap" (attack with what exists) or "skip"
    min_images: int = 1  # identities with fewer readable images are skipped
    group_size: int = 32  # identities per unit of work
    device: str = "auto"
    precision: str = "auto"  # auto: fp32 on CPU, bf16/fp16 autocast on CUDA
    cache_dir: str | None = None  # text-embedding cache; default ~/.cache/idia/text_embeddings
    membership_k: int | None = None  # k of the membership table; default the largest k
    torch_threads: int | None = None  # torch threads per worker; default cores / workers
    decode_threads: int = 2

    def validate(self) -> None:
        for name in ("images", "identities", "model", "out"):
            if not getattr(self, name):
                raise UserError(f"attack: --{name.replace('_', '-')} is required")
        if not self.k or any(k < 1 for k in self.k):
            raise UserError(f"attack: --k must be positive integers, got {self.k}")
        if self.draws < 1 or self.tau < 1 or self.min_images < 1 or self.group_size < 1 or self.batch_size < 1:
            raise UserError("attack: --draws, --tau, --min-images, --group-size and --batch-size must be >= 1")
        if self.k_policy not in ("cap", "skip"):
            raise UserError(f"attack: --k-policy must be 'cap' or 'skip', got {self.k_policy!r}")


# ------------------------------------------------------------------------------------------------
# Worker side: the model is built in the worker process once and kept for every later task.
# ------------------------------------------------------------------------------------------------

_MODELS: dict[tuple, tuple] = {}


def _model(params: dict):
    from jobs.dask_cluster import worker_device

    device = worker_device(params["device"])
    key = (params["model"], params["pretrained"], params["init_seed"], device)
    if key not in _MODELS:
        import torch

        if params.get("torch_threads"):
            torch.set_num_threads(int(params["torch_threads"]))
        from idia.models import load_model

        _MODELS.clear()  # one model per worker process
        _MODELS[key] = (*load_model(params["model"], params["pretrained"], device=device,
                                    precision=params["precision"], init_seed=params["init_seed"]), device)
    return _MODELS[key]


def text_task(params: dict, templates: list[str], names: list[str], cache_dir: str) -> tuple[np.ndarray, dict]:
    from idia.embeddings import text_embeddings

    model, _, tokenizer, device = _model(params)
    return text_embeddings(model, tokenizer, templates, names, cache_dir, device=device, precision=params["precision"])


def _first(x):
    return x[0]


def _second(x):
    return x[1]


def group_task(gid: int, members: list[tuple[str, int, list]], text_emb: np.ndarray, params: dict,
               out: str, group_hash: str) -> dict:
    """Encode one group's images once, predict per (image, template), aggregate every (k, draw); write atomically."""
    from idia.embeddings import embed_images
    from idia.image_sources import ImageReader

    t0 = time.perf_counter()
    unit = f"group-{gid:05d}"
    done = read_done(Path(out) / PARTS, unit)
    if done and done.get("hash") == group_hash:  # a retried task after its output landed
        return done["stats"]
    model, preprocess, _, device = _model(params)
    slow = float(os.environ.get("IDIA_ATTACK_SLOW_GROUP_S", "0"))  # fault-injection tests only: widen the window
    if slow:
        time.sleep(slow)
    stats = Stats()
    with ImageReader() as reader:
        items = [(f"{iid}\x00{ref.image_key}", (lambda r=ref: reader.open(r))) for iid, _, refs in members for ref in refs]
        keys, emb, failed, timings = embed_images(model, preprocess, items, params["batch_size"], device,
                                                  params["precision"], params["decode_threads"])
    preds = aggregate.predict(emb, text_emb) if len(keys) else np.zeros((0, text_emb.shape[0]), np.int32)
    row_of = {k: i for i, k in enumerate(keys)}
    bad = {}
    for k, reason in failed:
        iid = k.split("\x00", 1)[0]
        bad[iid] = bad.get(iid, 0) + 1
        stats.update_reason("images", reason)
    p_cols = {"identity_id": [], "image_key": [], "template_index": [], "predicted_candidate": [], "correct": []}
    a_cols = {"identity_id": [], "k": [], "k_used": [], "draw": [], "correct_templates": [], "predicted_member": []}
    s_rows = []
    n_t = text_emb.shape[0]
    for iid, true_idx, refs in members:
        rows = [row_of[f"{iid}\x00{r.image_key}"] for r in refs if f"{iid}\x00{r.image_key}" in row_of]
        n_ok = len(rows)
        stats["images_encoded"] += n_ok
        p = preds[rows]
        for r, ref_row in zip(rows, p):
            p_cols["identity_id"].extend([iid] * n_t)
            p_cols["image_key"].extend([keys[r].split("\x00", 1)[1]] * n_t)
            p_cols["template_index"].extend(range(n_t))
            p_cols["predicted_candidate"].extend(ref_row.tolist())
            p_cols["correct"].extend((ref_row == true_idx).tolist())
        status, reason = "attacked", None
        if n_ok == 0:
            status, reason = "skipped", "no_readable_images"
        elif n_ok < params["min_images"]:
            status, reason = "skipped", "too_few_images"
        else:
            res = aggregate.attack_identity(p, true_idx, iid, params["k"], params["draws"], params["seed"],
                                            params["tau"], params["k_policy"])
            if len(res["k"]) == 0:
                status, reason = "skipped", "no_k_fits"
            a_cols["identity_id"].extend([iid] * len(res["k"]))
            for name in ("k", "k_used", "draw", "correct_templates", "predicted_member"):
                a_cols[name].extend(res[name].tolist())
            stats["k_skipped_too_few_images"] += len(params["k"]) - len(set(res["k"].tolist()))
        stats[f"identities_{status}"] += 1
        s_rows.append({"identity_id": iid, "status": status, "reason": reason, "n_images": len(refs),
                       "n_corrupt_images": bad.get(iid, 0)})
    base = Path(out) / PARTS
    write_parquet(conform(pa.table(p_cols, schema=schemas.PREDICTIONS), schemas.PREDICTIONS, unit),
                  Path(out) / "predictions" / f"{unit}.parquet")
    write_parquet(conform(pa.table(a_cols, schema=schemas.ATTACKS), schemas.ATTACKS, unit), base / f"attacks-{unit}.parquet")
    write_parquet(pa.Table.from_pylist(s_rows, schema=schemas.ATTACK_STATUS), base / f"status-{unit}.parquet")
    stats["images_in"] += sum(len(r) for _, _, r in members)
    result = stats.to_dict()
    mark_done(base, unit, {"hash": group_hash, "stats": result,
                           "timings": {**timings, "total_s": time.perf_counter() - t0}})
    return result


# ------------------------------------------------------------------------------------------------
# Client side
# ------------------------------------------------------------------------------------------------


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _params(cfg: AttackConfig) -> dict:
    return {"model": cfg.model, "pretrained": cfg.pretrained, "init_seed": cfg.init_seed, "device": cfg.device,
            "precision": cfg.precision, "batch_size": cfg.batch_size, "decode_threads": cfg.decode_threads,
            "k": sorted(set(cfg.k)), "draws": cfg.draws, "seed": cfg.seed, "tau": cfg.tau, "k_policy": cfg.k_policy,
            "min_images": cfg.min_images, "torch_threads": cfg.torch_threads}


def run_attack(cfg: AttackConfig, client=None, progress: bool = True) -> dict:
    """Run the attack; returns the run's stats (also written to out/stats.json). `client`: an existing Dask
    client (else one is made from cfg.scheduler / a LocalCluster)."""
    from idia.candidates import build_candidates, load_identities, read_candidates_file
    from idia.image_sources import list_images
    from idia.metrics import load_ground_truth, membership_table
    from idia.prompts import load_templates

    cfg.validate()
    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    identities = load_identities(cfg.identities)
    templates = load_templates(cfg.templates)
    if cfg.candidates:
        cands = read_candidates_file(cfg.candidates, identities)
    else:
        cands = build_candidates(identities, cfg.num_candidates, cfg.seed)
    write_parquet(cands, out / "candidates.parquet")
    names = cands.column("name").to_pylist()
    true_index = {iid: i for i, iid in enumerate(cands.column("identity_id").to_pylist()) if iid is not None}
    truth = load_ground_truth(cfg.ground_truth) if cfg.ground_truth else None
    ids = sorted(identities.column("identity_id").to_pylist())
    refs, img_stats = list_images(cfg.images, ids)
    cache_dir = cfg.cache_dir or str(Path.home() / ".cache" / "idia" / "text_embeddings")
    params = _params(cfg)
    write_json({**to_dict(cfg), "cache_dir": cache_dir, "templates_used": templates}, out / "config.json")

    no_images = [i for i in ids if not refs[i]]
    with_images = [i for i in ids if refs[i]]
    groups = [with_images[s:s + cfg.group_size] for s in range(0, len(with_images), cfg.group_size)]
    run_hash = _hash({"params": {k: v for k, v in params.items() if k not in ("torch_threads", "decode_threads")},
                      "templates": templates, "candidates": names})
    todo = []
    for gid, g in enumerate(groups):
        members = [(i, true_index[i], refs[i]) for i in g]
        ghash = _hash({"run": run_hash, "members": [(i, t, [(r.image_key, r.path, r.member) for r in rs])
                                                     for i, t, rs in members]})
        done = read_done(out / PARTS, f"group-{gid:05d}")
        if not (done and done.get("hash") == ghash):
            todo.append((gid, members, ghash))

    text_info: dict = {"computed": 0, "cache_hit": None, "note": "no pending groups"}
    group_stats: list[dict] = [read_done(out / PARTS, f"group-{gid:05d}")["stats"]
                               for gid in range(len(groups)) if gid not in {t[0] for t in todo}]
    timings: dict = {}
    if todo:
        from contextlib import nullcontext

        from distributed import as_completed

        from jobs.dask_cluster import dask_client

        ctx = nullcontext(client) if client is not None else dask_client(cfg.scheduler, cfg.n_workers)
        with ctx as cl:
            if cfg.torch_threads is None:
                n_workers = max(1, len(cl.scheduler_info(n_workers=-1).get("workers", {})))
                params["torch_threads"] = max(1, (os.cpu_count() or 1) // n_workers)
            t_text = time.perf_counter()
            tf = cl.submit(text_task, params, templates, names, cache_dir, key=f"idia-text-{run_hash[:16]}")
            emb_f = cl.submit(_first, tf, key=f"idia-text-emb-{run_hash[:16]}")
            info_f = cl.submit(_second, tf, key=f"idia-text-info-{run_hash[:16]}")
            futures = [cl.submit(group_task, gid, members, emb_f, params, str(out), ghash,
                                 key=f"idia-attack-group-{gid:05d}-{_hash([ghash, str(out.resolve())])[:12]}")
                       for gid, members, ghash in todo]
            text_info = info_f.result()
            timings["text_s"] = time.perf_counter() - t_text
            from tqdm import tqdm

            with tqdm(total=len(futures), desc="attack groups", unit="group", disable=not progress) as bar:
                for fut in as_completed(futures):
                    group_stats.append(fut.result())
                    bar.update(1)
            del tf, emb_f, info_f, futures

    # Merge the groups' parts into the run's tables.
    attacks = [pq.read_table(out / PARTS / f"attacks-group-{gid:05d}.parquet") for gid in range(len(groups))]
    status = [pq.read_table(out / PARTS / f"status-group-{gid:05d}.parquet") for gid in range(len(groups))]
    status.append(pa.Table.from_pylist([{"identity_id": i, "status": "skipped", "reason": "no_images", "n_images": 0,
                                         "n_corrupt_images": 0} for i in no_images], schema=schemas.ATTACK_STATUS))
    attacks_t = pa.concat_tables(attacks) if attacks else schemas.ATTACKS.empty_table()
    attacks_t = conform(attacks_t, schemas.ATTACKS, "attacks").sort_by([("identity_id", "ascending"), ("k", "ascending"),
                                                                         ("draw", "ascending")])
    status_t = conform(pa.concat_tables(status), schemas.ATTACK_STATUS, "attack_status").sort_by("identity_id")
    write_parquet(attacks_t, out / "attacks.parquet")
    write_parquet(status_t, out / "attack_status.parquet")
    pred_files = sorted((out / "predictions").glob("group-*.parquet"))
    for f in pred_files:  # parts of an earlier, larger run are not this run's
        if int(f.stem.split("-")[1]) >= len(groups):
            f.unlink()

    stats = Stats.merge(group_stats)
    reasons = Stats()
    for s, r in zip(status_t.column("status").to_pylist(), status_t.column("reason").to_pylist()):
        reasons["attacked" if s == "attacked" else f"skipped_{r}"] += 1
    check_sum(len(ids), reasons, "identities in = attacked + skipped")
    img_in = sum(len(refs[i]) for i in ids)
    corrupt = {k: v for k, v in stats.items() if k.startswith("images_corrupt")}
    check_sum(img_in, {"images_encoded": stats["images_encoded"], **corrupt}, "images listed = encoded + corrupt")

    k_member = cfg.membership_k or max(cfg.k)
    id_df = identities.select(["identity_id", "name"]).to_pandas()
    membership = membership_table(attacks_t.to_pandas(), id_df, truth, k_member, cfg.tau)
    write_parquet(membership, out / "membership.parquet")

    summary = {
        "identities_in": len(ids),
        **{f"identities_{k}": v for k, v in sorted(reasons.items())},
        "images_listed": img_in,
        **{k: v for k, v in sorted(img_stats.items()) if k != "images_listed"},
        **{k: v for k, v in sorted(stats.items()) if k.startswith("images_") and k != "images_in"},
        "k_skipped_too_few_images": stats["k_skipped_too_few_images"],
        "attack_rows": attacks_t.num_rows,
        "candidates": len(names), "fake_candidates": int(sum(cands.column("is_fake").to_pylist())),
        "templates": len(templates),
        "groups": len(groups), "groups_run": len(todo), "groups_resumed": len(groups) - len(todo),
        "text_prompts_computed": int(text_info.get("computed", 0)), "text_cache_hit": text_info.get("cache_hit"),
        "membership_k": k_member,
        "predicted_members": int(sum(membership.column("predicted_member").to_pylist())),
        "seconds": round(time.perf_counter() - t_start, 3),
        **{k: round(v, 3) for k, v in timings.items()},
    }
    write_json(summary, out / "stats.json")
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML/JSON file with AttackConfig keys; command-line options override it")
    p.add_argument("--images", help="download output folder (index.parquet + shards/) or a folder root/<identity_id>/*.jpg")
    p.add_argument("--identities", help="names file (CSV/text), identities parquet, or a mine output folder")
    p.add_argument("--model", help="open_clip model: built-in arch (ViT-B-32), hf-hub:org/repo, or local-dir:/path")
    p.add_argument("--pretrained", help="for a built-in arch: a pretrained tag or a checkpoint file (none: random weights)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--k", help="comma-separated images per attack (default 1,3,5,...,29,30)")
    p.add_argument("--draws", type=int, help="random draws of k images per identity (default 20)")
    p.add_argument("--tau", type=int, help="member if correct templates >= tau (default 1)")
    p.add_argument("--num-candidates", type=int, help="candidate names incl. the true ones; padded with fakes (default 1000)")
    p.add_argument("--candidates", help="explicit candidate list, one name a line (replaces generated fakes)")
    p.add_argument("--templates", help="prompt templates file, one a line with {} for the name (default: the study's 21)")
    p.add_argument("--seed", type=int, help="seed for fake names and draws (default 0)")
    p.add_argument("--init-seed", type=int, help="seed of random weights when the model has none (default 0)")
    p.add_argument("--scheduler", help="existing Dask scheduler (tcp://host:port or scheduler JSON file); default a LocalCluster")
    p.add_argument("--n-workers", type=int, help="local cluster worker processes (default: one per GPU, or cores/4)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default 64)")
    p.add_argument("--ground-truth", help="mine output folder or CSV identity_id,is_member, for the membership table")
    p.add_argument("--k-policy", choices=["cap", "skip"], help="k larger than the images available: attack with what exists (cap) or skip that k")
    p.add_argument("--min-images", type=int, help="skip identities with fewer readable images than this (default 1)")
    p.add_argument("--group-size", type=int, help="identities per unit of work (default 32)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], help="inference precision (auto: fp32 on CPU, bf16/fp16 on CUDA)")
    p.add_argument("--cache-dir", help="text-embedding cache folder (default ~/.cache/idia/text_embeddings)")
    p.add_argument("--membership-k", type=int, help="k of the membership table (default the largest k)")
    p.add_argument("--torch-threads", type=int, help="torch threads per worker (default cores / workers)")
    p.add_argument("--decode-threads", type=int, help="image decoding threads per worker (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> AttackConfig:
    return from_file_and_args(AttackConfig, args, "attack config")


def print_summary(s: dict, out: str) -> None:
    print(f"attack -> {out}")
    for k, v in s.items():
        print(f"  {k:32s} {v}")


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    summary = run_attack(cfg, progress=not args.quiet)
    print_summary(summary, cfg.out)
    return 0


if __name__ == "__main__":
    from pipelines.cli import main as cli_main

    sys.exit(cli_main(["attack", *sys.argv[1:]]))
