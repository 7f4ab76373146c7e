"""What customers paid, projected from order events."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from services.referral.domain.promoters import Spend


async def record_paid(conn: asyncpg.Connection, order_id: str, buyer_id: str, paid_fen: int, paid_at: datetime) -> bool:
    """False if the order was already recorded (a repeat OrderPaid changes nothing)."""
    row = await conn.fetchrow(
        """INSERT INTO customer_orders (order_id, buyer_id, paid_fen, paid_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (order_id) DO NOTHING RETURNING 1""",
        order_id, buyer_id, paid_fen, paid_at,
    )
    return row is not None


async def record_refund(conn: asyncpg.Connection, order_id: str, out_refund_no: str, amount_fen: int,
                        refunded_at: datetime) -> str | None:
    """Add a refund to a known order; returns its buyer, or None (unknown order, or a repeat)."""
    buyer = await conn.fetchval("SELECT buyer_id FROM customer_orders WHERE order_id = $1 FOR UPDATE", order_id)
    if buyer is None:
        return None
    fresh = await conn.fetchrow(
        """INSERT INTO customer_refunds (order_id, out_refund_no, amount_fen, refunded_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING 1""", order_id, out_refund_no, amount_fen, refunded_at)
    if fresh is None:
        return None
    # never more refunded than paid for the goods (a postage refund is not goods)
    await conn.execute(
        "UPDATE customer_orders SET refunded_fen = LEAST(paid_fen, refunded_fen + $2) WHERE order_id = $1",
        order_id, amount_fen)
    return buyer


async def spend(conn: asyncpg.Connection, buyer_id: str) -> Spend:
    row = await conn.fetchrow(
        """SELECT count(*) AS n, COALESCE(sum(paid_fen - refunded_fen), 0) AS net
           FROM customer_orders WHERE buyer_id = $1""", buyer_id)
    return Spend(paid_orders=row["n"], net_paid_fen=int(row["net"]))


async def has_paid_order(conn: asyncpg.Connection, buyer_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM customer_orders WHERE buyer_id = $1 LIMIT 1", buyer_id))
