"""The engine contract's helpers: guided chunks of tasks (what the Spark executor packs into a partition)."""

from __future__ import annotations

import math

import pytest

from idia.core.tasks import guided_chunks


def test_guided_chunks_example():
    assert guided_chunks(40, 2) == [10, 8, 6, 4, 3, 3, 2, 1, 1, 1, 1]


@pytest.mark.parametrize("slots", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 17, 40, 413, 10_000])
def test_guided_chunks_cover_every_task_in_shrinking_chunks(n, slots):
    sizes = guided_chunks(n, slots)
    assert sum(sizes) == n and all(s >= 1 for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    left = n
    for s in sizes:  # each chunk at most its share of what is left, so the last ones balance the slots
        assert s == max(1, math.ceil(left / (2 * slots)))
        left -= s
    if n:
        assert sizes[-1] == 1
    if n <= 2 * slots:
        assert sizes == [1] * n
    assert len(sizes) < max(n, 1) or n <= 2 * slots  # fewer scheduled tasks than tasks once there are many
