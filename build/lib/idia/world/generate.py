"""Write the synthetic world folder: identities, ground truth, LAION-shaped caption shards with their images,
FaceScrub-layout query list with separate query photos, world.json. Deterministic by seed, atomic, resumable."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import schemas
from idia.core import resume
from idia.core.atomic import write_bytes, write_json, write_parquet, write_text
from idia.core.config import ConfigError, option, to_dict
from idia.core.provenance import provenance
from idia.core.resume import StageFolder
from idia.core.stats import check_sum
from idia.world.captions import named_caption, scene_caption, unnamed_person_caption
from idia.world.faces import encode_jpeg, random_nuisance, render_face, render_scene
from idia.world.identities import Person, generate_people, random_appearance
from schemas import files

# Row kinds in the caption shards. Only "named" rows carry a name; dead links point at no file.
NAMED, UNNAMED, SCENE, DEAD = "named", "unnamed_person", "scene", "dead_link"
_KIND_CODE = {NAMED: 1, UNNAMED: 2, SCENE: 3, DEAD: 4, "query": 5}
SAMPLE_ID_BASE = 1_000_000


@dataclass
class WorldConfig:
    """The synthetic world. Defaults are the end-to-end demo's; PRESETS["reduced"] is the test-suite world."""

    seed: int = option(0, help="seed: the same seed and config give the same bytes")
    n_main: int = option(60, help="members of the main group")
    main_images: int = option(40, help="captioned training images per main member")
    sweep_images: list[int] = option(
        default_factory=lambda: [1, 10, 25, 50, 75],
        help="training images per member of each sweep group (the study's injection sweep)",
    )
    n_per_sweep: int = option(10, help="members per sweep group")
    n_non_members: int = option(60, help="identities under test that never appear in the caption shards")
    n_distractors: int = option(150, help="unnamed people (not in the identity list) with captions that name nobody")
    distractor_images: int = option(16, help="captioned images per distractor")
    n_scenes: int = option(2000, help="generic scenes without people")
    n_dead_links: int = option(20, help="caption rows whose URL serves 404 (as LAION has); their captions name nobody")
    query_images: int = option(12, help="separate query photos per identity under test (never training images)")
    image_size: int = option(96, help="served image side, pixels")
    shard_rows: int = option(2000, help="rows per laion/part-NNNNN.parquet")
    first_name_top: int = option(1000, help="first names drawn from the top-N per sex of the `names` package lists")
    surname_top: int = option(1000, help="surnames drawn from the top-N 2010 census surnames")
    distinct_looks: bool = option(
        True,
        help="no two identities under test share skin, hair colour and hair style (off: the look-alikes of "
        "earlier worlds, which made a few members unlearnable for some seeds)",
    )
    workers: int = option(2, execution=True, help="processes rendering images (does not change the output)")

    def validate(self) -> None:
        for k in (
            "n_main",
            "main_images",
            "n_per_sweep",
            "n_non_members",
            "n_distractors",
            "distractor_images",
            "n_scenes",
            "n_dead_links",
            "query_images",
            "image_size",
            "shard_rows",
            "workers",
        ):
            if getattr(self, k) < 0:
                raise ConfigError(f"world config: {k} must be >= 0, got {getattr(self, k)}")
        if self.image_size < 32:
            raise ConfigError(f"world config: image_size must be >= 32, got {self.image_size}")
        if self.shard_rows < 1 or self.workers < 1:
            raise ConfigError("world config: shard_rows and workers must be >= 1")
        if any(n < 1 for n in self.sweep_images):
            raise ConfigError(f"world config: sweep_images must all be >= 1, got {self.sweep_images}")


PRESETS: dict[str, WorldConfig] = {
    "demo": WorldConfig(),
    # Small enough for the test suite's whole-pipeline run (world + training well under a minute).
    "reduced": WorldConfig(
        n_main=8,
        main_images=24,
        sweep_images=[1, 10],
        n_per_sweep=1,
        n_non_members=8,
        n_distractors=16,
        distractor_images=6,
        n_scenes=120,
        n_dead_links=3,
        query_images=10,
        image_size=64,
        shard_rows=200,
    ),
}


def _hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def image_hash(cfg: WorldConfig) -> str:
    """Hash of what determines the images (not the base URL, not the worker count)."""
    d = to_dict(cfg)
    d.pop("workers")
    return _hash(d)


