"""Start the fenxiao services as separate OS processes (as they are deployed), wait
until each is ready, and stop them. Used by the demo, the end-to-end tests and the bench."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"referral": 8101, "orders": 8102, "commission": 8103, "payout": 8104, "engagement": 8105,
         "console": 8106}

def free_port() -> int:
    """A port the OS has free on 127.0.0.1 now (for a process this run starts)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: held open together while they are picked, so none repeats."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()

#: the demo's ports are these plus an offset: FENXIAO_DEMO_BASE_PORT=9100 puts referral on 9101
BASE_PORT = 8100


def ports_from_base(base: int) -> dict[str, int]:
    return {name: base + (port - BASE_PORT) for name, port in PORTS.items()}


def memory_of(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes (Linux /proc; the high-water mark is the peak since
    start or the last reset); zeros when it is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss, hwm


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ..., utime at [11], stime
    at [12]); None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    return stat[stat.rindex(")") + 2:].split()


def relay_processes() -> dict[int, list[int]]:
    """Parent pid -> the outbox relay processes (shared.relay_process) it started, from one walk of
    Linux /proc (zombies, exited but not yet reaped, are left out)."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        if fields is None:
            continue
        state, ppid = fields[:2]
        try:
            if state == "Z" or b"shared.relay_process" not in (entry / "cmdline").read_bytes():
                continue
            found.setdefault(int(ppid), []).append(int(entry.name))
        except (OSError, ValueError):
            continue
    return {parent: sorted(pids) for parent, pids in found.items()}


def relay_children(pid: int) -> list[int]:
    """The outbox relay processes that process `pid` started."""
    return relay_processes().get(pid, [])

@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}.main"], cwd=ROOT,
                                     # unbuffered: a service's own log lines reach its file even
                                     # when it is killed
                                     env={**os.environ, **self.env, "PORT": str(self.port), "HOST": "127.0.0.1",
                                          "PYTHONUNBUFFERED": "1"},
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    async def wait_ready(self, timeout: float = 90) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.proc and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.log_path}\n{self.tail()}")
                try:
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"{self.name} not ready after {timeout}s; log: {self.log_path}\n{self.tail()}")
                await asyncio.sleep(0.2)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        """Resident memory of the service process (Linux /proc)."""
        return memory_of(self.proc.pid)[0] if self.proc else 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Cluster:
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    async def start(self) -> "Cluster":
        for s in self.services.values():
            s.start()
        await asyncio.gather(*(s.wait_ready() for s in self.services.values()))
        return self

    def stop(self) -> None:
        for s in self.services.values():
            s.stop()


def cluster(env_by_service: dict[str, dict[str, str]], *, log_dir: Path, ports: dict[str, int] | None = None,
            names: tuple[str, ...] = tuple(PORTS)) -> Cluster:
    ports = {**PORTS, **(ports or {})}
    return Cluster({n: ServiceProcess(n, ports[n], env_by_service.get(n, {}), log_dir / f"{n}.log") for n in names})
