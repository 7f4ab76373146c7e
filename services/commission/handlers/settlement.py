"""The settlement scheduler (a ServiceSpec background task).

Due rows are written by the projection from OrderCompleted (due_at = completed_at + freeze
days). This task takes due rows in bounded batches and, in ONE transaction, settles them through
the same domain `Ledger` (accrued minus reversed so far; the beneficiary's settled sales and
perhaps their tier), moves the balances by the CommissionSettled events it records in the
outbox, and deletes the due rows. Survives restarts: the schedule is a table. Wakes on NOTIFY
from the projection's commit, at the next due time, or every poll."""
from __future__ import annotations

import asyncio

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Callable

import asyncpg
import structlog

from services.commission.domain.chain import History
from services.commission.domain.ledger import Ledger
from services.commission.domain.plan import Plan
from services.commission.handlers.projection import _Outgoing, plan_book, write_back
from services.commission.handlers import projection as proj
from services.commission.store import settlement as store
from services.commission.store import state
from shared.outbox import record as record_outbox
from shared.projector import Batch

log = structlog.get_logger(__name__)


async def settle_due(conn: asyncpg.Connection, now: datetime, limit: int = 1000,
                     plan_cache: dict[int, Plan] | None = None, tier_epoch: timedelta | None = None) -> int:
    """Settle what is due at `now` (one batch, in the caller's transaction). Returns how many."""
    due = await store.take_due(conn, now, limit)
    if not due:
        return 0
    beneficiaries = {st.beneficiary_id for st, _ in due}
    history = History()
    if tier_epoch is None:
        for r in await state.load_tiers(conn, beneficiaries):
            history.add_tier(r["promoter_id"], r["effective_at"], r["seq"], r["to_tier"])
    by_order: dict[str, list] = {}
    for st, _ in due:
        by_order.setdefault(st.order_id, []).append(st)
    ledger = Ledger(history=history, plans=await plan_book(conn, plan_cache if plan_cache is not None else {}),
                    accruals=by_order, known_orders=set(),
                    records=await state.load_records(conn, beneficiaries) if tier_epoch is None else {},
                    direct_pairs=set(), refunds_seen=set(), tier_epoch=tier_epoch)
    for st, cause_id in due:
        # the cause is the OrderCompleted that scheduled it: settlement ids derive from it
        ledger.settle(st.accrual_id, now, SimpleNamespace(event_id=cause_id, correlation_id=None))
    batch = Batch(events=[])
    out = _Outgoing(batch, now=now)
    accrual_rows = proj.publish(ledger, out)
    await write_back(conn, ledger, accrual_rows, tier_epoch, meanwhile=out.finish)
    await record_outbox(conn, batch.emitted)
    return len(due)


async def run_scheduler(pool: asyncpg.Pool, relay, clock: Callable[[], datetime], *, channel: str,
                        poll_s: float = 1.0, batch: int = 1000, tier_epoch: timedelta | None = None) -> None:
    wake = asyncio.Event()
    plan_cache: dict[int, Plan] = {}

    def on_notify(*_: object) -> None:
        wake.set()

    listener = await pool.acquire()
    try:
        await listener.add_listener(channel, on_notify)
        while True:
            nxt = None
            try:
                async with pool.acquire() as conn, conn.transaction():
                    n = await settle_due(conn, clock(), batch, plan_cache, tier_epoch)
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



