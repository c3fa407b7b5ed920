"""A real single-node Slurm for tests: Debian's slurm-wlm (slurmctld + slurmd) and munge, started on 127.0.0.1 in a
folder of the test's own (config, state, spool, logs, munge key and socket), stopped by PID.

`make slurm` installs the packages (`apt-get install slurm-wlm munge`); where they are missing the fixture skips
with that reason. The daemons run as the current user (root in CI: munged then needs --force). Clients (sbatch,
squeue, scancel, and dask-jobqueue through them) find this cluster through SLURM_CONF, which the fixture sets for the
test process and its children.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmTestCluster:
    def __init__(self, folder: Path, cpus: int = 2, memory_mb: int = 6000):
        self.folder = Path(folder)
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.conf = self.folder / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        self.node = socket.gethostname().split(".")[0]

    def _write_conf(self) -> None:
        f = self.folder
        for sub in ("state", "spool", "log", "munge"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(f / "munge", 0o700)
        user = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=idiatest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    f"SlurmUser={user}",
                    f"SlurmdUser={user}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={f / 'munge' / 'munge.sock'}",
                    f"StateSaveLocation={f / 'state'}",
                    f"SlurmdSpoolDir={f / 'spool'}",
                    f"SlurmctldPidFile={f / 'slurmctld.pid'}",
                    f"SlurmdPidFile={f / 'slurmd.pid'}",
                    f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "SchedulerType=sched/builtin",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
                    "",
                ]
            )
        )

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.folder / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "SLURM_CONF": str(self.conf)}
        )

    def start(self, timeout: float = 60.0) -> SlurmTestCluster:
        self._write_conf()
        m = self.folder / "munge"
        key = m / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                *(["--force"] if os.getuid() == 0 else []),
                f"--socket={m / 'munge.sock'}",
                f"--key-file={key}",
                f"--pid-file={m / 'munged.pid'}",
                f"--log-file={m / 'munged.log'}",
                f"--seed-file={m / 'seed'}",
            ],
        )
        self._wait(lambda: (m / "munge.sock").exists(), "munged", timeout)
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._wait(
            lambda: self._ok(["scontrol", "ping"]) and "UP" in self._out(["scontrol", "ping"]), "slurmctld", timeout
        )
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        self._wait(lambda: "idle" in self._out(["sinfo", "-h", "-o", "%t"]), "slurmd (node idle)", timeout)
        return self

    def env(self) -> dict:
        return {"SLURM_CONF": str(self.conf)}

    def _out(self, args: list[str]) -> str:
        r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **self.env()}, timeout=30)
        return r.stdout

    def _ok(self, args: list[str]) -> bool:
        r = subprocess.run(args, capture_output=True, env={**os.environ, **self.env()}, timeout=30)
        return r.returncode == 0

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    logs = "\n".join(
                        x.read_text()[-1500:] for x in sorted((self.folder / "log").glob("*")) if x.is_file()
                    )
                    raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {what}:\n{logs}")
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{what} not ready within {timeout:.0f} s; logs in {self.folder / 'log'}")

    def jobs(self) -> list[str]:
        """The ids of the jobs Slurm knows (pending, running or just finished)."""
        return self._out(["squeue", "-h", "-o", "%i"]).split()

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing): `make slurm` installs slurm-wlm")
    pytest.importorskip("dask_jobqueue")
    cluster = SlurmTestCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, TimeoutError, OSError) as exc:  # installed but cannot run here (no root for munged, ...)
        cluster.stop()
        pytest.skip(f"Slurm is installed but its daemons do not start here: {str(exc)[:500]}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)  # sbatch / squeue / scancel, as dask-jobqueue calls them
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.stop()
