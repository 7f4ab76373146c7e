"""The settlement schedule: due rows indexed by due_at, taken a bounded batch at a time."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from services.commission.domain.ledger import AccrualState


#: Both scheduler statements are driven by `settlement_due`'s (due_at, accrual_id) index, with
#: each accrual looked up by its key, whatever the statistics: a plan cached while the tables were
#: empty (a fresh schema, a new deployment catching up) must not turn into a scan of every accrual
#: ever made on every poll. A plain join let the planner do exactly that (343 ms per poll at 300,000
#: accruals, with nothing due); the lateral subquery (OFFSET 0 keeps it from being flattened into a
#: join) and the scalar subquery leave it no other plan. tests/integration/commission/test_settlement_plans.py
TAKE_DUE = """
    SELECT d.accrual_id, d.cause_event_id, a.order_id, a.line_id, a.level, a.beneficiary_id, a.base_fen,
           a.amount_fen, a.reversed_fen, a.line_refunded_fen, a.freeze_days
    FROM settlement_due d CROSS JOIN LATERAL (
        SELECT a.order_id, a.line_id, a.level, a.beneficiary_id, a.base_fen, a.amount_fen, a.reversed_fen,
               a.line_refunded_fen, a.freeze_days
        FROM accruals a WHERE a.accrual_id = d.accrual_id AND a.settled_at IS NULL OFFSET 0) a
    WHERE d.due_at <= $1
    ORDER BY d.due_at, d.accrual_id
    LIMIT $2
    FOR UPDATE OF d, a SKIP LOCKED"""
#: the earliest due time of an accrual not settled yet (a due row outlives its settlement only if
#: something broke; the scheduler must then not wake for it forever)
NEXT_DUE = """
    SELECT d.due_at FROM settlement_due d
    WHERE (SELECT a.settled_at IS NULL FROM accruals a WHERE a.accrual_id = d.accrual_id)
    ORDER BY d.due_at, d.accrual_id LIMIT 1"""


async def take_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[tuple[AccrualState, object]]:
    """Due settlements (accrual state, cause event id), locked; rows another transaction holds
    (a refund being applied, another scheduler) are skipped now and taken on a later round."""
    rows = await conn.fetch(TAKE_DUE, now, limit)
    return [(AccrualState(r["accrual_id"], r["order_id"], r["line_id"], r["level"], r["beneficiary_id"], r["base_fen"],
                          r["amount_fen"], r["reversed_fen"], r["line_refunded_fen"], freeze_days=r["freeze_days"], due=True),
             r["cause_event_id"]) for r in rows]


async def next_due_at(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval(NEXT_DUE)
