"""The sweeper: time passing is what happens here. Cancels unpaid orders after
ORDERS_UNPAID_TIMEOUT_MINUTES and completes paid ones ORDERS_AUTO_COMPLETE_DAYS after
payment, reading due rows through the `orders_due` index, a batch per transaction."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from services.orders import commands
from shared.service import Runtime

log = structlog.get_logger(__name__)


async def sweep_once(rt: Runtime) -> int:
    """Move every order due now; returns how many moved. With WeChat calls configured, an
    unpaid order is closed at WeChat and queried before it is cancelled
    (`PayFollower.close_then_settle`): a payment that raced the close makes it paid."""
    clock, settings = rt.extras["clock"], rt.settings
    follower = rt.extras.get("pay")
    total = 0
    while True:
        now = clock()
        lease = now + timedelta(seconds=settings.wechatpay_lease_s) if follower is not None else None  # type: ignore[attr-defined]
        async with rt.pool.acquire() as conn, conn.transaction():
            swept = await commands.sweep_due(conn, now=now, limit=settings.sweep_batch,  # type: ignore[attr-defined]
                                             close_lease_until=lease)
        total += swept.moved
        if swept.moved:
            rt.relay.kick()
        if swept.to_close:
            await follower.close_due(swept.to_close)
            total += len(swept.to_close)
        if swept.taken < settings.sweep_batch:  # type: ignore[attr-defined]
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
