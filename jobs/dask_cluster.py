"""The one Dask cluster factory: a LocalCluster sized for this machine, an existing scheduler, or GPU workers."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from distributed import Client, LocalCluster


def _not_a_cancelled_callback(record: logging.LogRecord) -> bool:
    """Drop tornado's "Exception in callback" for the two callbacks a Ctrl-C or SIGTERM leaves behind as the client
    unwinds (the command itself says it was interrupted); any other callback error still prints:

    - a task cancelled as the cluster closes (the event loop still had callbacks queued);
    - distributed's ``sync()`` cancelling a call it had not started yet: its ``cancel`` callback reads a ``future`` that
      is only declared, never bound, so it raises NameError (distributed 2026.8.0; reproduced in
      tests/attack/test_dask_interrupt.py)."""
    import asyncio

    if not record.exc_info or record.exc_info[0] is None:
        return True
    kind, _, tb = record.exc_info
    if issubclass(kind, asyncio.CancelledError):
        return False
    if issubclass(kind, NameError) and tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        return not (code.co_name == "cancel" and Path(code.co_filename).match("distributed/utils.py"))
    return True


logging.getLogger("tornado.application").addFilter(_not_a_cancelled_callback)


def cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install means: run on CPU
        return 0


def check_workers(client, timeout_s: float = 120.0, expect: int = 1) -> list:
    """Ask every worker what it runs (jobs/probe.py, shipped by value so a worker without idia still answers) and stop
    with a UserError naming each worker that lacks a module, runs other versions than the client (idia, torch,
    open_clip, numpy, pyarrow) or other idia sources; else every worker's WorkerInfo for placement."""
    import cloudpickle

    import jobs.probe as probe
    from idia.attack.placement import WorkerInfo
    from idia.core.errors import UserError

    try:
        client.wait_for_workers(expect, timeout=timeout_s)
    except TimeoutError:
        joined = len(client.scheduler_info(n_workers=-1)["workers"])
        if not joined:
            raise UserError(
                f"dask: no worker joined the scheduler {client.scheduler.address} within {timeout_s:.0f} s (start "
                "workers with `dask worker ADDRESS`, or check the queue of the jobs that start them: squeue)"
            ) from None
        logging.warning("dask: %d of %d workers joined within %.0f s; starting with them", joined, expect, timeout_s)
    cloudpickle.register_pickle_by_value(probe)
    try:
        answers = client.run(probe.probe_worker, probe.ATTACK_MODULES)
    finally:
        cloudpickle.unregister_pickle_by_value(probe)
    mine = {m: probe.module_version(m) for m in probe.ATTACK_PINNED}
    source = probe.source_digest()
    nthreads = client.nthreads()
    problems, infos = [], []
    for address, r in sorted(answers.items()):
        where = f"worker {address} on {r['host']} ({r['python']}, Python {r['version']})"
        for m, v in r["modules"].items():
            if v.startswith("ERROR"):
                problems.append(f"{where}: cannot import {m}: {v[6:]}")
            elif m in mine and v != mine[m]:
                problems.append(f"{where}: {m} {v}, but the client has {mine[m]}")
        if not r["modules"]["idia"].startswith("ERROR") and r["source"] != source:
            problems.append(
                f"{where}: runs other idia sources than the client (digest {r['source']}, the client's {source}): "
                "the same version with other code"
            )
        infos.append(
            WorkerInfo(
                address,
                r["host"],
                tuple(r["cpus"]),
                int(nthreads.get(address, 1)),
                int(r["cuda_devices"]),
                r["cuda_visible_devices"],
            )
        )
    if problems:
        raise UserError(
            f"dask: {len(problems)} problem(s) with the workers of {client.scheduler.address}: "
            + "; ".join(problems)
            + ". Every worker needs idia and the client's versions of its dependencies (the same container image, "
            "or `pip install idia-audit==<the client's version>` in the workers' environment)"
        )
    return infos


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


def slurm_cluster(settings):
    """dask-jobqueue's SLURMCluster from idia.attack.config.SlurmSettings, its jobs submitted (sbatch)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        from idia.core.errors import UserError

        raise UserError("--cluster slurm needs dask-jobqueue: pip install 'idia-audit[slurm]'") from None
    import sys

    extra = list(settings.job_extra) + ([f"--gres=gpu:{settings.gpus}"] if settings.gpus else [])
    cluster = SLURMCluster(
        queue=settings.queue,
        account=settings.account,
        walltime=settings.walltime,
        cores=settings.cores,
        processes=settings.processes,
        memory=settings.memory,
        python=settings.python or sys.executable,
        job_script_prologue=list(settings.prologue),
        job_extra_directives=extra,
        log_directory=settings.log_directory,
        local_directory=settings.local_directory,
        scheduler_options={
            "dashboard_address": None,
            **({"host": settings.scheduler_host} if settings.scheduler_host else {}),
        },
    )
    cluster.scale(jobs=settings.jobs)
    return cluster


@contextmanager
def _sigint_ignored():
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextmanager
def dask_client(
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
    dashboard: bool = False,
    cluster: str = "local",
    slurm=None,
) -> Iterator[Client]:
    """Yield a connected Client: to `scheduler` (tcp://host:port or a scheduler JSON file) if given; else with
    cluster="slurm" to worker jobs submitted through Slurm (`slurm`: SlurmSettings), cancelled at the end; else a
    local cluster: one worker process per GPU (dask-cuda's LocalCUDACluster where installed), or on CPU one process
    per ~4 cores (torch parallelises inside a process; more processes only multiply the model in memory)."""
    scheduler = scheduler_address(scheduler)
    if not scheduler and cluster == "slurm":
        jobs = slurm_cluster(slurm)
        try:
            with Client(jobs) as client:
                yield client
        finally:
            jobs.close()  # scancel of every worker job
        return
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
    import dask

    # Worker processes that may start processes of their own (the attack's image-decoding DataLoader), started with
    # SIGINT ignored (an ignored signal stays ignored in a child): Ctrl-C reaches the whole process group, and the
    # client, not each worker printing its own traceback, closes the cluster.
    with dask.config.set({"distributed.worker.daemon": False}), _sigint_ignored():
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
