"""The contract between a stage's logic (idia) and an engine (jobs): map a task function over typed tasks.

A stage calls `executor.map(fn, context, tasks, desc)`: `fn(context, task)` is a plain, picklable function of this
package that returns one result row or a list of them; `context` is what every task shares (sent once per worker);
`tasks` are frozen dataclasses. Spark (jobs/mine.py) and Dask (jobs/attack.py) implement it; `SerialExecutor` runs
the same functions in-process, so a test needs no engine.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence


class TaskExecutor(Protocol):
    #: parallel task slots (sizes the work: tasks per core)
    parallelism: int
    #: what runs the tasks, for stats ("local[2]", "spark://host:7077", "serial")
    name: str

    def map(self, fn: Callable[[Any, Any], Any], context: Any, tasks: Sequence[Any], desc: str) -> list:
        """fn(context, task) for every task; the results in task order, lists flattened."""
        ...


def guided_chunks(n: int, slots: int, factor: int = 2) -> list[int]:
    """Sizes of consecutive chunks of `n` tasks for an engine that pays a fixed cost per scheduled task: guided
    self-scheduling, each chunk ceil(remaining / (factor * slots)), so chunks shrink to single tasks at the end and
    the last tasks still balance across the slots. 40 tasks on 2 slots: 10 8 6 4 3 3 2 1 1 1 1 (11 scheduled).
    Chunks are taken in order, so the results keep the tasks' order."""
    sizes = []
    left = n
    while left > 0:
        size = max(1, -(-left // (factor * max(1, slots))))
        sizes.append(size)
        left -= size
    return sizes


def flatten(results: list) -> list:
    out: list = []
    for r in results:
        out.extend(r if isinstance(r, list) else [r])
    return out


class SerialExecutor:
    """Every task in this process, one after another."""

    parallelism = 1
    name = "serial"

    def map(self, fn, context, tasks, desc):
        return flatten([fn(context, t) for t in tasks])
