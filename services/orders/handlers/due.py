"""The sweeper: time passing is what happens here. Cancels unpaid orders after
ORDERS_UNPAID_TIMEOUT_MINUTES and completes paid ones ORDERS_AUTO_COMPLETE_DAYS after
payment, reading due rows through the `orders_due` index, a batch per transaction."""
from __future__ import annotations

import asyncio

import structlog

from services.orders import commands
from shared.service import Runtime

log = structlog.get_logger(__name__)


async def sweep_once(rt: Runtime) -> int:
    """Move every order due now; returns how many moved."""
    clock, settings = rt.extras["clock"], rt.settings
    total = 0
    while True:
        async with rt.pool.acquire() as conn, conn.transaction():
            moved = await commands.sweep_due(conn, now=clock(), limit=settings.sweep_batch)  # type: ignore[attr-defined]
        total += moved
        if moved:
            rt.relay.kick()
        if moved < settings.sweep_batch:  # type: ignore[attr-defined]
            return total


async def sweeper(rt: Runtime) -> None:
    interval = rt.settings.sweep_interval_s  # type: ignore[attr-defined]
    while True:
        try:
            moved = await sweep_once(rt)
            if moved:
                log.info("orders_swept", moved=moved)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep_failed")
        await asyncio.sleep(interval)
