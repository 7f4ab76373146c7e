"""The settlement schedule: due rows indexed by due_at, taken a bounded batch at a time."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from services.commission.domain.ledger import AccrualState


async def take_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[tuple[AccrualState, object]]:
    """Due settlements (accrual state, cause event id), locked; rows another transaction holds
    (a refund being applied, another scheduler) are skipped now and taken on a later round."""
    rows = await conn.fetch(
        """SELECT d.accrual_id, d.cause_event_id, a.order_id, a.line_id, a.level, a.beneficiary_id, a.base_fen,
                  a.amount_fen, a.reversed_fen, a.line_refunded_fen, a.freeze_days
           FROM settlement_due d JOIN accruals a USING (accrual_id)
           WHERE d.due_at <= $1 AND a.settled_at IS NULL
           ORDER BY d.due_at, d.accrual_id
           LIMIT $2
           FOR UPDATE OF d, a SKIP LOCKED""", now, limit)
    return [(AccrualState(r["accrual_id"], r["order_id"], r["line_id"], r["level"], r["beneficiary_id"], r["base_fen"],
                          r["amount_fen"], r["reversed_fen"], r["line_refunded_fen"], freeze_days=r["freeze_days"], due=True),
             r["cause_event_id"]) for r in rows]


async def next_due_at(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval(
        """SELECT d.due_at FROM settlement_due d JOIN accruals a USING (accrual_id)
           WHERE a.settled_at IS NULL ORDER BY d.due_at LIMIT 1""")
