"""Run statistics: counters that merge across workers, and a check that the counts add up."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping


class Stats(Counter):
    """A Counter of named events (`rows_read`, `failed_timeout`, ...) that merges by addition."""

    def update_reason(self, prefix: str, reason: str, n: int = 1) -> None:
        self[f"{prefix}_{reason}"] += n

    @classmethod
    def merge(cls, parts: Iterable[Mapping[str, int]]) -> "Stats":
        out = cls()
        for p in parts:
            out.update(p)
        return out

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in sorted(self.items())}


class AccountingError(AssertionError):
    """Counts that must add up do not: something was lost or counted twice."""


def check_sum(total: int, parts: Mapping[str, int], what: str) -> None:
    """Raise AccountingError unless sum(parts) == total, naming every term."""
    s = sum(parts.values())
    if s != total:
        terms = " + ".join(f"{k}={v}" for k, v in parts.items())
        raise AccountingError(f"{what}: {terms} = {s}, expected {total}")
