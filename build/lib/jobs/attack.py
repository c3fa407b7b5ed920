"""Dask adapter of the attack stage: runs idia.attack's text and group tasks on a Dask cluster.

Before any task, every worker is asked what it runs (`check_workers`: idia and its dependencies at the client's
versions, or a clear error naming the worker) and where it is (its CPUs, the GPUs it sees); `idia.attack.placement`
gives each worker its device and torch threads from that. The shared context is scattered to every worker once;
each worker builds the model once (idia.attack.models.cached_model), never pickled from the client.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager, nullcontext

from idia.attack.config import AttackConfig
from idia.attack.placement import Placement, place
from idia.attack.stage import run_attack as _run_attack
from idia.core.tasks import flatten
from jobs.dask_cluster import check_workers, dask_client, scheduler_address


def _late_joiner(requested: str) -> Placement:
    """A worker that joined after the placement: its first visible GPU (or the CPU), its CPUs for torch."""
    from distributed import get_worker

    from idia.attack.models import local_device

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    device = local_device(requested)
    return Placement(device, None, max(1, cpus // max(1, get_worker().state.nthreads)))


def _on_worker(fn, ctx, task, placements: dict[str, Placement]):
    from distributed import get_worker

    p = placements.get(get_worker().address) or _late_joiner(ctx.model.device)
    model = dataclasses.replace(ctx.model, device=p.device, torch_threads=ctx.model.torch_threads or p.torch_threads)
    return fn(dataclasses.replace(ctx, model=model), task)


class DaskExecutor:
    """idia.core.tasks.TaskExecutor on a Dask client; results in task order, a progress bar on a terminal."""

    def __init__(self, client, placements: dict[str, Placement], progress: bool = True):
        self.client = client
        self.placements = placements
        self.progress = progress
        self.parallelism = max(1, len(placements))
        self.name = str(client.scheduler.address) if client.scheduler else "dask"

    def map(self, fn, context, tasks, desc: str) -> list:
        from distributed import as_completed

        from idia.core.progress import progress

        ctx_f = self.client.scatter(context, broadcast=True, hash=False)
        futures = [self.client.submit(_on_worker, fn, ctx_f, t, self.placements, pure=False) for t in tasks]
        results = {}
        with progress(len(futures), desc, "task", enabled=self.progress) as bar:
            for fut in as_completed(futures):
                results[fut.key] = fut.result()
                bar.update(1)
        return flatten([results[f.key] for f in futures])


@contextmanager
def dask_executor(cfg: AttackConfig, client=None, progress: bool = True):
    """A DaskExecutor on `client`, or on one made from cfg.scheduler (else a LocalCluster) and closed here; every
    worker checked and placed first."""
    slurm = cfg.slurm_settings()
    own = client is None
    made = dask_client(cfg.scheduler, cfg.n_workers, cluster=cfg.cluster, slurm=slurm) if own else nullcontext(client)
    with made as cl:
        on_slurm = own and cfg.cluster == "slurm" and not scheduler_address(cfg.scheduler)
        expect = slurm.jobs * slurm.processes if on_slurm else 1
        workers = check_workers(cl, timeout_s=slurm.wait_s if on_slurm else 120.0, expect=expect)
        placements = place(workers, cfg.device, cfg.torch_threads)
        yield DaskExecutor(cl, placements, progress)


def run_attack(cfg: AttackConfig, client=None, progress: bool = True) -> dict:
    """The attack stage on Dask (an existing client, or a cluster made from the config); returns its stats."""
    return _run_attack(cfg, lambda: dask_executor(cfg, client, progress))
