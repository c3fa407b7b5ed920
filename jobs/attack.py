"""Dask adapter of the attack stage: runs idia.attack's text and group tasks on a Dask cluster.

The shared context is scattered to every worker once; each worker resolves its own device (GPU placement is the
engine's business) and builds the model once (idia.attack.models.cached_model), never pickled from the client.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager, nullcontext

from idia.attack.config import AttackConfig
from idia.attack.stage import run_attack as _run_attack
from idia.core.tasks import flatten
from jobs.dask_cluster import dask_client, worker_device


def _on_worker(fn, ctx, task, torch_threads: int):
    model = dataclasses.replace(
        ctx.model, device=worker_device(ctx.model.device), torch_threads=ctx.model.torch_threads or torch_threads
    )
    return fn(dataclasses.replace(ctx, model=model), task)


class DaskExecutor:
    """idia.core.tasks.TaskExecutor on a Dask client; results in task order, a progress bar on a terminal."""

    def __init__(self, client, progress: bool = True):
        self.client = client
        self.progress = progress
        self.parallelism = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        self.name = str(client.scheduler.address) if client.scheduler else "dask"
        # torch threads per worker when the config leaves it open: this machine's cores shared by its workers
        self.torch_threads = max(1, (os.cpu_count() or 1) // self.parallelism)

    def map(self, fn, context, tasks, desc: str) -> list:
        from distributed import as_completed

        from idia.core.progress import progress

        ctx_f = self.client.scatter(context, broadcast=True, hash=False)
        futures = [self.client.submit(_on_worker, fn, ctx_f, t, self.torch_threads, pure=False) for t in tasks]
        results = {}
        with progress(len(futures), desc, "task", enabled=self.progress) as bar:
            for fut in as_completed(futures):
                results[fut.key] = fut.result()
                bar.update(1)
        return flatten([results[f.key] for f in futures])


@contextmanager
def dask_executor(cfg: AttackConfig, client=None, progress: bool = True):
    """A DaskExecutor on `client`, or on one made from cfg.scheduler (else a LocalCluster) and closed here."""
    with nullcontext(client) if client is not None else dask_client(cfg.scheduler, cfg.n_workers) as cl:
        yield DaskExecutor(cl, progress)


def run_attack(cfg: AttackConfig, client=None, progress: bool = True) -> dict:
    """The attack stage on Dask (an existing client, or a cluster made from the config); returns its stats."""
    return _run_attack(cfg, lambda: dask_executor(cfg, client, progress))
