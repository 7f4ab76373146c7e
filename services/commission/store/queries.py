"""Reads behind the HTTP API."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from services.commission.domain.balance import COLUMNS


async def balance(conn: asyncpg.Connection, promoter_id: str) -> dict[str, int]:
    """A promoter's five columns (zeros when nothing has moved yet)."""
    r = await conn.fetchrow(f"SELECT {', '.join(COLUMNS)} FROM balances WHERE promoter_id = $1", promoter_id)
    return {c: (r[c] if r else 0) for c in COLUMNS}


_STATUS_SQL = {
    "frozen": "a.settled_at IS NULL AND a.reversed_fen < a.amount_fen",
    "settled": "a.settled_at IS NOT NULL AND a.reversed_fen < a.amount_fen",
    "reversed": "a.reversed_fen >= a.amount_fen",
}


async def commissions(conn: asyncpg.Connection, promoter_id: str, *, status: str | None, order_id: str | None,
                      paid_from: datetime | None, paid_to: datetime | None, limit: int,
                      after: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    """A promoter's accruals, newest payment first, keyset-paginated by (paid_at, accrual_id)."""
    where = ["a.beneficiary_id = $1"]
    args: list = [promoter_id]

    def arg(v) -> str:
        args.append(v)
        return f"${len(args)}"

    if status:
        where.append(_STATUS_SQL[status])
    if order_id:
        where.append(f"a.order_id = {arg(order_id)}")
    if paid_from:
        where.append(f"a.paid_at >= {arg(paid_from)}")
    if paid_to:
        where.append(f"a.paid_at < {arg(paid_to)}")
    if after:
        where.append(f"(a.paid_at, a.accrual_id) < ({arg(after[0])}, {arg(after[1])})")
    return await conn.fetch(
        f"""SELECT a.accrual_id, a.order_id, a.line_id, a.level, a.product_id, a.base_fen, a.quantity, a.rate_bp,
                   a.fixed_fen_per_unit, a.amount_fen, a.reversed_fen, a.settled_fen, a.settled_at, a.plan_version,
                   a.tier, a.unfreeze, a.paid_at,
                   (SELECT d.due_at FROM settlement_due d WHERE d.accrual_id = a.accrual_id) AS due_at
            FROM accruals a WHERE {' AND '.join(where)}
            ORDER BY a.paid_at DESC, a.accrual_id DESC LIMIT {arg(limit)}""", *args)


async def current_tier(conn: asyncpg.Connection, promoter_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT to_tier FROM tier_changes WHERE promoter_id = $1 ORDER BY effective_at DESC, seq DESC LIMIT 1", promoter_id)


async def promoter_status(conn: asyncpg.Connection, promoter_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT status FROM promoter_statuses WHERE promoter_id = $1 ORDER BY changed_at DESC, seq DESC LIMIT 1", promoter_id)


async def latest_plan_version(conn: asyncpg.Connection) -> tuple[int, datetime] | None:
    r = await conn.fetchrow("SELECT plan_version, published_at FROM plans ORDER BY plan_version DESC LIMIT 1")
    return (r["plan_version"], r["published_at"]) if r else None
