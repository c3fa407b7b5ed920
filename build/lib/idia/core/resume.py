"""The one resume policy, for every stage's output folder.

A folder is pinned to the settings that made it (`_settings.json`, written with the first finished unit of work).
Rerunning with the same settings skips every unit whose done-marker (`_done/<unit>.json`) is there; a run whose
settings differ stops with a ConfigError naming each changed key, unless `force` starts the folder over. Markers
carry the settings fingerprint, so a marker from other settings never counts. Markers are written last, after the
unit's outputs, atomically: a killed run leaves no marker for half-written work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from idia.core import lock, storage
from idia.core.atomic import write_json
from idia.core.config import defaults_of, read_setting
from idia.core.errors import ConfigError
from schemas import files

STAGE_UNIT = "stage"  # the marker of a whole finished stage


def fingerprint(settings: Any) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_marker(folder: str | Path, unit: str, fp: str | None = None) -> dict | None:
    """The info of unit's done-marker in `folder`, or None (absent, unreadable, or made with another fingerprint)."""
    path = storage.location(folder) / f"{unit}.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):  # absent (FileNotFoundError is an OSError, also on object stores) or unreadable
        return None
    if fp is not None and info.get("fingerprint") != fp:
        return None
    return info


def write_marker(folder: str | Path, unit: str, fp: str, info: dict | None = None) -> None:
    write_json({**(info or {}), "fingerprint": fp}, storage.location(folder) / f"{unit}.json")


def _as_saved(v: Any) -> Any:
    """`v` as it reads back from a JSON file."""
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def _describe(v: Any) -> str:
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class StageFolder:
    """An output folder under the resume policy. `check()` first; then `done(unit)` / `mark_done(unit, info)`."""

    def __init__(self, out: str | Path, stage: str, settings: dict, force: bool = False, config: type | None = None):
        self.out = storage.location(out)
        self.stage = stage
        self.settings = _as_saved(settings)
        self.fingerprint = fingerprint(self.settings)
        # `config`, the stage's config class, lets a folder made by an older version resume: a setting added since
        # was made with its default, and a saved value that today's config reads as the same value is the same
        # setting; such a folder resumes under its own saved settings instead of being refused.
        self.config = config
        self.defaults = _as_saved(defaults_of(config)) if config is not None else {}
        self.force = force
        self.done_dir = self.out / files.DONE_DIR
        self._pinned = False

    @property
    def settings_path(self) -> Path:
        return self.out / files.SETTINGS_JSON

    def saved_settings(self) -> dict | None:
        try:
            return json.loads(self.settings_path.read_text())["settings"]
        except (OSError, ValueError, KeyError):
            return None

    def _newer_defaults(self, saved: dict) -> set[str]:
        """Settings the saved folder predates, kept at their defaults here."""
        return {k for k, v in self.settings.items() if k not in saved and k in self.defaults and v == self.defaults[k]}

    def changed_keys(self) -> dict[str, tuple[Any, Any]]:
        saved = self.saved_settings()
        if saved is None:
            return {}
        keys = sorted((set(saved) | set(self.settings)) - self._newer_defaults(saved))
        return {k: (saved.get(k), self.settings.get(k)) for k in keys if not self._same(k, saved, self.settings)}

    def _same(self, key: str, saved: dict, new: dict) -> bool:
        if saved.get(key) == new.get(key):
            return True
        if self.config is None or key not in saved or key not in new:
            return False
        return read_setting(self.config, key, saved[key]) == new[key]

    def check(self) -> None:
        """Take the folder's lock (idia.core.lock: one writer per folder); then stop if the folder holds this stage's
        work made with other settings (giving the lock back), or, with force, clear it."""
        lock.acquire(self.out)
        if self.force:
            self.clear()
            return
        changed = self.changed_keys()
        if changed:
            self.release()
            what = "; ".join(
                f"{k}: {_describe(a)} -> {_describe(b)}" for k, a, b in ((k, *v) for k, v in changed.items())
            )
            raise ConfigError(
                f"{self.out}: holds {self.stage} results made with other settings ({what}); rerun with "
                f"the same settings to resume, use --force to start over, or choose another output folder"
            )
        saved = self.saved_settings()
        self._pinned = saved is not None
        if saved is not None and saved != self.settings:  # only settings older versions wrote otherwise (see config)
            self.settings = saved
            self.fingerprint = fingerprint(saved)

    def clear(self) -> None:
        storage.rmtree(self.done_dir)
        if self.settings_path.exists():
            self.settings_path.unlink()
        self._pinned = False

    def pin(self) -> None:
        """Record the settings (done with the first finished unit, so a run that failed on bad input pins nothing)."""
        if not self._pinned:
            write_json(
                {"stage": self.stage, "fingerprint": self.fingerprint, "settings": self.settings}, self.settings_path
            )
            self._pinned = True

    def done(self, unit: str = STAGE_UNIT) -> dict | None:
        return read_marker(self.done_dir, unit, self.fingerprint)

    def mark_done(self, unit: str = STAGE_UNIT, info: dict | None = None) -> None:
        self.pin()
        write_marker(self.done_dir, unit, self.fingerprint, info)
        if unit == STAGE_UNIT:
            self.release()

    def release(self) -> None:
        """Give the folder's lock back (also done when the stage is marked done, or the process exits)."""
        lock.release(self.out)

    def forget(self, prefix: str) -> None:
        """Drop the markers of units whose name starts with `prefix` (their outputs are about to be rewritten)."""
        for p in self.done_dir.glob(f"{prefix}*.json"):
            p.unlink(missing_ok=True)
