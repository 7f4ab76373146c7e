"""FastAPI dependencies: the pool and the clock from the running service."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Callable

import asyncpg
from fastapi import Depends, Request


async def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.runtime.pool


async def get_clock(request: Request) -> Callable[[], datetime]:
    return request.app.state.runtime.extras["clock"]


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
ClockDep = Annotated[Callable[[], datetime], Depends(get_clock)]