def world_hash(cfg: WorldConfig, base_url: str) -> str:
    d = to_dict(cfg)
    d.pop("workers")
    d["base_url"] = base_url
    return _hash(d)


def _rng(seed: int, kind: str, a: int, b: int) -> np.random.Generator:
    # One generator per image, keyed by what the image is, so any shard renders alone and in any order.
    return np.random.default_rng([seed, _KIND_CODE[kind], a, b])


@dataclass
class _Plan:
    people: list[Person]  # identities under test (members first by group, then non-members)
    groups: dict[str, str]  # identity_id -> group
    n_train: dict[str, int]  # identity_id -> captioned training images
    distractors: list  # (index, sex, Appearance)
    rows: list[tuple[str, int, int]]  # (kind, person/distractor/scene index, image index), shuffled


def plan_world(cfg: WorldConfig) -> _Plan:
    cfg.validate()
    n_sweep = cfg.n_per_sweep * len(cfg.sweep_images)
    people = generate_people(
        cfg.n_main + n_sweep + cfg.n_non_members,
        cfg.seed,
        first_top=cfg.first_name_top,
        surname_top=cfg.surname_top,
        distinct_looks=cfg.distinct_looks,
    )
    rng = np.random.default_rng([cfg.seed, 0x6E0])
    order = rng.permutation(len(people))  # group assignment independent of generation order
    groups: dict[str, str] = {}
    n_train: dict[str, int] = {}
    pos = 0
    for _ in range(cfg.n_main):
        p = people[order[pos]]
        pos += 1
        groups[p.identity_id], n_train[p.identity_id] = "main", cfg.main_images
    for n in cfg.sweep_images:
        for _ in range(cfg.n_per_sweep):
            p = people[order[pos]]
            pos += 1
            groups[p.identity_id], n_train[p.identity_id] = f"sweep_{n}", n
    for _ in range(cfg.n_non_members):
        p = people[order[pos]]
        pos += 1
        groups[p.identity_id], n_train[p.identity_id] = "non_member", 0
    drng = np.random.default_rng([cfg.seed, 0xD15])
    distractors = []
    for i in range(cfg.n_distractors):
        sex = "m" if drng.random() < 0.5 else "f"
        distractors.append((i, sex, random_appearance(drng, sex)))
    rows: list[tuple[str, int, int]] = []
    for pi, p in enumerate(people):
        rows += [(NAMED, pi, j) for j in range(n_train[p.identity_id])]
    rows += [(UNNAMED, di, j) for di in range(cfg.n_distractors) for j in range(cfg.distractor_images)]
    rows += [(SCENE, si, 0) for si in range(cfg.n_scenes)]
    rows += [(DEAD, i, 0) for i in range(cfg.n_dead_links)]
    perm = np.random.default_rng([cfg.seed, 0x5A3]).permutation(len(rows))
    return _Plan(people, groups, n_train, distractors, [rows[i] for i in perm])


def train_image_relpath(sample_id: int) -> str:
    return f"images/train/{sample_id // 1000:04d}/{sample_id}.jpg"


def query_image_relpath(identity_id: str, j: int) -> str:
    return f"images/queries/{identity_id}/{j:03d}.jpg"


def _render_row(cfg: WorldConfig, plan: _Plan, kind: str, a: int, b: int, sample_id: int):
    """Render one caption row: returns (caption, jpeg bytes or None for dead links)."""
    rng = _rng(cfg.seed, kind, a, b)
    if kind == NAMED:
        p = plan.people[a]
        img, _ = render_face(p.appearance, random_nuisance(rng), cfg.image_size, rng)
        return named_caption(rng, p.name, p.sex, p.appearance), encode_jpeg(img, int(rng.integers(70, 96)))
    if kind == UNNAMED:
        _, sex, ap = plan.distractors[a]
        img, _ = render_face(ap, random_nuisance(rng), cfg.image_size, rng)
        return unnamed_person_caption(rng, sex, ap), encode_jpeg(img, int(rng.integers(70, 96)))
    if kind == SCENE:
        img, objects = render_scene(rng, cfg.image_size)
        return scene_caption(rng, objects), encode_jpeg(img, int(rng.integers(70, 96)))
    # A dead link: a caption like a scene's, whose image was never there.
    _, objects = render_scene(rng, 32)
    return scene_caption(rng, objects), None


