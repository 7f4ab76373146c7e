"""The chain read model (projected from ReferralBound / ReferralTakenOver)."""
from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.referral.domain.chain import Link


async def open_link(conn: asyncpg.Connection, event_id: uuid.UUID, customer_id: str, promoter_id: str,
                    at: datetime) -> None:
    """The customer belongs to `promoter_id` from `at`: close what was open before, open this."""
    await conn.execute(
        """UPDATE chain_links SET valid_to = $2
           WHERE customer_id = $1 AND valid_to IS NULL AND valid_from <= $2""",
        customer_id, at,
    )
    await conn.execute(
        """INSERT INTO chain_links (event_id, customer_id, promoter_id, valid_from) VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id) DO NOTHING""",
        event_id, customer_id, promoter_id, at,
    )


async def link_at(conn: asyncpg.Connection, customer_id: str, at: datetime) -> Link | None:
    row = await conn.fetchrow(
        """SELECT customer_id, promoter_id, valid_from, valid_to FROM chain_links
           WHERE customer_id = $1 AND valid_from <= $2 AND (valid_to IS NULL OR $2 < valid_to)
           ORDER BY valid_from DESC LIMIT 1""",
        customer_id, at,
    )
    return Link(**dict(row)) if row else None


async def links_of(conn: asyncpg.Connection, customer_id: str) -> list[Link]:
    rows = await conn.fetch(
        "SELECT customer_id, promoter_id, valid_from, valid_to FROM chain_links WHERE customer_id = $1 ORDER BY valid_from",
        customer_id)
    return [Link(**dict(r)) for r in rows]
