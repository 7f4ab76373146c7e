"""Peak resident memory of the service processes, sampled from /proc in a background task (per
service, overall and per bench phase)."""
from __future__ import annotations

import asyncio
from typing import Any


class RssSampler:
    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.processes: dict[str, Any] = {}  # name -> simulation.cluster.ServiceProcess
        self.phase = "startup"
        self.peak: dict[str, int] = {}
        self.by_phase: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task | None = None

    def watch(self, name: str, process: Any) -> None:
        self.processes[name] = process

    def sample(self) -> None:
        for name, p in list(self.processes.items()):
            rss = p.rss_bytes()
            if not rss:
                continue
            self.peak[name] = max(self.peak.get(name, 0), rss)
            ph = self.by_phase.setdefault(self.phase, {})
            ph[name] = max(ph.get(name, 0), rss)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rss-sampler")

    async def stop(self) -> None:
        self.sample()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def as_dict(self) -> dict:
        mib = lambda b: round(b / (1 << 20), 1)  # noqa: E731
        return {"peak_rss_mib": {n: mib(b) for n, b in self.peak.items()},
                "by_phase_mib": {ph: {n: mib(b) for n, b in d.items()} for ph, d in self.by_phase.items()}}
