"""Dependencies the routes share: the runtime, a connection, the clock."""
from __future__ import annotations

from typing import Annotated, AsyncIterator

import asyncpg
from fastapi import Depends, Request

from services.orders.clock import Clock
from services.orders.settings import OrdersSettings
from shared.service import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_conn(rt: RuntimeDep) -> AsyncIterator[asyncpg.Connection]:
    async with rt.pool.acquire() as conn:
        yield conn


ConnDep = Annotated[asyncpg.Connection, Depends(get_conn)]


async def get_clock(rt: RuntimeDep) -> Clock:
    return rt.extras["clock"]


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_settings(rt: RuntimeDep) -> OrdersSettings:
    return rt.settings  # type: ignore[return-value]


SettingsDep = Annotated[OrdersSettings, Depends(get_settings)]


def payer_openid(request: Request, who) -> str | None:
    """The buyer's openid from the gateway identity (shared.identity's signed `openid` claim)."""
    value = getattr(who, "openid", None)
    return value if isinstance(value, str) and value else None
