"""The settlement scheduler (a ServiceSpec background task).

Due rows are written by the projection from OrderCompleted (due_at = completed_at + freeze
days). This task takes due rows in bounded batches, and in ONE transaction marks the accruals
settled, deletes the due rows and records CommissionSettled in the outbox. The balance moves
when that event comes back through the projection, like every money event, so the audit replay
(which never runs this task) reproduces it from the log. Survives restarts: the schedule is a
table. Wakes on NOTIFY from the projection's commit, on the next due time, or every poll."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Callable

import asyncpg
import structlog

from services.commission.domain.accrual import settlement_amount
from services.commission.store import settlement as store
from shared.contracts.commission import CommissionSettled
from shared.events import derive_event_id, new_event
from shared.outbox import record_events
from shared.topics import COMMISSION_EVENTS

log = structlog.get_logger(__name__)


async def settle_due(conn: asyncpg.Connection, now: datetime, limit: int = 1000) -> int:
    """Settle what is due at `now` (one batch, in the caller's transaction). Returns how many."""
    rows = await store.take_due(conn, now, limit)
    if not rows:
        return 0
    envs = []
    for r in rows:
        amount = settlement_amount(r["amount_fen"], r["reversed_fen"])
        env = new_event(CommissionSettled(accrual_id=r["accrual_id"], order_id=r["order_id"],
                                          beneficiary_id=r["beneficiary_id"], amount_fen=amount, settled_at=now),
                        event_id=derive_event_id(r["cause_event_id"], r["accrual_id"], "settled"), occurred_at=now)
        envs.append(env.model_copy(update={"causation_id": r["cause_event_id"]}))
    await store.mark_settled(conn, [r["accrual_id"] for r in rows],
                             [settlement_amount(r["amount_fen"], r["reversed_fen"]) for r in rows], now)
    await record_events(conn, COMMISSION_EVENTS, envs)
    return len(rows)


async def run_scheduler(pool: asyncpg.Pool, relay, clock: Callable[[], datetime], *, channel: str,
                        poll_s: float = 1.0, batch: int = 1000) -> None:
    wake = asyncio.Event()
    listener = await pool.acquire()
    try:
        def on_notify(*_: object) -> None:
            wake.set()

        await listener.add_listener(channel, on_notify)
        while True:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    n = await settle_due(conn, clock(), batch)
                if n:
                    log.info("settled", count=n)
                    relay.kick()
                    continue
                async with pool.acquire() as conn:
                    nxt = await store.next_due_at(conn)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("settlement_failed")
                await asyncio.sleep(poll_s)
                continue
            timeout = poll_s
            if nxt is not None:
                timeout = min(poll_s, max((nxt - clock()) / timedelta(seconds=1), 0.0))
            try:
                await asyncio.wait_for(wake.wait(), timeout=max(timeout, 0.01))
            except asyncio.TimeoutError:
                pass
            wake.clear()
    finally:
        try:
            await listener.remove_listener(channel, on_notify)
        except Exception:
            pass
        await pool.release(listener)
