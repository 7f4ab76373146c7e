"""Dependencies of the payout routes: the runtime, its pool and settings."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, AsyncIterator

import asyncpg
from fastapi import Depends, Request

from services.payout.settings import PayoutSettings
from shared.service import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(rt: RuntimeDep) -> PayoutSettings:
    return rt.settings  # type: ignore[return-value]


SettingsDep = Annotated[PayoutSettings, Depends(get_settings)]


async def get_conn(rt: RuntimeDep) -> AsyncIterator[asyncpg.Connection]:
    async with rt.pool.acquire() as conn:
        yield conn


ConnDep = Annotated[asyncpg.Connection, Depends(get_conn)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def kick(rt: Runtime) -> None:
    """After a commit that wrote events or approved a withdrawal: publish and follow now."""
    rt.relay.kick()
    follower = rt.extras.get("follower")
    if follower is not None:
        follower.kick()