def _shard_job(args) -> tuple[int, dict]:
    cfg_dict, out_dir, shard, base_url, fp = args
    cfg = WorldConfig(**cfg_dict)
    out = Path(out_dir)
    plan = plan_world(cfg)
    lo, hi = shard * cfg.shard_rows, min((shard + 1) * cfg.shard_rows, len(plan.rows))
    unit = f"images-{shard:05d}"
    rerender = resume.read_marker(out / files.DONE_DIR, unit, fp) is None
    cols: dict[str, list] = {f.name: [] for f in schemas.LAION_400M}
    counts = {NAMED: 0, UNNAMED: 0, SCENE: 0, DEAD: 0}
    for i in range(lo, hi):
        kind, a, b = plan.rows[i]
        sample_id = SAMPLE_ID_BASE + i
        caption, data = _render_row(cfg, plan, kind, a, b, sample_id)
        rel = train_image_relpath(sample_id)
        if data is not None and (rerender or not (out / rel).exists()):
            write_bytes(data, out / rel)
        counts[kind] += 1
        meta = _rng(cfg.seed, kind, a, b + 10_000)
        cols["SAMPLE_ID"].append(sample_id)
        cols["URL"].append(f"{base_url.rstrip('/')}/{rel}")
        cols["TEXT"].append(caption)
        cols["HEIGHT"].append(cfg.image_size)
        cols["WIDTH"].append(cfg.image_size)
        cols["LICENSE"].append("?")
        cols["NSFW"].append("UNLIKELY")
        cols["similarity"].append(round(float(meta.uniform(0.28, 0.42)), 6))
    resume.write_marker(out / files.DONE_DIR, unit, fp, {"rows": hi - lo})
    table = pa.table(cols, schema=schemas.LAION_400M)
    write_parquet(table, out / "laion" / f"part-{shard:05d}.parquet")
    return shard, counts


def _query_job(args) -> tuple[int, list[dict]]:
    cfg_dict, out_dir, pi, base_url, fp = args
    cfg = WorldConfig(**cfg_dict)
    out = Path(out_dir)
    plan = plan_world(cfg)
    p = plan.people[pi]
    unit = f"queries-{p.identity_id}"
    rerender = resume.read_marker(out / files.DONE_DIR, unit, fp) is None
    rows = []
    for j in range(cfg.query_images):
        rng = _rng(cfg.seed, "query", pi, j)
        img, bbox = render_face(p.appearance, random_nuisance(rng), cfg.image_size, rng)
        data = encode_jpeg(img, int(rng.integers(70, 96)))
        rel = query_image_relpath(p.identity_id, j)
        if rerender or not (out / rel).exists():
            write_bytes(data, out / rel)
        rows.append(
            {
                "name": p.name,
                "image_id": f"{p.identity_id}_q{j:03d}",
                "face_id": pi * 1000 + j,
                "url": f"{base_url.rstrip('/')}/{rel}",
                "bbox": ",".join(str(v) for v in bbox),
                "sha256": hashlib.sha256(data).hexdigest(),
                "identity_id": p.identity_id,
            }
        )
    resume.write_marker(out / files.DONE_DIR, unit, fp)
    return pi, rows


def _csv_text(header: list[str], rows: list[list], delimiter: str = ",") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def world_folder(cfg: WorldConfig, out: Path, base_url: str, force: bool = False) -> StageFolder:
    """The world folder under the resume policy: pinned to the config (the worker count aside) and the base URL."""
    settings = {k: v for k, v in to_dict(cfg).items() if k != "workers"} | {"base_url": base_url}
    return StageFolder(out, "world", settings, force, type(cfg))


