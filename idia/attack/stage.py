"""The attack stage, engine-free: identities, candidates, templates and images -> groups of identities -> the
text task, then one task per unfinished group (on any idia.core.tasks executor) -> attacks, status, predictions.

Membership, metrics and plots are evaluate's (idia.evaluate): the attack writes what it observed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

import pyarrow as pa

import schemas
from idia.attack.candidates import build_candidates, load_identities, read_candidates_file
from idia.attack.config import AttackConfig
from idia.attack.group import AttackContext, GroupTask, Identity, attack_group, text_task
from idia.attack.images import list_images
from idia.attack.models import ModelSpec, fetch_weights
from idia.attack.prompts import load_templates
from idia.core import resume, storage
from idia.core.atomic import write_json, write_parquet, write_text
from idia.core.config import to_dict
from idia.core.provenance import provenance
from idia.core.resume import StageFolder
from idia.core.stats import Stats, check_sum
from idia.core.tasks import TaskExecutor
from schemas import files
from schemas.validate import conform

DEFAULT_CACHE = Path.home() / ".cache" / "idia" / "text_embeddings"
DEFAULT_WEIGHTS = Path.home() / ".cache" / "idia" / "weights"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_attack(cfg: AttackConfig, executor: Callable[[], AbstractContextManager[TaskExecutor]]) -> dict:
    """Run (or resume) the attack; `executor()` gives the engine. Returns the stats also in OUT/stats.json."""
    cfg.validate()
    t_start = time.perf_counter()
    storage.configure(cfg.storage_options)
    out = storage.location(storage.absolute(cfg.out))  # workers elsewhere write to the same place
    identities = load_identities(cfg.identities)
    templates = load_templates(cfg.templates)
    cands = (
        read_candidates_file(cfg.candidates, identities)
        if cfg.candidates
        else build_candidates(identities, cfg.num_candidates, cfg.seed, cfg.fake_names)
    )
    names = cands.column("name").to_pylist()
    settings = {**cfg.settings(), "templates_used": templates, "candidate_names_sha256": _hash(names)}
    folder = StageFolder(out, "attack", settings, cfg.force, type(cfg))
    folder.check()
    if cfg.force:
        for old in (out / files.PARTS_DIR, out / files.PREDICTIONS_DIR):
            storage.rmtree(old)
    true_index = {iid: i for i, iid in enumerate(cands.column("identity_id").to_pylist()) if iid is not None}
    ids = sorted(identities.column("identity_id").to_pylist())
    refs, img_stats = list_images(cfg.images, ids)
    cache_dir = str(Path(cfg.cache_dir).resolve()) if cfg.cache_dir else str(DEFAULT_CACHE)

    no_images = [i for i in ids if not refs[i]]
    with_images = [i for i in ids if refs[i]]
    groups = []
    for gid, s in enumerate(range(0, len(with_images), cfg.group_size)):
        members = tuple(Identity(i, true_index[i], tuple(refs[i])) for i in with_images[s : s + cfg.group_size])
        groups.append(
            GroupTask(
                gid,
                members,
                _hash(
                    [
                        (m.identity_id, m.true_index, [(r.image_key, r.path, r.member) for r in m.images])
                        for m in members
                    ]
                ),
            )
        )
    parts = out / files.PARTS_DIR
    finished = {g.index: resume.read_marker(parts / files.DONE_DIR, g.unit, folder.fingerprint) for g in groups}
    todo = [g for g in groups if not (finished[g.index] and finished[g.index].get("input_hash") == g.input_hash)]
    group_stats = [finished[g.index]["stats"] for g in groups if g not in todo]
    stats_path = out / files.STATS_JSON
    if not todo and folder.done() and stats_path.exists() and (out / files.ATTACKS_PARQUET).exists():
        # finished, and every group's images are as they were: nothing is computed or written again
        summary = json.loads(stats_path.read_text())
        folder.release()
        return {
            **summary,
            "groups_run": 0,
            "groups_resumed": len(groups),
            "text_prompts_computed": 0,
            "text_cache_hit": None,
            "resumed": True,
        }
    storage.makedirs(out)
    write_parquet(cands, out / files.CANDIDATES_PARQUET)
    # The same list as text, one name a line: reusable as --candidates in another run.
    write_text("".join(f"{n}\n" for n in names), out / files.CANDIDATES_TXT)
    ctx = AttackContext(
        model=ModelSpec(cfg.model, cfg.pretrained, cfg.init_seed, cfg.device, cfg.precision, cfg.torch_threads),
        templates=tuple(templates),
        candidate_names=tuple(names),
        cache_dir=cache_dir,
        out=str(out),
        fingerprint=folder.fingerprint,
        ks=tuple(sorted(set(cfg.k))),
        draws=cfg.draws,
        seed=cfg.seed,
        tau=cfg.tau,
        k_policy=cfg.k_policy,
        min_images=cfg.min_images,
        batch_size=cfg.batch_size,
        decode_threads=cfg.decode_threads,
        decode_processes=cfg.decode_processes,
        storage_conf=storage.shipped_conf(),
    )
    text_info: dict = {"computed": 0, "cache_hit": None, "note": "no pending groups"}
    model_sha = (folder.done() or {}).get("model_sha256")
    timings: dict = {}
    if todo:
        folder.pin()
        weights, options = fetch_weights(cfg.model, cfg.pretrained, str(Path(cfg.weights_dir or DEFAULT_WEIGHTS)))
        ctx = dataclasses.replace(ctx, model=dataclasses.replace(ctx.model, pretrained=weights, options=options))
        with executor() as ex:
            t_text = time.perf_counter()
            text = ex.map(text_task, ctx, [None], "attack: text embeddings")[0]
            text_info, model_sha = text["info"], text["model_sha256"]
            timings["text_s"] = time.perf_counter() - t_text
            group_ctx = dataclasses.replace(ctx, text_emb=text["emb"])
            group_stats += ex.map(attack_group, group_ctx, todo, "attack groups")

    # Merge the groups' parts into the run's tables.
    attacks = [storage.read_parquet(parts / f"attacks-{g.unit}.parquet") for g in groups]
    status = [storage.read_parquet(parts / f"status-{g.unit}.parquet") for g in groups]
    status.append(
        pa.Table.from_pylist(
            [
                {"identity_id": i, "status": "skipped", "reason": "no_images", "n_images": 0, "n_corrupt_images": 0}
                for i in no_images
            ],
            schema=schemas.ATTACK_STATUS,
        )
    )
    attacks_t = pa.concat_tables(attacks) if attacks else schemas.ATTACKS.empty_table()
    attacks_t = conform(attacks_t, schemas.ATTACKS, "attacks").sort_by(
        [("identity_id", "ascending"), ("k", "ascending"), ("draw", "ascending")]
    )
    status_t = conform(pa.concat_tables(status), schemas.ATTACK_STATUS, "attack_status").sort_by("identity_id")
    write_parquet(attacks_t, out / files.ATTACKS_PARQUET)
    write_parquet(status_t, out / files.ATTACK_STATUS_PARQUET)
    for f in sorted((out / files.PREDICTIONS_DIR).glob("group-*.parquet")):  # parts of an earlier, larger run
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

    summary = {
        "identities_in": len(ids),
        **{f"identities_{k}": v for k, v in sorted(reasons.items())},
        "images_listed": img_in,
        **{k: v for k, v in sorted(img_stats.items()) if k != "images_listed"},
        **{k: v for k, v in sorted(stats.items()) if k.startswith("images_") and k != "images_in"},
        "k_skipped_too_few_images": stats["k_skipped_too_few_images"],
        "attack_rows": attacks_t.num_rows,
        "candidates": len(names),
        "fake_candidates": int(sum(cands.column("is_fake").to_pylist())),
        "fake_names": "file" if cfg.candidates else cfg.fake_names,
        **(
            {
                "fakes_dropped_as_real_or_repeated": 2 * ((cfg.num_candidates - identities.num_rows) // 2)
                - (len(names) - identities.num_rows)
            }
            if not cfg.candidates and cfg.fake_names == "study"
            else {}
        ),
        "templates": len(templates),
        "groups": len(groups),
        "groups_run": len(todo),
        "groups_resumed": len(groups) - len(todo),
        "text_prompts_computed": int(text_info.get("computed", 0)),
        "text_cache_hit": text_info.get("cache_hit"),
        "seconds": round(time.perf_counter() - t_start, 3),
        **{k: round(v, 3) for k, v in timings.items()},
    }
    write_json(
        {
            **to_dict(cfg),
            "cache_dir": cache_dir,
            "weights_loaded": ctx.model.pretrained,  # a --pretrained tag: the file fetched once for the workers
            "templates_used": templates,
            "model_sha256": model_sha,
            "provenance": provenance(),
        },
        out / files.CONFIG_JSON,
    )
    write_json(summary, out / files.STATS_JSON)
    folder.mark_done(info={"model_sha256": model_sha})
    return summary
