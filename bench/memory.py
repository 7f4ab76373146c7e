"""Peak resident memory of the service processes (per service, overall and per bench phase).

The true peak is the kernel's high-water mark (`VmHWM` in /proc/<pid>/status), not the largest
of the samples: a batch's transient peak can come and go between two samples 0.2 s apart (runs
showed VmHWM 10-20 MiB above the sampled peak). At each phase boundary the mark is read and then
reset (`5` written to /proc/<pid>/clear_refs), so each phase gets its own; where it cannot be
reset, the per-phase figure falls back to the samples. Both are reported.

A service that runs its outbox relay in its own process (FENXIAO_OUTBOX_RELAY=process, e.g.
`--service-env FENXIAO_OUTBOX_RELAY=process`) has a second figure, `<name>.relay`: the relay processes it started (a restarted one
continues the same figure)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.sampling import Periodic
from simulation.cluster import memory_of, relay_processes


def _reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssSampler(Periodic):
    def __init__(self, interval_s: float = 0.2) -> None:
        super().__init__(interval_s, "rss-sampler")
        self.processes: dict[str, Any] = {}  # name -> simulation.cluster.ServiceProcess
        self.phase = "startup"
        self.peak: dict[str, int] = {}  # the high-water mark (true peak) where known, else sampled
        self.sampled: dict[str, int] = {}
        self.by_phase: dict[str, dict[str, int]] = {}
        self.sampled_by_phase: dict[str, dict[str, int]] = {}
        #: pids whose mark was reset at the start of the current phase (their VmHWM is this phase's)
        self._fresh: set[int] = set()
        self._seen: set[int] = set()
        #: parent pid -> its relay processes, looked up every `relay_scan_s`
        self._relays: dict[int, list[int]] = {}
        self._relays_at = float("-inf")
        self.relay_scan_s = 1.0

    def watch(self, name: str, process: Any) -> None:
        self.processes[name] = process

    @staticmethod
    def _pid(p: Any) -> int | None:
        proc = getattr(p, "proc", None)
        return getattr(proc, "pid", None) if proc is not None and proc.poll() is None else None

    def _pids(self) -> list[tuple[str, int]]:
        """(figure name, pid) of every live watched process and of the relay processes each started."""
        now = time.monotonic()
        if now - self._relays_at >= self.relay_scan_s:  # a walk of /proc: ~1.5 ms, once a second is plenty
            self._relays, self._relays_at = relay_processes(), now
        relays = self._relays
        out = []
        for name, p in list(self.processes.items()):
            pid = self._pid(p)
            if pid is not None:
                out.append((name, pid))
                out += [(f"{name}.relay", child) for child in relays.get(pid, ())]
        return out

    def sample(self) -> None:
        for name, pid in self._pids():
            rss, hwm = memory_of(pid)
            if not rss:
                continue
            if pid not in self._seen:  # started during this phase: its mark is this phase's
                self._seen.add(pid)
                self._fresh.add(pid)
            self.sampled[name] = max(self.sampled.get(name, 0), rss)
            self.peak[name] = max(self.peak.get(name, 0), rss, hwm)  # VmHWM: since start or the last reset
            sp = self.sampled_by_phase.setdefault(self.phase, {})
            sp[name] = max(sp.get(name, 0), rss)
            ph = self.by_phase.setdefault(self.phase, {})
            # a mark not reset at this phase's start may be an earlier phase's peak
            ph[name] = max(ph.get(name, 0), rss, hwm if pid in self._fresh else 0)

    def set_phase(self, name: str) -> None:
        """Close the current phase (its marks read) and start `name` with fresh marks."""
        self.sample()
        self._fresh = set()
        self._relays_at = float("-inf")
        for _, pid in self._pids():
            if _reset_hwm(pid):
                self._fresh.add(pid)
        self.phase = name

    async def stop(self) -> None:
        await super().stop()
        self.sample()

    def as_dict(self) -> dict:
        mib = lambda b: round(b / (1 << 20), 1)  # noqa: E731
        return {"peak_rss_mib": {n: mib(b) for n, b in self.peak.items()},
                "by_phase_mib": {ph: {n: mib(b) for n, b in d.items()} for ph, d in self.by_phase.items()},
                "how": "VmHWM (the kernel's high-water mark, reset at each phase start) and 0.2 s samples of VmRSS",
                "sampled_peak_rss_mib": {n: mib(b) for n, b in self.sampled.items()},
                "sampled_by_phase_mib": {ph: {n: mib(b) for n, b in d.items()} for ph, d in self.sampled_by_phase.items()}}
