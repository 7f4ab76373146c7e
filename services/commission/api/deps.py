"""FastAPI dependencies: the pool and the clock from the running service (shared.deps)."""
from __future__ import annotations

from shared.deps import ClockDep, PoolDep, SnapshotConnDep, get_clock, get_pool  # noqa: F401
