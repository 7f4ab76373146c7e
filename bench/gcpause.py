"""The bench's own garbage collector, kept out of the latency it measures.

The bench holds the whole run's workload (every order paid so far, the population, prebuilt
records: millions of objects). Its latency phases make garbage at the event rate (the log
watcher reads every CommissionAccrued), so CPython's full collection came every few seconds
and walked that whole heap: 0.3-0.45 s in which the bench neither sent nor observed anything.
The probes in flight were then seen late, and the orders due meanwhile went out in one burst
(docs/benchmarks.md, "Seventh session"). A bystander process on the same machine saw no stall
at those moments: it was the bench's, not the services'.

`quiet_heap` moves what exists at the start of a phase out of the collector's sight
(`gc.freeze`, as the services do at start: shared/service.py) and records every collection
the phase still runs, so a pause of the bench's own stays visible in the results."""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Any, Iterator


class GcPauses:
    """Collections of this process while recording: how many per generation, and the longest."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.max_ms = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        gen = info.get("generation", 2)
        ms = (time.perf_counter() - self._t0) * 1000
        self.count[gen] += 1
        self.max_ms[gen] = max(self.max_ms[gen], ms)

    def as_dict(self) -> dict[str, Any]:
        return {"collections_by_generation": list(self.count), "max_pause_ms": round(max(self.max_ms), 2),
                "max_pause_ms_by_generation": [round(x, 2) for x in self.max_ms]}


def refreeze() -> None:
    """Inside `quiet_heap`: also freeze what the phase built since (its workload, before its
    clock starts), so the collections it still runs walk only what it makes while timed."""
    gc.collect()
    gc.freeze()


@contextmanager
def quiet_heap() -> Iterator[GcPauses]:
    """Freeze the heap as it is now, record the collections run inside, unfreeze after."""
    gc.collect()
    gc.freeze()
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(pauses)
        gc.unfreeze()
