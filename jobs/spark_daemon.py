"""Spark's Python worker daemon for local runs (`spark.python.daemon.module`): PySpark's own daemon, with PySpark
imported from the installed package instead of from Spark's zip of it.

Spark puts $SPARK_HOME/python/lib/pyspark.zip (and py4j's zip) first on its Python workers' path. Python keeps no
bytecode cache for modules it imports from a zip, so the daemon and every worker it forks compiled PySpark's sources
again: `import pyspark.daemon, pyspark.worker` took 0.61-0.64 s from the zip and 0.13 s from the installed package
here, on the way to every run's first task (BENCHMARKS.md). Where the zips are the installed pyspark's own (pip's
pyspark, whose package folder is SPARK_HOME), they move to the end of the path, so the same files are imported with
their cached bytecode; a Spark distribution of its own keeps the path Spark gave it. Standard library only before
that, and nothing heavy before the daemon forks its workers (PySpark imports the worker module after the fork).
"""

from __future__ import annotations

import os
import sys


def installed_pyspark_zips(path: list[str]) -> list[str]:
    """The entries of `path` that are zips inside an installed pyspark package (<pkg>/python/lib/*.zip, with
    <pkg>/__init__.py beside them)."""
    found = []
    for entry in path:
        lib = os.path.dirname(entry)
        package = os.path.dirname(os.path.dirname(lib))
        if (
            entry.endswith(".zip")
            and os.path.basename(lib) == "lib"
            and os.path.basename(os.path.dirname(lib)) == "python"
            and os.path.basename(package) == "pyspark"
            and os.path.isfile(os.path.join(package, "__init__.py"))
        ):
            found.append(entry)
    return found


def installed_first(path: list[str]) -> list[str]:
    """`path` with the installed pyspark's own zips moved to its end (the rest in order)."""
    zips = installed_pyspark_zips(path)
    return [p for p in path if p not in zips] + zips


if __name__ == "__main__":
    sys.path[:] = installed_first(sys.path)
    from pyspark import daemon

    daemon.manager()  # reads the worker module from argv, as `python -m pyspark.daemon MODULE` does
