"""The one Dask cluster factory: a LocalCluster sized for this machine, an existing scheduler, or GPU workers."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

from distributed import Client, LocalCluster


def cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install means: run on CPU
        return 0


def worker_device(requested: str = "auto") -> str:
    """The device a task on this worker uses: with several GPUs and no dask-cuda, worker i takes GPU i mod n."""
    if requested != "auto":
        return requested
    n = cuda_count()
    if n == 0:
        return "cpu"
    if n == 1:  # one GPU, or dask-cuda gave this worker one via CUDA_VISIBLE_DEVICES
        return "cuda:0"
    try:
        from distributed import get_worker

        name = get_worker().name
        return f"cuda:{int(name) % n}" if str(name).isdigit() else "cuda:0"
    except ValueError:  # not inside a worker (client-side call)
        return "cuda:0"


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to join: an explicit address or scheduler file; else $DASK_SCHEDULER_ADDRESS; else Dask's own
    `scheduler-address` setting (dask config files, DASK_SCHEDULER_ADDRESS as Dask reads it); None: start a local
    cluster."""
    import os

    if scheduler:
        return scheduler
    if os.environ.get("DASK_SCHEDULER_ADDRESS"):
        return os.environ["DASK_SCHEDULER_ADDRESS"]
    import dask

    return dask.config.get("scheduler-address", None) or None


@contextmanager
def dask_client(
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
    dashboard: bool = False,
) -> Iterator[Client]:
    """Yield a connected Client: to `scheduler` (tcp://host:port or a scheduler JSON file) if given, else a local
    cluster: one worker process per GPU (dask-cuda's LocalCUDACluster where installed), or on CPU one process per
    ~4 cores (torch parallelises inside a process; more processes only multiply the model in memory)."""
    scheduler = scheduler_address(scheduler)
    if scheduler:
        kw = {"scheduler_file": scheduler} if scheduler.endswith(".json") else {"address": scheduler}
        client = Client(**kw, timeout="60s")
        try:
            yield client
        finally:
            client.close()
        return
    n_gpu = cuda_count()
    common = {
        "threads_per_worker": threads_per_worker,
        "host": "127.0.0.1",
        "silence_logs": logging.WARNING,
        "dashboard_address": ":0" if dashboard else None,
    }
    cluster = None
    if n_gpu:
        try:
            from dask_cuda import LocalCUDACluster

            cluster = LocalCUDACluster(**common)
        except ImportError:
            logging.info("dask-cuda not installed: LocalCluster with one worker per GPU")
    if cluster is None:
        # CPU: one process per ~4 cores (torch parallelises inside a process; more processes multiply the model).
        default = n_gpu or max(1, (os.cpu_count() or 1) // 4)
        cluster = LocalCluster(n_workers=n_workers or default, processes=True, memory_limit=memory_limit, **common)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
