"""CPU seconds per bench phase and per process group, from Linux /proc.

Latency and throughput move 20-50 % from run to run on a shared machine; the CPU a phase's work
costs moves far less, so it is what tells whether a change made the work cheaper. Groups:

- each service process by its bench name, and the outbox relay processes it started as
  `<name>.relay`;
- `postgres`: the postmaster serving the bench's DSN and every process it started (the backends,
  autovacuum, the WAL writer, the checkpointer), found from the bench's own backend's parent;
- `kafka`: the process listening on the bootstrap port;
- `bench`: this process (the load generator, the observers, the ceilings and the in-process replay).

Processes are read every `interval_s` and at each phase boundary; a process that exits between
two reads loses at most that interval's CPU (the bench reads a service right before stopping it).
What existed when the meter started counts from then; a process started later counts whole."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from bench.sampling import Periodic
from simulation.cluster import stat_fields

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a live process (None when it is gone or a zombie)."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def parent_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == ppid:
            out.append(int(entry.name))
    return out


def listener_of(port: int) -> int | None:
    """The pid of the process with a listening TCP socket on `port` (any address)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU since boot (/proc/stat): busy is all but idle and
    I/O wait, so it holds every process and the kernel, and time a hypervisor gave elsewhere."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    v = [int(x) for x in fields]  # user nice system idle iowait irq softirq steal
    return sum(v) - v[3] - v[4], sum(v)


class CpuMeter(Periodic):
    """`groups()` names the pids of each group now; `set_phase` closes a phase's figures."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]], interval_s: float = 1.0) -> None:
        super().__init__(interval_s, "cpu-meter")
        self.groups = groups
        self.phase = "startup"
        self.by_phase: dict[str, dict[str, float]] = {}
        self.wall_by_phase: dict[str, float] = {}
        self._last: dict[int, float] = {}
        self._acc: dict[str, float] = {}
        self._t0 = time.perf_counter()
        #: share of the whole machine's CPU time that was busy in each phase (0-1, all cores)
        self.machine_busy_by_phase: dict[str, float] = {}
        self._ticks0 = machine_ticks()
        for pids in groups().values():  # what runs already counts from now
            for pid in pids:
                c = cpu_seconds(pid)
                if c is not None:
                    self._last[pid] = c

    def sample(self) -> None:
        for group, pids in self.groups().items():
            for pid in pids:
                c = cpu_seconds(pid)
                if c is None:
                    continue
                delta = c - self._last.get(pid, 0.0)
                self._last[pid] = c
                if delta > 0:
                    self._acc[group] = self._acc.get(group, 0.0) + delta

    def set_phase(self, name: str) -> None:
        self.sample()
        now = time.perf_counter()
        self.by_phase[self.phase] = {g: round(s, 2) for g, s in sorted(self._acc.items())}
        self.wall_by_phase[self.phase] = round(now - self._t0, 2)
        ticks = machine_ticks()
        busy, total = ticks[0] - self._ticks0[0], ticks[1] - self._ticks0[1]
        self.machine_busy_by_phase[self.phase] = round(busy / total, 3) if total > 0 else 0.0
        self._acc, self._t0, self.phase, self._ticks0 = {}, now, name, ticks

    async def stop(self) -> None:
        await super().stop()
        self.set_phase("-")

    def per_order_us(self, phase: str, orders: int) -> dict[str, float]:
        """Microseconds of CPU per order of `phase`, by group."""
        return {g: round(s / orders * 1e6, 1) for g, s in self.by_phase.get(phase, {}).items()} if orders else {}

    def as_dict(self) -> dict:
        return {"cpu_s_by_phase": self.by_phase, "wall_s_by_phase": self.wall_by_phase,
                "machine_busy_by_phase": self.machine_busy_by_phase,
                "how": "utime+stime from /proc per process group, read every second and at phase boundaries; "
                       "machine busy: /proc/stat, all cores, everything but idle and I/O wait"}
