"""SQL of the facts folded from other services' events: money, order lines, first purchases,
the share funnel, promoters' names and tiers. Functions take a connection and never commit."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Earning:
    event_id: uuid.UUID
    promoter_id: str
    kind: str
    amount_fen: int
    at: datetime
    order_id: str | None = None
    line_id: str | None = None
    buyer_id: str | None = None
    level: str | None = None


async def add_earnings(conn: asyncpg.Connection, rows: list[Earning]) -> None:
    if not rows:
        return
    cols = ("event_id", "promoter_id", "kind", "amount_fen", "at", "order_id", "line_id", "buyer_id", "level")
    await conn.executemany(
        f"INSERT INTO earnings ({', '.join(cols)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        [tuple(getattr(r, c) for c in cols) for r in rows])


async def add_order_lines(conn: asyncpg.Connection, rows: list[tuple[str, str, str]]) -> None:
    if rows:
        await conn.executemany("INSERT INTO order_lines VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", rows)


async def add_first_purchases(conn: asyncpg.Connection, rows: list[tuple[str, str, str, datetime]]) -> list[str]:
    """(promoter, buyer, order, at): the earliest paid order wins, in whatever order they arrive.
    Returns the promoter of each customer seen for the first time (one entry per new customer).
    One statement for the batch (at a sale's rate, a statement per row was most of the batch):
    the batch's earliest row per pair (the first given on a tie) goes in, pairs in key order."""
    if not rows:
        return []
    found = await conn.fetch(
        """WITH r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                      WITH ORDINALITY AS r(p, b, o, at, i)),
                e AS (SELECT DISTINCT ON (p, b) p, b, o, at FROM r ORDER BY p, b, at, i)
           INSERT INTO first_purchases AS f (promoter_id, buyer_id, order_id, at)
           SELECT p, b, o, at FROM e ORDER BY p, b
           ON CONFLICT (promoter_id, buyer_id) DO UPDATE SET order_id = EXCLUDED.order_id, at = EXCLUDED.at
           WHERE EXCLUDED.at < f.at
           RETURNING f.promoter_id, (xmax = 0) AS inserted""",
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    return [r["promoter_id"] for r in found if r["inserted"]]


async def add_channel_steps(conn: asyncpg.Connection, rows: list[tuple]) -> None:
    """(event_id, promoter, step, source, product, customer, at)"""
    if rows:
        await conn.executemany("INSERT INTO channel_steps VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING", rows)


async def set_nickname(conn: asyncpg.Connection, promoter_id: str, nickname: str | None) -> None:
    """The (masked) nickname the boards show; never again for a person erased here (a replay of the
    log must not bring it back)."""
    await conn.execute(
        """INSERT INTO promoters (promoter_id, nickname)
           VALUES ($1, CASE WHEN EXISTS (SELECT 1 FROM personal_data_erasures WHERE person_id = $1) THEN NULL ELSE $2 END)
           ON CONFLICT (promoter_id) DO UPDATE SET nickname = COALESCE(EXCLUDED.nickname, promoters.nickname)""",
        promoter_id, nickname)


async def set_tier(conn: asyncpg.Connection, promoter_id: str, tier: str) -> None:
    await conn.execute(
        """INSERT INTO promoters (promoter_id, tier) VALUES ($1, $2)
           ON CONFLICT (promoter_id) DO UPDATE SET tier = EXCLUDED.tier""", promoter_id, tier)


async def add_to_records(conn: asyncpg.Connection, deltas: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Add each promoter's change to their running record; the records after it."""
    if not deltas:
        return {}
    ids = sorted(deltas)
    rows = await conn.fetch(
        """INSERT INTO records AS r (promoter_id, sales, accrued_fen, settled_fen, new_customers)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
           ON CONFLICT (promoter_id) DO UPDATE SET sales = r.sales + EXCLUDED.sales,
               accrued_fen = r.accrued_fen + EXCLUDED.accrued_fen, settled_fen = r.settled_fen + EXCLUDED.settled_fen,
               new_customers = r.new_customers + EXCLUDED.new_customers
           RETURNING promoter_id, sales, accrued_fen, settled_fen, new_customers""",
        ids, *[[deltas[i].get(k, 0) for i in ids] for k in ("sales", "accrued_fen", "settled_fen", "new_customers")])
    return {r["promoter_id"]: {k: int(r[k]) for k in ("sales", "accrued_fen", "settled_fen", "new_customers")}
            for r in rows}
