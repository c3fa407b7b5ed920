"""GPU placement and torch threads per worker, for the layouts a cluster hands out (no GPU needed: the workers'
own reports are faked, the rule is what runs)."""

from __future__ import annotations

import pytest

from idia.attack.placement import WorkerInfo, place


def _dask_cuda(n_gpus: int, host: str = "node1") -> list[WorkerInfo]:
    """LocalCUDACluster / `dask cuda worker`: one worker per GPU, CUDA_VISIBLE_DEVICES rotated so its own is first."""
    out = []
    for i in range(n_gpus):
        order = [str((i + j) % n_gpus) for j in range(n_gpus)]
        out.append(WorkerInfo(f"tcp://{host}:{40000 + i}", host, tuple(range(16)), 1, n_gpus, ",".join(order)))
    return out


def _nworkers(n_gpus: int, host: str = "node1", visible: str | None = None) -> list[WorkerInfo]:
    """`dask worker --nworkers N` on a node with N GPUs: every worker sees the same devices."""
    return [WorkerInfo(f"tcp://{host}:{41000 + i}", host, tuple(range(16)), 1, n_gpus, visible) for i in range(n_gpus)]


@pytest.mark.parametrize("n", [1, 2, 8])
@pytest.mark.parametrize("layout", ["dask-cuda", "nworkers", "nworkers-visible-set"])
def test_every_gpu_gets_exactly_one_worker(n, layout):
    if layout == "dask-cuda":
        workers = _dask_cuda(n)
    elif layout == "nworkers":
        workers = _nworkers(n)
    else:  # a scheduler that exported the node's GPUs by id, e.g. Slurm's whole-node allocation
        workers = _nworkers(n, visible=",".join(str(4 + i) for i in range(n)))
    placed = place(workers)
    physical = [p.physical for p in placed.values()]
    assert len(set(physical)) == n, placed  # no two workers on one GPU
    expected = {str(i) for i in range(n)} if layout != "nworkers-visible-set" else {str(4 + i) for i in range(n)}
    assert set(physical) == expected  # none idle
    if layout == "dask-cuda":
        assert {p.device for p in placed.values()} == {"cuda:0"}  # each sees its own GPU first


def test_two_nodes_are_placed_independently():
    workers = _nworkers(2, "a") + _dask_cuda(2, "b")
    placed = place(workers)
    for host in ("a", "b"):
        mine = [p.physical for addr, p in placed.items() if f"//{host}:" in addr]
        assert sorted(mine) == ["0", "1"]


def test_cpu_workers_share_their_cpus_between_task_slots():
    same = [WorkerInfo(f"tcp://h:{i}", "h", tuple(range(8)), 1, 0) for i in range(2)]
    assert {p.torch_threads for p in place(same).values()} == {4}  # two workers on the same 8 CPUs
    assert {p.device for p in place(same).values()} == {"cpu"}
    own = [WorkerInfo(f"tcp://h:{i}", "h", tuple(range(4 * i, 4 * i + 4)), 2, 0) for i in range(2)]
    assert {p.torch_threads for p in place(own).values()} == {2}  # own 4 CPUs each (Slurm), two task slots each
    assert {p.torch_threads for p in place(own, torch_threads=3).values()} == {3}  # explicit wins
    assert {p.torch_threads for p in place([WorkerInfo("tcp://h:1", "h", (0,), 4, 0)]).values()} == {1}


def test_an_explicit_device_is_used_as_given():
    placed = place(_dask_cuda(2), requested="cpu")
    assert {p.device for p in placed.values()} == {"cpu"}
    placed = place(_nworkers(2), requested="cuda:1")
    assert {p.device for p in placed.values()} == {"cuda:1"}
