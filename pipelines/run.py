"""`idia run CONFIG`: run a whole pipeline (world -> train -> mine -> download -> attack -> evaluate -> report).

The config names each stage's options with the same keys as that stage's own config (see `idia <stage> --help`);
the runner only wires the stages' folders together. Every stage resumes on its own, so a rerun of the same
config skips what is complete and a killed run continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from idia.atomic import write_json
from idia.config import ConfigError, from_dict, load_file, to_dict


@dataclass
class WorldSection:
    """The embedded synthetic world and the tiny CLIP trained on it (the demo's stand-in for LAION + OpenCLIP)."""

    preset: str = "demo"  # idia.world.generate.PRESETS
    config: dict = field(default_factory=dict)  # WorldConfig keys over the preset
    train_preset: str = "demo"  # idia.train.PRESETS
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


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Relative paths in the config are relative to where the command runs, like every other CLI path."""
    return from_dict(PipelineConfig, load_file(path), str(path))


def _stage_cfg(cls, section: dict, wired: dict, name: str):
    clash = sorted(set(section) & set(wired))
    if clash:
        raise ConfigError(f"pipeline {name}: {', '.join(clash)} are set by the pipeline itself; remove them")
    cfg = from_dict(cls, {**section, **wired}, f"pipeline.{name}")
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


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


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run every stage in order; all stage configs are built and validated before anything runs."""
    from jobs.attack import AttackConfig, run_attack
    from jobs.download import DownloadConfig, run_download
    from jobs.evaluate import EvaluateConfig, run_evaluate
    from jobs.mine import MineConfig, run_mine

    out = Path(cfg.out)
    mine_dir = out / "mine"
    mine_wired: dict = {"out": str(mine_dir)}
    download_wired: dict = {"out": str(out / "download")}
    attack_wired: dict = {"out": str(out / "attack"), "images": str(out / "download"), "ground_truth": str(mine_dir)}
    if "identities" not in cfg.attack:
        attack_wired["identities"] = str(mine_dir)
    evaluate_wired: dict = {"out": str(out / "evaluate"), "attack": str(out / "attack"), "ground_truth": str(mine_dir)}

    world = None
    if cfg.world:
        from idia.train import PRESETS as TRAIN_PRESETS, TrainConfig
        from idia.world.generate import PRESETS as WORLD_PRESETS, WorldConfig

        w = cfg.world
        if w.preset not in WORLD_PRESETS or w.train_preset not in TRAIN_PRESETS:
            raise ConfigError(f"pipeline.world: unknown preset; world presets {sorted(WORLD_PRESETS)}, "
                              f"train presets {sorted(TRAIN_PRESETS)}")
        wcfg = from_dict(WorldConfig, {**to_dict(WORLD_PRESETS[w.preset]), **w.config}, "pipeline.world.config")
        wcfg.validate()
        tcfg = from_dict(TrainConfig, {**to_dict(TRAIN_PRESETS[w.train_preset]), **w.train}, "pipeline.world.train")
        tcfg.validate()
        world_dir, model_dir = out / "world", out / "model"
        world = (w, wcfg, tcfg, world_dir, model_dir)
        identities = str(world_dir / "identities.csv")
        mine_wired |= {"shards": [str(world_dir / "laion" / "*.parquet")], "names": identities}
        # The study queried with external photos, never training images: the world's query list. Only the demo's
        # own loopback server is allowed; every other private address stays refused.
        download_wired |= {"queries": str(world_dir / "queries.tsv"), "identities": identities,
                           "allowed_networks": [f"{w.host}/32"]}
        attack_wired |= {"model": f"local-dir:{model_dir}", "identities": identities}

    mcfg = _stage_cfg(MineConfig, cfg.mine, mine_wired, "mine")
    dcfg = _stage_cfg(DownloadConfig, cfg.download, download_wired, "download")
    acfg = _stage_cfg(AttackConfig, cfg.attack, attack_wired, "attack")
    ecfg = _stage_cfg(EvaluateConfig, cfg.evaluate, evaluate_wired, "evaluate")

    names = (["world", "train"] if world else []) + ["mine"] + (["compare-lists"] if cfg.compare_published else [])
    stages = _Stages(names + ["download", "attack", "evaluate", "report"])
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    write_json(to_dict(cfg), out / "pipeline_config.json")

    server = None
    if world:
        from idia.loopback_server import LoopbackServer
        from idia.train import train_tiny_clip
        from idia.world.generate import generate_world

        w, wcfg, tcfg, world_dir, model_dir = world
        stages.run("world", generate_world, wcfg, world_dir, f"http://{w.host}:{w.port}")
        stages.run("train", train_tiny_clip, tcfg, world_dir, model_dir)
        server = LoopbackServer(world_dir, host=w.host, port=w.port)

    stages.run("mine", run_mine, mcfg)
    if cfg.compare_published:
        from idia.compare_lists import compare_to_published

        stages.run("compare-lists", compare_to_published, mine_dir, out / "compare")
    if server is not None:
        with server:
            stages.run("download", run_download, dcfg)
    else:
        stages.run("download", run_download, dcfg)
    stages.run("attack", run_attack, acfg)
    stages.run("evaluate", run_evaluate, ecfg)

    from pipelines.report import write_report

    summary = stages.run("report", write_report, out, world[3] if world else None, cfg.headline_k,
                         stages.summaries, stages.times)
    summary["wall_s"] = round(time.time() - t0, 1)
    summary["stage_seconds"] = {k: round(v, 1) for k, v in stages.times.items()}
    summary["stages"] = {k: v for k, v in stages.summaries.items() if k != "report"}
    write_json(summary, out / "summary.json")
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline config (YAML/JSON), e.g. pipelines/demo.yaml or pipelines/laion400m.yaml")
    p.add_argument("--out", help="run folder; overrides the config's `out`")


def main(args: argparse.Namespace) -> int:
    cfg = load_pipeline(args.config)
    if args.out:
        cfg = dataclasses.replace(cfg, out=args.out)
    summary = run_pipeline(cfg)
    print("\n" + summary["text"])
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__)
    add_arguments(ap)
    raise SystemExit(main(ap.parse_args()))
