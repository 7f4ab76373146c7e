"""The request dependencies every service's routes share, beside the identity ones
(`shared.identity`: `CurrentIdentity`, `StaffIdentity`, ...): the running service, its settings,
the pool or a pooled connection, and the service clock. One `Depends` style for all services:
typed `Annotated` aliases. Each service's `api/deps.py` names its settings type once
(`SettingsDep = settings_dependency(PayoutSettings)`) and adds only its own rules."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, AsyncIterator, Callable, TypeVar

import asyncpg
from fastapi import Depends, Request

from shared.db import read_only_snapshot
from shared.service import Runtime

S = TypeVar("S")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def get_runtime(request: Request) -> Runtime:
    """The running service (`shared.service.Runtime`), built by its composition root."""
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_pool(rt: RuntimeDep) -> asyncpg.Pool:
    return rt.pool


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]


async def get_conn(rt: RuntimeDep) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the service's pool for the request (returned after the response)."""
    async with rt.pool.acquire() as conn:
        yield conn


ConnDep = Annotated[asyncpg.Connection, Depends(get_conn)]


async def get_snapshot_conn(rt: RuntimeDep) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection inside one read-only repeatable-read transaction for the request: every
    statement of an answer sees the same committed state (a balance and today's usage, a page and
    its total agree while writers commit), and a read route cannot write."""
    async with rt.pool.acquire() as conn, read_only_snapshot(conn):
        yield conn


#: for routes that only read (GET): one snapshot per answer
SnapshotConnDep = Annotated[asyncpg.Connection, Depends(get_snapshot_conn)]


async def get_clock(rt: RuntimeDep) -> Clock:
    """The service clock (`runtime.extras["clock"]`, injected by tests), else the system's."""
    return rt.extras.get("clock", utcnow)


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_now(clock: ClockDep) -> datetime:
    return clock()


NowDep = Annotated[datetime, Depends(get_now)]


def settings_dependency(settings_type: type[S]) -> Any:
    """`Annotated[settings_type, Depends(...)]`: the running service's settings, typed as its own."""

    async def get_settings(rt: RuntimeDep) -> S:
        return rt.settings  # type: ignore[return-value]

    return Annotated[settings_type, Depends(get_settings)]
