"""Read-only SQL behind "explain any fen": what this service recorded about one order."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from shared.outbox import PUBLISHED


async def paid_order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT order_id, buyer_id, paid_at FROM paid_orders WHERE order_id = $1", order_id)


async def order_of_accrual(conn: asyncpg.Connection, accrual_id: str) -> str | None:
    return await conn.fetchval("SELECT order_id FROM accruals WHERE accrual_id = $1", accrual_id)


async def accruals(conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT a.*, d.due_at FROM accruals a LEFT JOIN settlement_due d ON d.accrual_id = a.accrual_id
           WHERE a.order_id = $1 ORDER BY a.line_id, CASE a.level WHEN 'self_purchase' THEN 0 WHEN 'level1' THEN 1 ELSE 2 END""",
        order_id)


async def skips(conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT line_id, beneficiary_id, level, reason, paid_at FROM accrual_skips WHERE order_id = $1 ORDER BY line_id, level",
        order_id)


async def binding_at(conn: asyncpg.Connection, customer_id: str, at: datetime) -> asyncpg.Record | None:
    """The binding in force at `at` (valid from bound_at until the customer's next one)."""
    return await conn.fetchrow(
        """SELECT promoter_id, bound_at, event_id,
                  (SELECT min(n.bound_at) FROM bindings n WHERE n.customer_id = b.customer_id AND n.bound_at > b.bound_at) AS until
           FROM bindings b WHERE customer_id = $1 AND bound_at <= $2 ORDER BY bound_at DESC, seq DESC LIMIT 1""",
        customer_id, at)


async def status_at(conn: asyncpg.Connection, promoter_id: str, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT status, until, changed_at, reason, event_id FROM promoter_statuses
           WHERE promoter_id = $1 AND changed_at <= $2 ORDER BY changed_at DESC, seq DESC LIMIT 1""",
        promoter_id, at)


async def plan_in_force(conn: asyncpg.Connection, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT plan_version, plan, published_by, published_at, event_id FROM plans
           WHERE published_at <= $1 ORDER BY published_at DESC, plan_version DESC LIMIT 1""", at)


async def plan_version(conn: asyncpg.Connection, version: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT plan_version, plan, published_by, published_at, event_id FROM plans WHERE plan_version = $1", version)


async def plans(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT plan_version, plan, published_by, published_at, event_id FROM plans ORDER BY plan_version DESC LIMIT $1",
        limit)


async def own_events(conn: asyncpg.Connection, topic: str, keys: list[str], order_id: str) -> list[dict[str, Any]]:
    """This service's events about the order (accrued, skipped, reversed, settled), from its outbox,
    in the order they were recorded, with whether the relay has published them."""
    rows = await conn.fetch(
        f"""SELECT seq, convert_from(value, 'UTF8')::jsonb AS env, {PUBLISHED} AS published FROM outbox
           WHERE topic = $1 AND key = ANY($2::text[])
             AND convert_from(value, 'UTF8')::jsonb #>> '{{payload,order_id}}' = $3
           ORDER BY seq""",
        topic, keys, order_id)
    out = []
    for r in rows:
        env = r["env"] if isinstance(r["env"], dict) else json.loads(r["env"])
        out.append({**env, "published": r["published"]})
    return out
