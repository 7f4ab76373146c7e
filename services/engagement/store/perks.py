"""SQL of tier perks and their grants. Functions never commit."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from services.engagement.domain.perks import grant_id


async def define(conn: asyncpg.Connection, perk_id: str, tier: str, kind: str, title: str, description: str,
                 by: str) -> bool:
    return bool(await conn.fetchval(
        """INSERT INTO perks (perk_id, tier, kind, title, description, created_by) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT DO NOTHING RETURNING 1""", perk_id, tier, kind, title, description, by))


async def set_active(conn: asyncpg.Connection, perk_id: str, active: bool) -> bool:
    return (await conn.execute("UPDATE perks SET active = $2 WHERE perk_id = $1", perk_id, active)) == "UPDATE 1"


async def all_perks(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM perks ORDER BY tier, perk_id")


async def perk(conn: asyncpg.Connection, perk_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM perks WHERE perk_id = $1", perk_id)


async def grant_for_tier(conn: asyncpg.Connection, promoter_id: str, tier: str, at: datetime) -> list[asyncpg.Record]:
    """Grant every active perk of `tier` the promoter has not been granted; the new grants."""
    perks = await conn.fetch("SELECT perk_id, kind, title FROM perks WHERE tier = $1 AND active ORDER BY perk_id", tier)
    out = []
    for p in perks:
        row = await conn.fetchrow(
            """INSERT INTO perk_grants (grant_id, promoter_id, perk_id, tier, granted_at) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING RETURNING grant_id, promoter_id, perk_id, tier, granted_at""",
            grant_id(promoter_id, p["perk_id"]), promoter_id, p["perk_id"], tier, at)
        if row is not None:
            out.append((row, p))
    return out


async def promoters_at_tier(conn: asyncpg.Connection, tier: str) -> list[str]:
    return [r["promoter_id"] for r in await conn.fetch("SELECT promoter_id FROM promoters WHERE tier = $1 ORDER BY 1", tier)]


async def grants_of(conn: asyncpg.Connection, promoter_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT g.grant_id, g.perk_id, g.tier, g.granted_at, g.claimed_at, p.kind, p.title, p.description
           FROM perk_grants g JOIN perks p USING (perk_id) WHERE g.promoter_id = $1 ORDER BY g.granted_at, g.perk_id""",
        promoter_id)


async def claim(conn: asyncpg.Connection, grant_id_: str, promoter_id: str, key: str, at: datetime) -> asyncpg.Record | None:
    """Claim the grant if unclaimed (the condition is in the UPDATE: of concurrent claims one
    wins); None when it is not the promoter's or was claimed already."""
    return await conn.fetchrow(
        """UPDATE perk_grants SET claimed_at = $4, claim_key = $3
           WHERE grant_id = $1 AND promoter_id = $2 AND claimed_at IS NULL
           RETURNING grant_id, perk_id, claimed_at, claim_key""", grant_id_, promoter_id, key, at)


async def grant(conn: asyncpg.Connection, grant_id_: str, promoter_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT grant_id, perk_id, claimed_at, claim_key FROM perk_grants WHERE grant_id = $1 AND promoter_id = $2",
        grant_id_, promoter_id)
