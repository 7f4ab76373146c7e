"""SQL of announcements and training material with read tracking. Functions never commit."""
from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg


async def publish(conn: asyncpg.Connection, aid: uuid.UUID, kind: str, title: str, body: str, url: str | None, by: str,
                  at: datetime) -> None:
    await conn.execute(
        """INSERT INTO announcements (announcement_id, kind, title, body, url, published_by, published_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""", aid, kind, title, body, url, by, at)


async def for_promoter(conn: asyncpg.Connection, promoter_id: str, kind: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT a.announcement_id, a.kind, a.title, a.body, a.url, a.published_at, r.read_at
           FROM announcements a LEFT JOIN announcement_reads r ON r.announcement_id = a.announcement_id AND r.promoter_id = $1
           WHERE ($2::text IS NULL OR a.kind = $2) ORDER BY a.published_at DESC LIMIT $3""", promoter_id, kind, limit)


async def mark_read(conn: asyncpg.Connection, aid: uuid.UUID, promoter_id: str, at: datetime) -> bool:
    """False when there is no such announcement."""
    if not await conn.fetchval("SELECT 1 FROM announcements WHERE announcement_id = $1", aid):
        return False
    await conn.execute("INSERT INTO announcement_reads VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", aid, promoter_id, at)
    return True


async def with_reads(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT a.announcement_id, a.kind, a.title, a.published_by, a.published_at,
                  (SELECT count(*) FROM announcement_reads r WHERE r.announcement_id = a.announcement_id) AS reads
           FROM announcements a ORDER BY a.published_at DESC LIMIT $1""", limit)
