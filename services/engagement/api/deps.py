"""Dependencies of the engagement routes: the runtime, a connection, settings, the clock,
and the one rule of access: a promoter reads only their own data (operators anyone's)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, AsyncIterator

import asyncpg
from fastapi import Depends, Request

from services.engagement.domain.errors import ForbiddenError
from services.engagement.settings import EngagementSettings
from shared.identity import Identity
from shared.service import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(rt: RuntimeDep) -> EngagementSettings:
    return rt.settings  # type: ignore[return-value]


SettingsDep = Annotated[EngagementSettings, Depends(get_settings)]


async def get_conn(rt: RuntimeDep) -> AsyncIterator[asyncpg.Connection]:
    async with rt.pool.acquire() as conn:
        yield conn


ConnDep = Annotated[asyncpg.Connection, Depends(get_conn)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def may_read(identity: Identity, promoter_id: str) -> None:
    """A promoter reads their own data; an operator anyone's."""
    if identity.user_id != promoter_id and not identity.is_staff:
        raise ForbiddenError("a promoter reads only their own data")
