"""The executors' import check, run before a Spark job's first real task: stdlib only, so it runs on any Python.

`probe_modules` is what each probe task runs; `check_executors` (driver side, in jobs/spark_session.py) compares the
answers with the driver's own versions and names what is missing where.
"""

from __future__ import annotations

#: What the mining scan and merge import on an executor (the project's own packages come in the shipped zip).
SCAN_MODULES = ("numpy", "pyarrow", "ahocorasick_rs", "rapidfuzz", "fsspec", "upath", "idia", "schemas", "jobs")
#: Modules whose version must equal the driver's (the staged files and the automaton cross processes).
PINNED = ("numpy", "pyarrow", "ahocorasick_rs", "rapidfuzz")


def module_version(name: str) -> str:
    import importlib

    mod = importlib.import_module(name)
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version(name.replace("_", "-"))
        except Exception:
            version = "?"
    return str(version)


def probe_modules(modules: tuple[str, ...]) -> dict:
    """This process's host, Python and, per module, its version or the import error."""
    import platform
    import socket
    import sys

    found = {}
    for name in modules:
        try:
            found[name] = module_version(name)
        except BaseException as exc:  # an import can fail with anything; the answer must come back
            found[name] = f"ERROR {type(exc).__name__}: {exc}"
    return {
        "host": socket.gethostname(),
        "python": sys.executable,
        "version": platform.python_version(),
        "modules": found,
    }
