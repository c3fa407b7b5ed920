"""Command-line options generated from a config dataclass: one flag per field, help and defaults from the field.

Every flag defaults to "not given" (argparse.SUPPRESS), so a `--config FILE` value is overridden only by options
actually typed. Booleans: `--flag` sets a False default to true, `--no-flag` sets a True default to false. Lists of
numbers are comma-separated (`--k 1,3,5`), lists of strings take several values, mappings take KEY=VALUE repeatedly.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from idia.core.config import ConfigError, from_dict, load_file, parse_assignment


def _base(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _default_text(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        value = f.default
    if value is None or value in ("", [], {}):
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """One option per field of the config dataclass `cls` (fields with cli=False are file/pipeline only)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} options (also keys of --config FILE)")
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        help_text = (meta.get("help") or f.name.replace("_", " ")).replace("%", "%%")
        if meta.get("required"):
            help_text += " (required)"
        tp = hints[f.name]
        base = _base(tp)
        origin = typing.get_origin(base)
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if base is bool:
            if f.default is True:
                group.add_argument(
                    "--no-" + f.name.replace("_", "-"), action="store_false", **kw, help=f"turn off: {help_text}"
                )
            else:
                group.add_argument(flag_name(f), action="store_true", **kw, help=help_text)
            continue
        if origin is list:
            inner = typing.get_args(base)[0]
            if inner in (int, float):
                kw["type"] = str  # "1,3,5": parsed by the config loader, which names the key on error
            else:
                kw["nargs"] = "+"
                kw["action"] = "extend"  # --model a b and --model a --model b both give [a, b]
        elif origin is dict or base is dict:
            kw["action"] = "append"
        elif base in (int, float, str):
            kw["type"] = base
        if meta.get("choices"):
            kw["choices"] = list(meta["choices"])
        default = "" if meta.get("required") else f" (default: {_default_text(f)})"
        group.add_argument(flag_name(f), **kw, help=help_text + default)


def config_from_args(cls: type, args: argparse.Namespace, where: str, base: dict | None = None):
    """The config from `base` (a preset), then `--config FILE`, then the options given; validated."""
    data = dict(base or {})
    if getattr(args, "config", None):
        data.update(load_file(args.config))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        base_tp = _base(hints[f.name])
        if base_tp is dict or typing.get_origin(base_tp) is dict:  # KEY=VALUE items over the file's mapping
            merged = dict(data.get(f.name) or {})
            for item in value:
                k, v = parse_assignment(item, flag_name(f))
                merged[k] = v
            value = merged
        data[f.name] = value
    cfg = from_dict(cls, data, where)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


__all__ = ["add_config_options", "config_from_args", "ConfigError"]
