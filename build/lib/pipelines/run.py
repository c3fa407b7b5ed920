"""`idia run CONFIG`: run a whole pipeline ([world -> train ->] mine -> download -> attack -> evaluate -> report).

The config's sections use each stage's own keys (see `idia <stage> --help`); the runner only wires the stages'
folders together (one subfolder per stage under `out`). Every stage config is built and validated before anything
runs. `--set section.key=value` overrides any key (`--set world.config.seed=1`, `--set attack.k=[1,5,10]`);
`--dry-run` prints every stage's resolved config as JSON and runs nothing. Every stage resumes on its own: a rerun
of the same config skips what is complete, a killed run continues where it stopped, and a rerun with a changed
setting stops with an error naming it (`--force` starts every stage over).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from idia.core import storage
from idia.core.atomic import write_json
from idia.core.config import ConfigError, from_dict, load_file, parse_assignment, to_dict
from schemas import files


@dataclass
class WorldSection:
    """The embedded synthetic world and the tiny CLIP trained on it (the demo's stand-in for LAION + OpenCLIP)."""

    preset: str = "demo"  # idia.world.generate.PRESETS
    config: dict = field(default_factory=dict)  # WorldConfig keys over the preset
    train_preset: str = "demo"  # idia.world.train.PRESETS
    train: dict = field(default_factory=dict)  # TrainConfig keys over the preset
    host: str = "127.0.0.1"  # loopback address of the world's image server
    port: int = 8765  # its port; the world's URLs name it, so it is part of the world


@dataclass
class PipelineConfig:
    out: str  # run folder: one subfolder per stage, report.md at the top
    world: WorldSection | None = None  # set: generate/serve the synthetic world and train the tiny CLIP on it
    mine: dict = field(default_factory=dict)  # MineConfig keys (shards/names come from the world when it is set)
    download: dict = field(default_factory=dict)  # DownloadConfig keys
    attack: dict = field(default_factory=dict)  # AttackConfig keys (model comes from the world when it is set)
    evaluate: dict = field(default_factory=dict)  # EvaluateConfig keys
    compare_published: bool = False  # set the mined occurrence table beside the study's published one
    headline_k: int = 10  # the k whose metrics the summary prints
    seeds: list[int] | None = None  # with a world: one world + tiny CLIP + attack per seed, rates over seeds
    preset: str | None = None  # pipelines.presets: stage keys the config starts from ("study": the study's settings)
    # Several models, one attack + evaluation each: a model spec, or a mapping of attack keys (model, pretrained,
    # precision, ...) over the attack section. The first is the run's main model (attack/, evaluate/), the others
    # go to models/<label>/; the report has one metrics row per model.
    models: list | None = None
    # A run folder on object storage (out: s3://bucket/run): fsspec options for it, handed to every stage, and the
    # local folder that keeps what must be on local disk (the synthetic world, served by the loopback image server,
    # and the tiny CLIP, loaded from its folder). Local runs keep both under out unless world_dir says otherwise.
    storage_options: dict = field(default_factory=dict)
    world_dir: str | None = None


def apply_overrides(data: dict, assignments: list[str]) -> dict:
    """`section.key=value` assignments (values read as YAML) into a raw pipeline config, nested keys by dots."""
    data = json.loads(json.dumps(data))
    for a in assignments:
        path, value = parse_assignment(a, "--set")
        keys = path.split(".")
        node = data
        for k in keys[:-1]:
            if node.get(k) is None:
                node[k] = {}
            if not isinstance(node[k], dict):
                raise ConfigError(f"--set {a!r}: {k} is not a section")
            node = node[k]
        node[keys[-1]] = value
    return data


def load_pipeline(path: str | Path, overrides: list[str] = (), preset: str | None = None) -> PipelineConfig:
    """The config file over its preset (`preset:` in the file, or `preset` here, which wins), then the overrides.
    Relative paths in the config are relative to where the command runs, like every other CLI path."""
    from pipelines.presets import apply_preset

    data = load_file(path)
    if preset:
        data["preset"] = preset
    data = apply_overrides(apply_preset(data, data.get("preset")), list(overrides))
    return from_dict(PipelineConfig, data, str(path))


def _stage_cfg(cls, section: dict, wired: dict, name: str, force: bool):
    clash = sorted(set(section) & set(wired))
    if clash:
        raise ConfigError(f"pipeline {name}: {', '.join(clash)} are set by the pipeline itself; remove them")
    cfg = from_dict(cls, {**section, **wired, **({"force": True} if force else {})}, f"pipeline.{name}")
    cfg.validate()
    return cfg


@dataclass
class Plan:
    """Every stage's resolved config, before anything runs."""

    out: Path
    world: tuple | None  # (WorldSection, WorldConfig, TrainConfig, world dir, model dir)
    mine: object
    download: object
    attack: object
    evaluate: object
    more_models: list = field(default_factory=list)  # (label, AttackConfig, EvaluateConfig) of models 2..n

    def resolved(self) -> dict:
        d = {"out": str(self.out)}
        if self.world:
            w, wcfg, tcfg, world_dir, model_dir = self.world
            d["world"] = {**to_dict(wcfg), "folder": str(world_dir), "base_url": f"http://{w.host}:{w.port}"}
            d["train"] = {**to_dict(tcfg), "folder": str(model_dir)}
        for name in ("mine", "download", "attack", "evaluate"):
            d[name] = to_dict(getattr(self, name))
        for label, a, e in self.more_models:
            d.setdefault("models", {})[label] = {"attack": to_dict(a), "evaluate": to_dict(e)}
        return d


def model_entries(models: list | None) -> list[dict]:
    """`models:` entries as attack-key mappings, each with a path-safe label (the model spec, never a person)."""
    import re

    out, seen = [], set()
    for i, m in enumerate(models or []):
        entry = {"model": m} if isinstance(m, str) else m
        if not isinstance(entry, dict) or not entry.get("model"):
            raise ConfigError(f"pipeline.models[{i}]: expected a model spec or a mapping with a `model` key, got {m!r}")
        raw = entry["model"] + (f"-{entry['pretrained']}" if entry.get("pretrained") else "")
        label = re.sub(r"[^A-Za-z0-9._-]+", "-", raw.split("/")[-1]).strip("-.")[:60] or f"model-{i}"
        if label in seen:
            label = f"{label}-{i}"
        seen.add(label)
        out.append({"label": label, "keys": dict(entry)})
    return out


def plan_pipeline(cfg: PipelineConfig, force: bool = False) -> Plan:
    from idia.attack.config import AttackConfig
    from idia.download.config import DownloadConfig
    from idia.evaluate.stage import EvaluateConfig
    from idia.mine.config import MineConfig

    storage.configure(cfg.storage_options)
    out = storage.location(cfg.out)
    d = {k: out / v for k, v in files.RUN_STAGE_DIRS.items()}
    if cfg.world_dir or (cfg.world and storage.remote(out)):
        if not cfg.world_dir:
            raise ConfigError(
                f"pipeline.world_dir: the run folder {cfg.out} is on object storage; the synthetic world (served by "
                "the loopback image server) and the tiny CLIP need a local folder: set world_dir (--set "
                "world_dir=runs/world)"
            )
        local = storage.local_only(cfg.world_dir, "pipeline.world_dir")
        d["world"], d["train"] = local / files.RUN_STAGE_DIRS["world"], local / files.RUN_STAGE_DIRS["train"]
    storage_wired = {"storage_options": cfg.storage_options} if cfg.storage_options else {}
    mine_wired: dict = {"out": str(d["mine"]), **storage_wired}
    download_wired: dict = {"out": str(d["download"]), **storage_wired}
    attack_wired: dict = {"out": str(d["attack"]), "images": str(d["download"]), **storage_wired}
    if "identities" not in cfg.attack:
        # The download's copy of the names list has the sexes its query sources gave (FaceScrub's actors /
        # actresses files); otherwise mine's.
        with_sexes = cfg.download.get("queries") and cfg.download.get("identities")
        attack_wired["identities"] = str(d["download"] if with_sexes else d["mine"])
    evaluate_wired: dict = {
        "out": str(d["evaluate"]),
        "attack": str(d["attack"]),
        "ground_truth": str(d["mine"]),
        **storage_wired,
    }

    world = None
    if cfg.world:
        from idia.world.generate import PRESETS as WORLD_PRESETS
        from idia.world.generate import WorldConfig
        from idia.world.train import PRESETS as TRAIN_PRESETS
        from idia.world.train import TrainConfig

        w = cfg.world
        if w.preset not in WORLD_PRESETS or w.train_preset not in TRAIN_PRESETS:
            raise ConfigError(
                f"pipeline.world: unknown preset; world presets {sorted(WORLD_PRESETS)}, "
                f"train presets {sorted(TRAIN_PRESETS)}"
            )
        wcfg = from_dict(WorldConfig, {**to_dict(WORLD_PRESETS[w.preset]), **w.config}, "pipeline.world.config")
        wcfg.validate()
        tcfg = from_dict(TrainConfig, {**to_dict(TRAIN_PRESETS[w.train_preset]), **w.train}, "pipeline.world.train")
        tcfg.validate()
        world = (w, wcfg, tcfg, d["world"], d["train"])
        identities = str(d["world"] / files.WORLD_IDENTITIES_CSV)
        mine_wired |= {"shards": [str(d["world"] / files.LAION_DIR / "*.parquet")], "names": identities}
        # The study queried with external photos, never training images: the world's query list. Only the demo's
        # own loopback server is allowed; every other private address stays refused.
        download_wired |= {
            "queries": str(d["world"] / files.QUERIES_TSV),
            "identities": identities,
            "allowed_networks": [f"{w.host}/32"],
        }
        attack_wired |= {"model": f"local-dir:{d['train']}", "identities": identities}

    entries = model_entries(cfg.models)
    if entries and world:
        raise ConfigError("pipeline.models: a run with a world attacks the world's own tiny CLIP; remove models")
    attack_section = {**cfg.attack, **entries[0]["keys"]} if entries else cfg.attack
    more = []
    for i, e in enumerate(entries[1:], 1):
        base = out / files.MODELS_DIR / e["label"]
        a = _stage_cfg(
            AttackConfig,
            {**cfg.attack, **e["keys"]},
            {**attack_wired, "out": str(base / "attack")},
            f"models[{i}]",
            force,
        )
        ev = _stage_cfg(
            EvaluateConfig,
            cfg.evaluate,
            {**evaluate_wired, "out": str(base / "evaluate"), "attack": str(base / "attack")},
            f"models[{i}].evaluate",
            force,
        )
        more.append((e["label"], a, ev))
    return Plan(
        out,
        world,
        _stage_cfg(MineConfig, cfg.mine, mine_wired, "mine", force),
        _stage_cfg(DownloadConfig, cfg.download, download_wired, "download", force),
        _stage_cfg(AttackConfig, attack_section, attack_wired, "attack", force),
        _stage_cfg(EvaluateConfig, cfg.evaluate, evaluate_wired, "evaluate", force),
        more,
    )


class _Stages:
    """Prints one header per stage and keeps every stage's summary for the report."""

    def __init__(self, names: list[str]):
        self.names = names
        self.summaries: dict[str, dict] = {}
        self.times: dict[str, float] = {}

    def run(self, name: str, fn, *a, **kw):
        i = self.names.index(name) + 1
        print(f"\n=== [{i}/{len(self.names)}] {name} ===", flush=True)
        t0 = time.time()
        out = fn(*a, **kw)
        self.times[name] = time.time() - t0
        self.summaries[name] = out if isinstance(out, dict) else {}
        print(f"=== {name}: done in {self.times[name]:.1f} s ===", flush=True)
        return out


def entry_label(a) -> str:
    """How the report names a model: its spec, and its weights when a tag or file is given."""
    return a.model + (f" ({a.pretrained})" if a.pretrained else "")


def seed_config(cfg: PipelineConfig, seed: int) -> PipelineConfig:
    """The one-seed pipeline of a multi-seed run: its own folder; the world, training and attack seeds all `seed`."""
    w = dataclasses.replace(
        cfg.world, config={**cfg.world.config, "seed": seed}, train={**cfg.world.train, "seed": seed}
    )
    return dataclasses.replace(
        cfg,
        out=str(storage.location(cfg.out) / f"seed-{seed}"),
        world_dir=str(Path(cfg.world_dir) / f"seed-{seed}") if cfg.world_dir else None,
        world=w,
        attack={**cfg.attack, "seed": seed},
        seeds=None,
    )


def run_seeds(cfg: PipelineConfig, force: bool = False, redact: bool = False) -> dict:
    """The controlled experiment once per seed, then every group's rate as mean ± std over seeds."""
    from idia.evaluate.seeds import aggregate_seeds, write_seeds_report

    if not cfg.world:
        raise ConfigError("seeds: a run over several seeds needs the world section (the controlled experiment)")
    if len(set(cfg.seeds)) != len(cfg.seeds) or len(cfg.seeds) < 2:
        raise ConfigError(f"seeds: give at least two distinct seeds, got {cfg.seeds}")
    plans = [plan_pipeline(seed_config(cfg, s), force) for s in cfg.seeds]  # every seed validated before any runs
    t0 = time.time()
    runs, headlines, last = {}, {}, {}
    for i, (s, plan) in enumerate(zip(cfg.seeds, plans), 1):
        print(f"\n##### seed {s} ({i} of {len(cfg.seeds)}) -> {plan.out} #####", flush=True)
        last = run_pipeline(seed_config(cfg, s), force, redact, checks=False)
        runs[s], headlines[s] = plan.out, last["headline"]
    out = storage.location(cfg.out)
    write_json(to_dict(cfg), out / files.PIPELINE_CONFIG_JSON)
    summary = write_seeds_report(out, aggregate_seeds(runs), headlines, last["k"], last["tau"])
    summary["wall_s"] = round(time.time() - t0, 1)
    write_json(summary, out / files.SUMMARY_JSON)
    return summary


def run_pipeline(cfg: PipelineConfig, force: bool = False, redact: bool = False, checks: bool = True) -> dict:
    """Run every stage in order; all stage configs are built and validated before anything runs."""
    if cfg.seeds:
        return run_seeds(cfg, force, redact)
    from idia.evaluate.stage import run_evaluate
    from jobs.attack import run_attack
    from jobs.download import run_download
    from jobs.mine import run_mine

    plan = plan_pipeline(cfg, force)
    out = plan.out
    names = (["world", "train"] if plan.world else []) + ["mine"] + (["compare-lists"] if cfg.compare_published else [])
    more = [f"{kind} {label}" for label, _, _ in plan.more_models for kind in ("attack", "evaluate")]
    stages = _Stages(names + ["download", "attack", "evaluate", *more, "report"])
    t0 = time.time()
    storage.makedirs(out)
    write_json(to_dict(cfg), out / files.PIPELINE_CONFIG_JSON)

    server = None
    if plan.world:
        from idia.world.generate import generate_world
        from idia.world.server import LoopbackServer
        from idia.world.train import train_tiny_clip

        w, wcfg, tcfg, world_dir, model_dir = plan.world
        stages.run("world", generate_world, wcfg, world_dir, f"http://{w.host}:{w.port}", force=force)
        stages.run("train", train_tiny_clip, tcfg, world_dir, model_dir, force=force)
        server = LoopbackServer(world_dir, host=w.host, port=w.port)

    stages.run("mine", run_mine, plan.mine)
    if cfg.compare_published:
        from idia.mine.compare import compare_to_published

        stages.run("compare-lists", compare_to_published, plan.mine.out, out / files.RUN_STAGE_DIRS["compare-lists"])
    if server is not None:
        with server:
            stages.run("download", run_download, plan.download)
    else:
        stages.run("download", run_download, plan.download)
    stages.run("attack", run_attack, plan.attack)
    stages.run("evaluate", run_evaluate, plan.evaluate)
    models = [(entry_label(plan.attack), plan.attack.out, plan.evaluate.out)]
    for label, a, e in plan.more_models:
        stages.run(f"attack {label}", run_attack, a)
        stages.run(f"evaluate {label}", run_evaluate, e)
        models.append((entry_label(a), a.out, e.out))

    from idia.evaluate.report import write_report

    summary = stages.run(
        "report",
        write_report,
        out,
        plan.world[3] if plan.world else None,
        cfg.headline_k,
        stages.summaries,
        stages.times,
        redact,
        models if len(models) > 1 else None,
    )
    if plan.world and checks:
        summary["checks"] = demo_checks(plan)
        summary["text"] += "\n" + "\n".join(c["line"] for c in summary["checks"])
    summary["wall_s"] = round(time.time() - t0, 1)
    summary["stage_seconds"] = {k: round(v, 1) for k, v in stages.times.items()}
    summary["stages"] = {k: v for k, v in stages.summaries.items() if k != "report"}
    write_json(summary, out / files.SUMMARY_JSON)
    return summary


def demo_checks(plan: Plan) -> list[dict]:
    """`idia check` on the world's first main-group member and first non-member, from their query photos: what a
    person asking "does this model know MY face?" would see."""
    from idia.attack.check import CheckConfig, check_person
    from idia.evaluate.sweep import read_truth_csv
    from idia.mine.names import read_names
    from idia.world.generate import query_image_relpath

    w, _, _, world_dir, model_dir = plan.world
    truth = read_truth_csv(world_dir / files.TRUTH_CSV).sort_values("identity_id")
    people = {r["identity_id"]: r for r in read_names(world_dir / files.WORLD_IDENTITIES_CSV).to_pylist()}
    picks = [truth[truth["group"] == "main"], truth[~truth["is_member"]]]
    out = []
    for rows, what in zip(picks, ("a member", "a non-member")):
        if rows.empty:
            continue
        iid = rows["identity_id"].iloc[0]
        person = people[iid]
        photos = (world_dir / query_image_relpath(iid, 0)).parent
        cfg = CheckConfig(
            name=person["name"],
            photos=str(photos),
            model=[f"local-dir:{model_dir}"],
            sex=person["sex"],
            mine=plan.mine.out,
            cache_dir=plan.attack.cache_dir,
        )
        r = check_person(cfg, cfg.model[0])
        line = (
            f"idia check --name {person['name']!r} ({what}, {iid}): {r['verdict']}, own name the plurality in "
            f"{int(r['correct_templates'])} of {r['templates']} templates from {r['photos']} photos "
            f"({r['captions']} captions; {r['seconds']} s)"
        )
        out.append(
            {
                "identity_id": iid,
                "truth": what,
                "verdict": r["verdict"],
                "correct_templates": r["correct_templates"],
                "line": line,
            }
        )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline config (YAML/JSON), e.g. pipelines/demo.yaml or pipelines/laion400m.yaml")
    p.add_argument("--out", help="run folder; overrides the config's `out`")
    from pipelines.presets import PRESETS

    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a preset's stage keys (the config's own keys and --set win): study = the study's "
        "LAION-400M settings (paper matching, whole photos, fp32, its k list, 20 draws, tau 1, >= 30 images, its "
        "fake names); overrides the config's `preset`",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config key, value read as YAML (repeatable): --set attack.draws=5, "
        "--set world.config.seed=1, --set attack.k=[1,5,10]",
    )
    p.add_argument("--dry-run", action="store_true", help="print every stage's resolved config as JSON, run nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="start every stage over instead of resuming (also over folders made with other settings)",
    )
    p.add_argument("--redact", action="store_true", help="report.html with identity ids instead of names (to share it)")
    p.add_argument(
        "--seeds",
        help="comma-separated seeds (world + model + attack each), e.g. 0,1,2: every group's rate "
        "as mean ± std over seeds; overrides the config's `seeds`",
    )


def main(args: argparse.Namespace) -> int:
    cfg = load_pipeline(args.config, args.set, args.preset)
    if args.out:
        cfg = dataclasses.replace(cfg, out=args.out)
    if args.seeds:
        try:
            cfg = dataclasses.replace(cfg, seeds=[int(x) for x in args.seeds.split(",") if x.strip()])
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated whole numbers") from None
    if args.dry_run:
        if cfg.seeds:
            resolved = {f"seed-{s}": plan_pipeline(seed_config(cfg, s), args.force).resolved() for s in cfg.seeds}
        else:
            resolved = plan_pipeline(cfg, args.force).resolved()
        resolved["pipeline"] = {k: getattr(cfg, k) for k in ("preset", "headline_k", "compare_published", "seeds")}
        print(json.dumps(resolved, indent=2, sort_keys=True, default=str))
        return 0
    summary = run_pipeline(cfg, args.force, args.redact)
    print("\n" + summary["text"])
    return 0
