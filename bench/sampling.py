"""What the bench's samplers share (bench/memory.py, bench/cpu.py): a task that calls `sample()`
every `interval_s` from `start()` until `stop()`."""
from __future__ import annotations

import asyncio


class Periodic:
    def __init__(self, interval_s: float, task_name: str) -> None:
        self.interval_s, self.task_name = interval_s, task_name
        self._task: asyncio.Task | None = None

    def sample(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
