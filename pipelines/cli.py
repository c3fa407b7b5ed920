"""The `idia` command: one subcommand per stage, `run` for a whole pipeline, and the tools around them.

Every stage's options are generated from its config dataclass (pipelines/options.py), so `--help` lists every key
with its default, and `--config FILE` (YAML/JSON with the same keys) works for every stage, options typed on the
command line overriding the file. Modules load only when their subcommand runs, so `idia --help` stays fast and
Spark, Dask and torch load only where needed. Runs as `idia ...`, `python -m pipelines.cli ...`, and
`spark-submit pipelines/cli.py mine ...`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

if __name__ == "__main__" and not __package__:  # spark-submit pipelines/cli.py: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Command:
    help: str
    config: str | None  # "module:ConfigClass": its fields become the options
    run: Callable[[argparse.Namespace], int]
    extra: Callable[[argparse.ArgumentParser], None] | None = None
    doc: str | None = None  # module whose docstring is the long description


def _cfg(args: argparse.Namespace, ref: str, base: dict | None = None):
    from pipelines.options import config_from_args

    cls = _load(ref)
    return config_from_args(cls, args, f"{args.command} config", base)


# ----------------------------------------------------------------------------------------------------- commands
def _sample(args) -> int:
    from idia.mine.sample import generate
    from pipelines import summaries

    cfg = _cfg(args, "idia.mine.sample:SampleConfig")
    summaries.sample(generate(cfg), cfg.out)
    return 0


def _mine(args) -> int:
    from jobs.mine import run_mine
    from pipelines import summaries

    cfg = _cfg(args, "idia.mine.config:MineConfig")
    summaries.mine(run_mine(cfg), cfg.out)
    return 0


def _compare(args) -> int:
    from idia.mine.compare import compare_to_published
    from pipelines import summaries

    cfg = _cfg(args, "idia.mine.compare:CompareConfig")
    summaries.compare(compare_to_published(cfg.regenerated, cfg.out, cfg.published), cfg.out)
    return 0


def _download(args) -> int:
    from jobs.download import run_download
    from pipelines import summaries

    cfg = _cfg(args, "idia.download.config:DownloadConfig")
    summaries.download(run_download(cfg), cfg.out)
    return 0


def _attack(args) -> int:
    from jobs.attack import run_attack
    from pipelines import summaries

    cfg = _cfg(args, "idia.attack.config:AttackConfig")
    summaries.table("attack", run_attack(cfg, progress=not args.quiet), cfg.out)
    return 0


def _evaluate(args) -> int:
    from idia.evaluate.stage import run_evaluate
    from pipelines import summaries

    cfg = _cfg(args, "idia.evaluate.stage:EvaluateConfig")
    summaries.evaluate(run_evaluate(cfg), cfg.out)
    return 0


def _world(args) -> int:
    from idia.core.config import to_dict
    from idia.world.generate import PRESETS, generate_world
    from pipelines import summaries

    cfg = _cfg(args, "idia.world.generate:WorldConfig", base=to_dict(PRESETS[args.preset]))
    summaries.world(generate_world(cfg, args.out, args.base_url, progress=not args.quiet, force=args.force), args.out)
    return 0


def _train(args) -> int:
    from idia.core.config import to_dict
    from idia.world.train import PRESETS, train_tiny_clip
    from pipelines import summaries

    cfg = _cfg(args, "idia.world.train:TrainConfig", base=to_dict(PRESETS[args.preset]))
    summaries.train(train_tiny_clip(cfg, args.world, args.out, progress=not args.quiet, force=args.force), args.out)
    return 0


def _serve(args) -> int:
    from idia.core.atomic import write_text
    from idia.world.server import LoopbackServer

    srv = LoopbackServer(args.root, args.host, args.port)
    if args.port_file:
        write_text(str(srv.port), args.port_file)
    print(f"serving {args.root} on http://{srv.host}:{srv.port}/ (stop with Ctrl-C or by PID)", flush=True)
    srv.serve_forever()
    return 0


def _pack_env(args) -> int:
    from jobs.executor_env import pack_executor_env

    print(f"packing the executors' Python environment into {args.out} ...", flush=True)
    info = pack_executor_env(args.out, tuple(args.extra))
    dists = ", ".join(f"{k} {v}" for k, v in sorted(info["distributions"].items()))
    print(f"pack-env: {info['archive']} ({info['bytes'] / 1e6:.0f} MB): Python {info['python']}; {dists}")
    print(f"  nodes need Python {info['python']} at {info['base_python']} (or use conda-pack; see docs/cluster.md)")
    print(f"  use: idia mine ... --executor-env {info['archive']}")
    return 0


def _pack_env_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="dist/idia-executor-env.tar.gz", help="archive to write (.tar.gz)")
    p.add_argument(
        "--extra",
        nargs="*",
        default=[],
        metavar="MODULE",
        help="more modules the executors import, packed with everything they import in turn (e.g. s3fs or gcsfs "
        "for shards and outputs on object storage)",
    )


def _lookup(args) -> int:
    from idia.core.errors import UserError
    from idia.mine.lookup import closest_names, lookup
    from pipelines import summaries

    hits = lookup(args.mine, args.query, rows=args.rows)
    if not hits:
        near = closest_names(args.mine, args.query)
        raise UserError(
            f"lookup: no identity_id or name like {args.query!r} in {args.mine}"
            + (f"; closest names: {', '.join(near)}" if near else "")
        )
    summaries.lookup(hits, args.query)
    return 0


def _check(args) -> int:
    from idia.attack.check import check_person
    from pipelines import summaries

    cfg = _cfg(args, "idia.attack.check:CheckConfig")
    for model in cfg.model:
        summaries.check(check_person(cfg, model), verbose=not args.brief)
    return 0


def _report(args) -> int:
    from idia.evaluate.html_report import write_html_report
    from idia.evaluate.report import report_settings

    k, tau = report_settings(args.run)
    page = write_html_report(args.run, k, tau, redact=args.redact, path=args.out)
    print(f"report: {page} (k = {k}, tau = {tau}{', names redacted' if args.redact else ''}); open it in any browser")
    return 0


def _run(args) -> int:
    from pipelines.run import main

    return main(args)


# ----------------------------------------------------------------------------------------------------- extra options
def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _world_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="world folder to write (skipped if complete with the same config)")
    p.add_argument(
        "--preset",
        choices=["demo", "reduced"],
        default="demo",
        help="starting configuration: demo (the end-to-end demo's world) or reduced (test-suite size); "
        "--config and options apply over it",
    )
    p.add_argument(
        "--base-url",
        default="http://127.0.0.1:8765",
        help="URL prefix of the image server that will serve the world folder (`idia serve --root OUT`)",
    )
    p.add_argument(
        "--force", action="store_true", help="start the folder over, also when it was made with other settings"
    )
    _quiet(p)


def _train_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", required=True, help="world folder written by `idia world`")
    p.add_argument("--out", required=True, help="model folder to write (open_clip local-dir: format)")
    p.add_argument(
        "--preset",
        choices=["demo", "reduced"],
        default="demo",
        help="starting configuration: demo (the end-to-end demo's) or reduced (test-suite size)",
    )
    p.add_argument("--force", action="store_true", help="retrain, also over a model made with other settings")
    _quiet(p)


def _serve_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="folder to serve")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (loopback only)")
    p.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    p.add_argument("--port-file", help="write the bound port here once listening (atomic)")


def _lookup_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "query",
        help="a name (matched after the project's normalisation: case, accents, punctuation; "
        "aliases too) or an identity_id",
    )
    p.add_argument("--mine", required=True, help="a finished `idia mine` output folder")
    p.add_argument("--rows", type=int, default=5, help="manifest rows (URL, caption) to show per identity")


def _check_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--brief", action="store_true", help="one line per model, without the per-template table")


def _report_extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="an `idia run` folder (mine/, attack/, evaluate/, ...)")
    p.add_argument("--redact", action="store_true", help="identity ids instead of names, for a report that is shared")
    p.add_argument("--out", help="where to write the page (default RUN/report.html)")


def _run_extra(p: argparse.ArgumentParser) -> None:
    from pipelines.run import add_arguments

    add_arguments(p)


COMMANDS: dict[str, Command] = {
    "sample-laion": Command(
        "write LAION-400M-schema parquet shards with known name counts (test data)",
        "idia.mine.sample:SampleConfig",
        _sample,
        doc="idia.mine.sample",
    ),
    "mine": Command(
        "Spark job: scan caption shards for names -> counts, manifests, identity lists",
        "idia.mine.config:MineConfig",
        _mine,
        doc="idia.mine.stage",
    ),
    "compare-lists": Command(
        "set a regenerated occurrence table beside the study's published one",
        "idia.mine.compare:CompareConfig",
        _compare,
        doc="idia.mine.compare",
    ),
    "download": Command(
        "img2dataset: manifests or a FaceScrub-layout query list -> webdataset shards",
        "idia.download.config:DownloadConfig",
        _download,
        doc="idia.download.stage",
    ),
    "attack": Command(
        "Dask job: run the identity inference attack with an open_clip model",
        "idia.attack.config:AttackConfig",
        _attack,
        _quiet,
        doc="idia.attack.stage",
    ),
    "evaluate": Command(
        "join attack results with the ground truth -> metrics per k and tau, membership, plots",
        "idia.evaluate.stage:EvaluateConfig",
        _evaluate,
        doc="idia.evaluate.stage",
    ),
    "pack-env": Command(
        "pack the Python environment Spark executors need (for --executor-env on a cluster)",
        None,
        _pack_env,
        _pack_env_extra,
        doc="jobs.executor_env",
    ),
    "lookup": Command(
        "is this person in the mined dataset, and where? counts, bin, membership, first rows",
        None,
        _lookup,
        _lookup_extra,
        doc="idia.mine.lookup",
    ),
    "check": Command(
        "does a model know this person? the IDIA for one person from their own photos",
        "idia.attack.check:CheckConfig",
        _check,
        _check_extra,
        doc="idia.attack.check",
    ),
    "report": Command(
        "write a run's report.html again (e.g. --redact for a report that is shared)",
        None,
        _report,
        _report_extra,
        doc="idia.evaluate.html_report",
    ),
    "world": Command(
        "generate the synthetic world (identities, images, caption shards, query list)",
        "idia.world.generate:WorldConfig",
        _world,
        _world_extra,
        doc="idia.world.generate",
    ),
    "train": Command(
        "train the tiny CLIP on a synthetic world's caption shards",
        "idia.world.train:TrainConfig",
        _train,
        _train_extra,
        doc="idia.world.train",
    ),
    "serve": Command(
        "serve a folder (a synthetic world) over HTTP on a loopback address",
        None,
        _serve,
        _serve_extra,
        doc="idia.world.server",
    ),
    "run": Command(
        "run a whole pipeline from a config: [world -> train ->] mine -> download -> attack -> evaluate",
        None,
        _run,
        _run_extra,
        doc="pipelines.run",
    ),
}


def _environment() -> None:
    # Outputs hold names and faces: folders 0700, files 0600 unless IDIA_UMASK says otherwise (idia.core.privacy).
    from idia.core.privacy import apply_umask

    apply_umask()
    # albumentations (pulled in by img2dataset) calls the network on import unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    # Spark's Python workers must use this interpreter (the project's venv), not whatever is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("idia-audit")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(name: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser, or with `name` the full parser of one subcommand (imports only that command's config)."""
    if name is None:
        parser = argparse.ArgumentParser(
            prog="idia",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description="Audit CLIP models for identity leakage: does the model know who is in its training data?",
        )
        parser.add_argument("--version", action="version", version=f"idia {_version()}")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for n, c in COMMANDS.items():
            sub.add_parser(n, help=c.help, description=c.help)
        return parser
    c = COMMANDS[name]
    doc = (importlib.import_module(c.doc).__doc__ if c.doc else None) or c.help
    p = argparse.ArgumentParser(
        prog=f"idia {name}", description=doc.strip(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.set_defaults(command=name)
    if c.extra:
        c.extra(p)
    if c.config:
        from pipelines.options import add_config_options

        p.add_argument(
            "--config", help="YAML/JSON file with this command's keys (listed below); options given here override it"
        )
        add_config_options(p, _load(c.config))
    return p


def main(argv: list[str] | None = None) -> int:
    _environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv or ["--help"])  # --help / --version exit here
        return 2
    if argv[0] not in COMMANDS:
        top.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
    name = argv[0]
    args = build_parser(name).parse_args(argv[1:])
    import signal

    from idia.core.errors import USER_ERRORS

    def _terminate(signum, _frame):  # a scheduler's or supervisor's stop: unwind like Ctrl-C (engines closed, locks
        raise Terminated(signum)  # given back, temporary files removed)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(COMMANDS[name].run(args) or 0)
    except USER_ERRORS as exc:
        print(f"idia {name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"idia {name}: error: {_disk_full(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # an engine's error wrapping a full disk (Spark's Py4JJavaError, Dask's remote errors)
        if "No space left on device" not in str(exc):
            raise
        print(f"idia {name}: error: {_disk_full(exc)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        # Stopping now: a second signal must not turn the exit status into death by SIGINT after the message below,
        # nor may CPython's flag for an unhandled Ctrl-C (see _interrupt_handled).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _interrupt_handled()
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(
            f"idia {name}: {what}; finished units are kept, nothing half-written is; rerun the same command to resume",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, Terminated) else 130


def _interrupt_handled() -> None:
    """Tell CPython the KeyboardInterrupt was handled, so the exit status stays 130.

    CPython exits by re-raising SIGINT on itself (status -2 to a parent) when a KeyboardInterrupt went unhandled, and
    tracks that with a process flag that an `eval`/`exec` of a source string sets when the interrupt escapes it, even
    if a caller then handles it: `collections.namedtuple` evals a string, so a Ctrl-C while torch or open_clip is
    being imported can set it (seen in CI: the train stage interrupted during its imports died by SIGINT after the
    'interrupted' message; here 10 of 120 Ctrl-Cs during `import torch, open_clip`). Every string eval clears the
    flag before it runs, so one harmless eval clears it."""
    eval("None")  # noqa: S307 - a constant: its only effect is clearing the flag


def _disk_full(exc: BaseException) -> str:
    where = getattr(exc, "filename", None)
    line = next((ln.strip() for ln in str(exc).splitlines() if "No space left" in ln), str(exc).splitlines()[0])
    return (
        f"No space left on device{f' writing {where}' if where else ''} ({line[:300]}); finished units are kept and "
        "nothing half-written is: free space (or move the output folder), then rerun the same command to resume"
    )


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so the command unwinds as it does on Ctrl-C."""


if __name__ == "__main__":
    sys.exit(main())
