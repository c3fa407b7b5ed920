"""Where each attack worker runs: its device and its torch threads, from what every worker reports about itself.

Pure logic over the workers' own answers (jobs/dask_cluster.py asks them: host, cores, task slots, the GPUs they
see and CUDA_VISIBLE_DEVICES), so every layout can be tested without GPUs:

- **Workers that see different device lists on one host** (dask-cuda's `LocalCUDACluster` / `dask cuda worker`
  rotate CUDA_VISIBLE_DEVICES per worker: "0,1", "1,0"; Slurm's `--gres` gives each job its own): each worker's own
  GPU is the first it sees, so it uses `cuda:0`.
- **Workers that see the same devices** (`dask worker --nworkers N` on a multi-GPU node, several LocalCluster
  processes): the host's workers are ranked by address and worker r takes visible device r mod n, so n workers on n
  GPUs use each once.
- **torch threads**: the CPUs the worker may use (its affinity, which Slurm, cgroups and taskset set) shared by the
  task slots of every worker on the host with the same CPUs; an explicit `torch_threads` wins.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerInfo:
    """What one worker says about itself."""

    address: str
    host: str
    cpus: tuple[int, ...]  # the CPUs this worker's process may run on (os.sched_getaffinity)
    nthreads: int  # the worker's task slots
    cuda_devices: int  # GPUs torch sees in that process
    visible: str | None = None  # its CUDA_VISIBLE_DEVICES, if set


@dataclass(frozen=True)
class Placement:
    device: str  # what the worker passes to torch ("cpu", "cuda:0", ...)
    physical: str | None  # the GPU as the host names it (its CUDA_VISIBLE_DEVICES entry or index); None on CPU
    torch_threads: int


def _visible_list(w: WorkerInfo) -> list[str]:
    if w.visible is None or w.visible.strip() == "":
        return [str(i) for i in range(w.cuda_devices)]
    return [v.strip() for v in w.visible.split(",") if v.strip()][: max(w.cuda_devices, 0)]


def place(workers: list[WorkerInfo], requested: str = "auto", torch_threads: int | None = None) -> dict[str, Placement]:
    """Every worker's placement (by address). `requested`: "auto" (a GPU where the worker sees one, else the CPU),
    "cuda" (a GPU, placed as above), "cpu", or an explicit device ("cuda:1"), which every worker then uses as given."""
    by_host: dict[str, list[WorkerInfo]] = defaultdict(list)
    for w in workers:
        by_host[w.host].append(w)
    out: dict[str, Placement] = {}
    for host_workers in by_host.values():
        host_workers = sorted(host_workers, key=lambda w: w.address)
        sharing: dict[tuple[int, ...], int] = defaultdict(int)  # task slots per CPU set
        for w in host_workers:
            sharing[w.cpus] += max(1, w.nthreads)
        rotated = len({tuple(_visible_list(w)) for w in host_workers}) > 1  # each worker got its own device order
        for rank, w in enumerate(host_workers):
            threads = torch_threads or max(1, len(w.cpus) // sharing[w.cpus])
            visible = _visible_list(w)
            if requested not in ("auto", "cuda") or not visible:
                device = "cpu" if requested == "auto" else requested
                out[w.address] = Placement(device, None if device == "cpu" else device, threads)
                continue
            index = 0 if rotated else rank % len(visible)
            out[w.address] = Placement(f"cuda:{index}", visible[index], threads)
    return out
