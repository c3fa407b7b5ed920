"""Typed configuration, one pattern for every stage: a dataclass whose fields are declared with `option(...)`.

An option carries its default, its help text and whether it changes outputs (`execution=True` marks settings that
only change how a stage runs: workers, threads, addresses, progress). Configs are built from a dict (a YAML/JSON
file, a pipeline section, command-line overrides) with unknown keys and wrong types rejected, naming the key; every
stage's `validate()` raises `ConfigError`. The command line (`pipelines/cli.py`) is generated from the same fields,
so defaults are written once, here.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from idia.core.errors import ConfigError

T = TypeVar("T")
__all__ = [
    "ConfigError",
    "StageConfig",
    "option",
    "storage_option",
    "from_dict",
    "load_file",
    "to_dict",
    "settings_of",
    "defaults_of",
    "read_setting",
    "parse_assignment",
]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Any = dataclasses.MISSING,
    execution: bool = False,
    choices: tuple | None = None,
    required: bool = False,
    flag: str | None = None,
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field. `required`: must be set (checked by validate, so it may come from a file or the CLI);
    `execution`: does not change outputs (left out of the settings a folder is pinned to); `flag`: the CLI flag when
    it is not --the-field-name; `cli=False`: file/pipeline only."""
    meta = {
        "help": help,
        "execution": execution,
        "choices": choices,
        "required": required,
        "flag": flag,
        "metavar": metavar,
        "cli": cli,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def storage_option(what: str, shipped_to: str | None = None) -> Any:
    """The `storage_options` field every stage has: fsspec options for its files on object storage."""
    shipped = f"; shipped to the {shipped_to}" if shipped_to else ""
    return option(
        default_factory=dict,
        execution=True,
        help=f"fsspec options per protocol, for {what} on object storage, as YAML/JSON: "
        "{s3: {endpoint_url: ..., key: ..., secret: ...}} (also read from FSSPEC_S3_* environment variables)" + shipped,
    )


@dataclasses.dataclass
class StageConfig:
    """Base of every stage's config: `force`, required-key and choice checks, and the settings a folder is pinned to."""

    force: bool = option(
        False,
        help="start over: clear what the output folder holds instead of resuming it (also "
        "when it was made with other settings)",
        execution=True,
    )

    #: The stage's name in messages ("mine", "attack", ...).
    STAGE: typing.ClassVar[str] = "stage"

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("required") and value in (None, "", [], {}):
                raise ConfigError(f"{self.STAGE}: {f.name} is required (--{f.name.replace('_', '-')})")
            choices = f.metadata.get("choices")
            if choices and value is not None and value not in choices:
                raise ConfigError(
                    f"{self.STAGE}: {f.name} must be one of {', '.join(map(str, choices))}, got {value!r}"
                )
        self.check()

    def check(self) -> None:
        """Stage-specific checks; raise ConfigError naming the key."""

    def settings(self) -> dict:
        """The output-changing settings: every field not marked execution (the output folder itself aside)."""
        return {k: v for k, v in settings_of(self).items() if k != "out"}


def read_setting(cls: Any, key: str, value: Any) -> Any:
    """`value` of `cls`'s field `key` as a config file would read it today (a setting widened from one path to a
    list reads "x" as ["x"]); unchanged when the field is unknown or the value does not read."""
    hints = typing.get_type_hints(cls)
    if key not in hints:
        return value
    try:
        return json.loads(json.dumps(_coerce(hints[key], value, key), sort_keys=True, default=str))
    except ConfigError:
        return value


def defaults_of(cls: Any) -> dict:
    """Each output-changing field's default (for folders made before a field existed: see StageFolder)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("execution"):
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def settings_of(cfg: Any) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if not f.metadata.get("execution")}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        last: Exception | None = None
        for a in non_none:
            try:
                return _coerce(a, value, where)
            except ConfigError as exc:
                last = exc
        raise last or ConfigError(f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str) and args and args[0] in (int, float):
            try:
                value = [args[0](v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise ConfigError(f"{where}: expected comma-separated numbers, got {value!r}") from None
        if isinstance(value, str) and args and args[0] is str:
            value = [value]  # one path where a list of paths is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_file(path: str | Path) -> dict:
    """Read a YAML or JSON mapping."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise different types; both mean "cannot parse"
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def parse_assignment(text: str, where: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (`k=[1, 2]`, `flag=true`, `name=x`); for --set and --conf."""
    if "=" not in text:
        raise ConfigError(f"{where} {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value
