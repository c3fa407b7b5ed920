"""The `idia` command: one subcommand per stage plus `run` for a whole pipeline.

Each subcommand lives in its own module, which provides `add_arguments(parser)` and `main(args) -> int`.
Modules are imported only when their subcommand runs, so `idia --help` stays fast and Spark, Dask and
torch load only where needed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help). The module's docstring is the subcommand's long description.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample-laion": ("idia.sample_laion", "write LAION-400M-schema parquet shards with known name counts (test data)"),
    "mine": ("jobs.mine", "Spark job: scan caption shards for names -> counts, manifests, identity lists"),
    "compare-lists": ("idia.compare_lists", "set a regenerated occurrence table beside the study's published one"),
    "download": ("jobs.download", "img2dataset: manifests or a FaceScrub-layout query list -> webdataset shards"),
    "attack": ("jobs.attack", "Dask job: run the identity inference attack with an open_clip model"),
    "evaluate": ("jobs.evaluate", "join attack results with mined ground truth -> metrics per k, plots"),
    "world": ("idia.world.cli", "generate the synthetic world (identities, images, caption shards, query list)"),
    "train": ("idia.train", "train the tiny CLIP on a synthetic world's caption shards"),
    "run": ("pipelines.run", "run a whole pipeline from a config: mine -> download -> attack -> evaluate"),
}


def _environment() -> None:
    # albumentations (pulled in by img2dataset) calls the network on import unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    # Spark's Python workers must use this interpreter (the project's venv), not whatever is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idia",
        description="Audit CLIP models for identity leakage: does the model know who is in its training data?",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, short) in COMMANDS.items():
        p = sub.add_parser(name, help=short, description=short, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    _environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help") and argv[0] not in COMMANDS:
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module_name, short = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(
        prog=f"idia {name}",
        description=(module.__doc__ or short).strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    from idia.errors import USER_ERRORS

    try:
        return int(module.main(args) or 0)
    except USER_ERRORS as exc:
        print(f"idia {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"idia {name}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
