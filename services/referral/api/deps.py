"""Request-scoped dependencies: the runtime, the service clock, and one transaction helper
that writes a use case's events to the outbox with its state change."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Awaitable, Callable, TypeVar

import asyncpg
from fastapi import Depends, Request

from services.referral.settings import ReferralSettings
from shared.events import Envelope
from shared.outbox import record_events
from shared.service import Runtime
from shared.topics import REFERRAL_EVENTS

T = TypeVar("T")


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_now(request: Request) -> datetime:
    return request.app.state.runtime.extras["clock"]()


async def get_settings(request: Request) -> ReferralSettings:
    return request.app.state.runtime.settings  # type: ignore[return-value]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
NowDep = Annotated[datetime, Depends(get_now)]
SettingsDep = Annotated[ReferralSettings, Depends(get_settings)]


async def in_transaction(rt: Runtime, work: Callable[[asyncpg.Connection], Awaitable[tuple[T, list[Envelope]]]]) -> T:
    """Run `work` in one transaction; the events it returns go to the outbox in that same
    transaction and the relay is woken after the commit."""
    async with rt.pool.acquire() as conn, conn.transaction():
        result, events = await work(conn)
        await record_events(conn, REFERRAL_EVENTS, events)
    if events:
        rt.relay.kick()
    return result


async def read(rt: Runtime, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    async with rt.pool.acquire() as conn:
        return await work(conn)
