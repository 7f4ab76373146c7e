"""The settlement schedule: due rows indexed by due_at, taken a bounded batch at a time."""
from __future__ import annotations

from datetime import datetime

import asyncpg


async def take_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Due settlements with their accrual, locked; rows another transaction holds (a refund being
    applied, another scheduler) are skipped now and taken on a later round."""
    return await conn.fetch(
        """SELECT d.accrual_id, d.cause_event_id, a.order_id, a.beneficiary_id, a.amount_fen, a.reversed_fen
           FROM settlement_due d JOIN accruals a USING (accrual_id)
           WHERE d.due_at <= $1 AND a.settled_at IS NULL
           ORDER BY d.due_at, d.accrual_id
           LIMIT $2
           FOR UPDATE OF d, a SKIP LOCKED""", now, limit)


async def mark_settled(conn: asyncpg.Connection, accrual_ids: list[str], amounts: list[int], at: datetime) -> None:
    await conn.execute(
        """UPDATE accruals a SET settled_fen = u.amount, settled_at = $3
           FROM unnest($1::text[], $2::bigint[]) AS u(id, amount) WHERE a.accrual_id = u.id""",
        accrual_ids, amounts, at)
    await conn.execute("DELETE FROM settlement_due WHERE accrual_id = ANY($1::text[])", accrual_ids)


async def drop_settled_dues(conn: asyncpg.Connection) -> None:
    """Due rows whose accrual is already settled (settled by the log in a replayed schema)."""
    await conn.execute(
        "DELETE FROM settlement_due d USING accruals a WHERE a.accrual_id = d.accrual_id AND a.settled_at IS NOT NULL")


async def next_due_at(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval(
        """SELECT d.due_at FROM settlement_due d JOIN accruals a USING (accrual_id)
           WHERE a.settled_at IS NULL ORDER BY d.due_at LIMIT 1""")
