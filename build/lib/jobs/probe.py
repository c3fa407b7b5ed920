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


#: What an attack worker imports (the project's packages included: a Dask worker has no shipped zip).
ATTACK_MODULES = ("idia", "jobs", "schemas", "torch", "open_clip", "numpy", "pyarrow", "PIL", "fsspec")
#: Versions an attack worker must share with the client: the model is built on each worker, and the client merges
#: what the workers wrote.
ATTACK_PINNED = ("idia", "torch", "open_clip", "numpy", "pyarrow")
PROJECT_PACKAGES = ("idia", "jobs", "schemas")


def source_digest(packages: tuple[str, ...] = PROJECT_PACKAGES) -> str | None:
    """sha256 over the project's Python sources as this process imports them (two installs of one version with
    different code differ here); None when a package cannot be found."""
    import hashlib
    import importlib.util
    import os

    h = hashlib.sha256()
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return None
        for root in sorted(spec.submodule_search_locations):
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for f in sorted(files):
                    if f.endswith(".py"):
                        path = os.path.join(folder, f)
                        h.update(f"{name}/{os.path.relpath(path, root)}\n".encode())
                        with open(path, "rb") as fh:
                            h.update(fh.read())
    return h.hexdigest()[:16]


def probe_worker(modules: tuple[str, ...] = ATTACK_MODULES) -> dict:
    """probe_modules plus what placing a worker needs: its CPUs, the GPUs torch sees, CUDA_VISIBLE_DEVICES, and the
    digest of the project's sources it imports."""
    import os

    info = probe_modules(modules)
    info["cpus"] = (
        sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    )
    info["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        info["cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except BaseException:  # no torch (reported by the module check) or a broken CUDA install: no GPUs
        info["cuda_devices"] = 0
    info["source"] = source_digest()
    return info