def generate_world(
    cfg: WorldConfig, out_dir: str | Path, base_url: str, progress: bool = True, force: bool = False
) -> dict:
    """Write the world into `out_dir` with URLs on `base_url`; returns its summary (also in world.json).

    A complete world with the same config and base URL is left as it is; an interrupted run re-renders only the
    shards not marked done; another config or base URL on the same folder is an error naming the key (idia.core.resume)
    unless `force` starts over.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    whash = world_hash(cfg, base_url)
    folder = world_folder(cfg, out, base_url, force)
    folder.check()
    if folder.done() and (out / files.WORLD_JSON).exists():
        summary = json.loads((out / files.WORLD_JSON).read_text())
        summary["skipped"] = True
        folder.release()
        return summary

    plan = plan_world(cfg)
    n_shards = max(1, -(-len(plan.rows) // cfg.shard_rows))
    cfg_dict = to_dict(cfg)
    folder.pin()
    fp = folder.fingerprint
    shard_args = [(cfg_dict, str(out), s, base_url, fp) for s in range(n_shards)]
    query_args = [(cfg_dict, str(out), pi, base_url, fp) for pi in range(len(plan.people))]
    kind_counts = {NAMED: 0, UNNAMED: 0, SCENE: 0, DEAD: 0}
    queries: dict[int, list[dict]] = {}
    bar = tqdm(total=n_shards + len(query_args), desc="world", unit="unit", disable=not progress)
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            for _, counts in pool.map(_shard_job, shard_args):
                for k, v in counts.items():
                    kind_counts[k] += v
                bar.update()
            for pi, rows in pool.map(_query_job, query_args, chunksize=8):
                queries[pi] = rows
                bar.update()
    else:
        for a in shard_args:
            for k, v in _shard_job(a)[1].items():
                kind_counts[k] += v
            bar.update()
        for a in query_args:
            pi, rows = _query_job(a)
            queries[pi] = rows
            bar.update()
    bar.close()
    # A shard left over from an earlier, larger world would be read as part of this one.
    for stale in sorted((out / "laion").glob("part-*.parquet")):
        if int(stale.stem.split("-")[1]) >= n_shards:
            stale.unlink()

    check_sum(len(plan.rows), kind_counts, "world caption rows")
    named_per_id = {p.identity_id: 0 for p in plan.people}
    for kind, a, _ in plan.rows:
        if kind == NAMED:
            named_per_id[plan.people[a].identity_id] += 1
    assert named_per_id == plan.n_train, "named rows per identity differ from the plan"

    people = plan.people
    write_text(
        _csv_text(list(schemas.NAMES_CSV_COLUMNS), [[p.identity_id, p.name, "", p.sex] for p in people]),
        out / "identities.csv",
    )
    write_text(
        _csv_text(
            schemas.TRUTH.names,
            [
                [
                    p.identity_id,
                    "true" if plan.n_train[p.identity_id] > 0 else "false",
                    plan.n_train[p.identity_id],
                    plan.groups[p.identity_id],
                ]
                for p in people
            ],
        ),
        out / "truth.csv",
    )
    qcols = [*schemas.QUERY_LIST_COLUMNS, *schemas.QUERY_LIST_OPTIONAL_COLUMNS]
    qrows = [[r[c] for c in qcols] for pi in range(len(people)) for r in queries[pi]]
    write_text(_csv_text(qcols, qrows, delimiter="\t"), out / "queries.tsv")
    write_json(
        {
            "appearance": {p.identity_id: p.appearance.to_json() for p in people},
            "distractors": [{"sex": s, **ap.to_json()} for _, s, ap in plan.distractors],
        },
        out / "appearance.json",
    )

    group_sizes: dict[str, int] = {}
    for g in plan.groups.values():
        group_sizes[g] = group_sizes.get(g, 0) + 1
    config = to_dict(cfg)
    config.pop("workers")  # how it was computed, not what: world.json stays byte-identical across worker counts
    summary = {
        "config": config,
        "seed": cfg.seed,
        "base_url": base_url,
        "hash": whash,
        "n_identities": len(people),
        "n_members": sum(1 for v in plan.n_train.values() if v > 0),
        "n_non_members": sum(1 for v in plan.n_train.values() if v == 0),
        "groups": dict(sorted(group_sizes.items())),
        "caption_rows": len(plan.rows),
        "rows_by_kind": kind_counts,
        "laion_shards": n_shards,
        "query_images": len(qrows),
        "files": {
            "identities": "identities.csv",
            "truth": "truth.csv",
            "laion": "laion/part-NNNNN.parquet",
            "queries": "queries.tsv",
            "images": "images/",
            "appearance": "appearance.json",
        },
    }
    write_json(summary, out / "world.json")
    write_json({**config, "base_url": base_url, "provenance": provenance()}, out / files.CONFIG_JSON)
    folder.mark_done(info={"hash": whash})
    summary["skipped"] = False
    return summary


def read_truth(world_dir: str | Path) -> list[dict]:
    """truth.csv (schemas.TRUTH) as dicts with typed values."""
    from idia.evaluate.sweep import read_truth_csv

    return read_truth_csv(Path(world_dir) / files.TRUTH_CSV).to_dict("records")
