"""SQL of honours, operator milestones and closed months. Functions never commit."""
from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.engagement.domain.honours import Milestone, operator_key


async def award(conn: asyncpg.Connection, promoter_id: str, key: str, title: str, source_event_id: uuid.UUID | None,
                at: datetime) -> bool:
    """True when this is the first award of `key` to the promoter (awarded once, ever)."""
    return bool(await conn.fetchval(
        """INSERT INTO honours (promoter_id, honour_key, title, source_event_id, awarded_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING RETURNING 1""", promoter_id, key, title, source_event_id, at))


async def award_many(conn: asyncpg.Connection, rows: list[tuple[str, str, str, uuid.UUID | None, datetime]]
                     ) -> set[tuple[str, str]]:
    """`award` for many (promoter, key, title, source event, at) rows in one statement; the
    (promoter, key) pairs awarded now (the first award of each, ever)."""
    if not rows:
        return set()
    found = await conn.fetch(
        """INSERT INTO honours (promoter_id, honour_key, title, source_event_id, awarded_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[])
           ON CONFLICT DO NOTHING RETURNING promoter_id, honour_key""",
        *[[r[i] for r in rows] for i in range(5)])
    return {(r["promoter_id"], r["honour_key"]) for r in found}


async def held(conn: asyncpg.Connection, promoter_ids: list[str]) -> dict[str, set[str]]:
    rows = await conn.fetch("SELECT promoter_id, honour_key FROM honours WHERE promoter_id = ANY($1::text[])", promoter_ids)
    out: dict[str, set[str]] = {p: set() for p in promoter_ids}
    for r in rows:
        out[r["promoter_id"]].add(r["honour_key"])
    return out


async def of_promoter(conn: asyncpg.Connection, promoter_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT honour_key, title, awarded_at FROM honours WHERE promoter_id = $1 ORDER BY awarded_at, honour_key",
                            promoter_id)


async def operator_milestones(conn: asyncpg.Connection) -> list[Milestone]:
    rows = await conn.fetch("SELECT rule_id, title, metric, threshold FROM honour_rules ORDER BY rule_id")
    return [Milestone(operator_key(r["rule_id"]), r["title"], r["metric"], r["threshold"]) for r in rows]


async def add_rule(conn: asyncpg.Connection, rule_id: str, title: str, metric: str, threshold: int, by: str) -> bool:
    return bool(await conn.fetchval(
        """INSERT INTO honour_rules (rule_id, title, metric, threshold, created_by) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING RETURNING 1""", rule_id, title, metric, threshold, by))


async def rules(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT rule_id, title, metric, threshold, created_by, created_at FROM honour_rules ORDER BY rule_id")


async def close_month(conn: asyncpg.Connection, month: str) -> bool:
    """True the first time `month` is closed."""
    return bool(await conn.fetchval("INSERT INTO closed_months (month) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1", month))


async def open_months_before(conn: asyncpg.Connection, before: datetime, tz: str) -> list[str]:
    """Months (business time zone) with settlements before `before` that are not closed yet."""
    rows = await conn.fetch(
        """SELECT DISTINCT to_char(at AT TIME ZONE $2, 'YYYY-MM') AS month FROM earnings
           WHERE kind = 'settled' AND at < $1
           EXCEPT SELECT month FROM closed_months ORDER BY 1""", before, tz)
    return [r["month"] for r in rows]
