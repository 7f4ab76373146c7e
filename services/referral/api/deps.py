"""Request-scoped dependencies: the shared ones (shared.deps: the runtime, the service clock)
with referral's settings, and one transaction helper that writes a use case's events to the
outbox with its state change."""
from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
from prometheus_client import Counter

from services.referral.settings import ReferralSettings
from shared.deps import NowDep, RuntimeDep, get_now, get_runtime, settings_dependency  # noqa: F401
from shared.db import read_only_snapshot
from shared.events import Envelope
from shared.outbox import record_events
from shared.service import Runtime
from shared.topics import REFERRAL_EVENTS

T = TypeVar("T")
DEADLOCK_RETRIES = Counter("fenxiao_referral_deadlock_retries_total",
                           "Use cases run again after PostgreSQL broke a deadlock (binds that would close a cycle)")
SettingsDep = settings_dependency(ReferralSettings)


#: attempts of a use case that PostgreSQL chose as a deadlock's victim
DEADLOCK_ATTEMPTS = 3


async def in_transaction(rt: Runtime, work: Callable[[asyncpg.Connection], Awaitable[tuple[T, list[Envelope]]]]) -> T:
    """Run `work` in one transaction; the events it returns go to the outbox in that same
    transaction and the relay is woken after the commit.

    A deadlock's victim is run again from the start (its transaction was rolled back whole):
    binds wait for each other's node locks, and binds that would together close a cycle can wait
    for each other in a ring (`store.bindings`); run again, the survivor's binding is visible and
    the cycle is refused."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            async with rt.pool.acquire() as conn, conn.transaction():
                result, events = await work(conn)
                await record_events(conn, REFERRAL_EVENTS, events)
            break
        except asyncpg.DeadlockDetectedError:
            if attempt == DEADLOCK_ATTEMPTS:
                raise
            DEADLOCK_RETRIES.inc()
    if events:
        rt.relay.kick()
    return result


async def read(rt: Runtime, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """`work`'s statements in one read-only snapshot: a page and its total, a promoter and their
    user, agree with each other even when binds commit meanwhile (and a read cannot write)."""
    async with rt.pool.acquire() as conn, read_only_snapshot(conn):
        return await work(conn)
