"""The attack stage's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from idia.attack.candidates import FAKE_NAMES
from idia.attack.decision import DEFAULT_KS
from idia.attack.models import PRECISIONS
from idia.core.config import ConfigError, StageConfig, from_dict, option, storage_option


@dataclass
class SlurmSettings:
    """Worker jobs for `--cluster slurm` (dask-jobqueue's SLURMCluster): each job runs `processes` Dask workers."""

    jobs: int = option(1, help="worker jobs to submit")
    queue: str | None = option(None, help="partition (sbatch -p)")
    account: str | None = option(None, help="account to charge (sbatch -A)")
    walltime: str = option("04:00:00", help="time limit per job (sbatch -t)")
    cores: int = option(4, help="CPU cores per job")
    memory: str = option("16GB", help="memory per job")
    processes: int = option(1, help="Dask worker processes per job (one per GPU on GPU nodes)")
    gpus: int = option(0, help="GPUs per job (#SBATCH --gres=gpu:N)")
    python: str | None = option(
        None, help="the compute nodes' Python with idia installed (default: this one, for a shared install)"
    )
    prologue: list[str] = option(
        default_factory=list, help="shell lines run before the worker starts (module load ..., source venv/bin/...)"
    )
    job_extra: list[str] = option(default_factory=list, help="more #SBATCH options, e.g. ['--qos=high']")
    scheduler_host: str | None = option(
        None, help="address the worker jobs reach the client's scheduler at (default: dask-jobqueue's choice)"
    )
    log_directory: str | None = option(None, help="folder for the jobs' output files (default: the current one)")
    local_directory: str | None = option(None, help="workers' scratch folder on the compute node")
    wait_s: float = option(600.0, help="seconds to wait for the first worker (jobs may queue)")


@dataclass
class AttackConfig(StageConfig):
    STAGE = "attack"

    images: str = option(
        "", required=True, help="download output folder (index.parquet + shards/) or a folder root/<identity_id>/*.jpg"
    )
    identities: str = option(
        "", required=True, help="names file (CSV/text), identities parquet, or a mine output folder"
    )
    model: str = option(
        "", required=True, help="open_clip model: built-in architecture (ViT-B-32), hf-hub:org/repo, or local-dir:/path"
    )
    out: str = option("", required=True, help="output folder")
    pretrained: str | None = option(
        None,
        help="for a built-in architecture: a pretrained tag or a checkpoint file "
        "(none: random weights seeded by --init-seed)",
    )
    k: list[int] = option(
        default_factory=lambda: list(DEFAULT_KS),
        help="comma-separated images per attack (capped at what an identity has, see --k-policy)",
    )
    draws: int = option(20, help="random draws of k images per identity")
    tau: int = option(1, help="member if correct templates >= tau")
    num_candidates: int = option(1000, help="candidate names incl. the true ones; padded with seeded fake names")
    candidates: str | None = option(None, help="explicit candidate list, one name a line (replaces generated fakes)")
    fake_names: str = option(
        "census",
        choices=FAKE_NAMES,
        help="how fakes are drawn: census (1990-census first names x 2010 surnames, split by the identities' sexes) "
        "or study (the study's draw: SSA baby first names 1880-2008 x 2010 surnames, (N - identities) / 2 per sex, "
        "pandas-style sample with --seed; the study used seed 42)",
    )
    templates: str | None = option(
        None, help="prompt templates file, one a line with {} for the name (default: the study's 21)"
    )
    seed: int = option(0, help="seed for fake names and draws")
    init_seed: int = option(
        0, help="seed of random weights when the model has none, so every worker builds the same model"
    )
    k_policy: str = option(
        "cap",
        choices=("cap", "skip"),
        help="k larger than the images available: attack with what exists (cap) or skip that k",
    )
    min_images: int = option(1, help="skip identities with fewer readable images than this")
    group_size: int = option(32, help="identities per unit of work")
    scheduler: str | None = option(
        None,
        execution=True,
        help="existing Dask scheduler (tcp://host:port or scheduler JSON file); default $DASK_SCHEDULER_ADDRESS or "
        "Dask's scheduler-address setting, else a LocalCluster on this machine",
    )
    cluster: str = option(
        "local",
        execution=True,
        choices=("local", "slurm"),
        help="without --scheduler: local = a LocalCluster on this machine (one worker per GPU via dask-cuda where "
        "installed); slurm = worker jobs submitted with sbatch (dask-jobqueue; settings in --slurm)",
    )
    slurm: dict = option(
        default_factory=dict,
        execution=True,
        help="--cluster slurm settings as YAML/JSON: {jobs, queue, account, walltime, cores, memory, processes, gpus, "
        "python, prologue, job_extra, scheduler_host, log_directory, local_directory, wait_s}",
    )
    n_workers: int | None = option(
        None, execution=True, help="local cluster worker processes (default: one per GPU, or cores/4)"
    )
    batch_size: int = option(64, execution=True, help="images per forward pass")
    device: str = option(
        "auto",
        execution=True,
        help="auto (a GPU where a worker sees one: one worker per GPU, placed by idia.attack.placement; else the "
        "CPU), cuda (the same, GPUs required), cpu, or cuda:N (every worker uses that device)",
    )
    precision: str = option(
        "auto", choices=PRECISIONS, help="inference precision (auto: fp32 on CPU, bf16/fp16 autocast on CUDA)"
    )
    cache_dir: str | None = option(
        None, execution=True, help="text-embedding cache folder (default ~/.cache/idia/text_embeddings)"
    )
    weights_dir: str | None = option(
        None,
        execution=True,
        help="where a --pretrained tag's weights are fetched once, by this process, before any worker starts (a "
        "folder every worker can read: a shared filesystem on a cluster; compute nodes then need no network); "
        "default ~/.cache/idia/weights",
    )
    torch_threads: int | None = option(
        None,
        execution=True,
        help="torch threads per task (default: the worker's CPUs shared by the task slots on them)",
    )
    decode_threads: int = option(2, execution=True, help="image decoding threads per worker (without processes)")
    decode_processes: int | None = option(
        None,
        execution=True,
        help="image decoding processes per worker (a torch DataLoader; 0 = threads); default 0 on the CPU, where the "
        "encoder is the bottleneck, and min(8, CPUs - 1) on a GPU",
    )
    storage_options: dict = storage_option("images and outputs", "workers")

    def slurm_settings(self) -> SlurmSettings:
        return from_dict(SlurmSettings, self.slurm or {}, "attack.slurm")

    def check(self) -> None:
        settings = self.slurm_settings()
        if self.cluster == "slurm" and min(settings.jobs, settings.cores, settings.processes) < 1:
            raise ConfigError("attack.slurm: jobs, cores and processes must be >= 1")
        if not self.k or any(k < 1 for k in self.k):
            raise ConfigError(f"attack: k must be positive integers, got {self.k}")
        for name in ("draws", "tau", "min_images", "group_size", "batch_size", "num_candidates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"attack: {name} must be >= 1, got {getattr(self, name)}")
