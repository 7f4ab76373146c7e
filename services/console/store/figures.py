"""The overview projection's tables: daily figures and current tiers."""
from __future__ import annotations

from datetime import date, datetime

import asyncpg

from services.console.domain.overview import COLUMNS


async def add_days(conn: asyncpg.Connection, days: dict[date, dict[str, int]]) -> None:
    if not days:
        return
    ds = sorted(days)
    cols = ", ".join(COLUMNS)
    arrays = ", ".join(f"${i + 2}::bigint[]" for i in range(len(COLUMNS)))
    sets = ", ".join(f"{c} = daily_figures.{c} + EXCLUDED.{c}" for c in COLUMNS)
    await conn.execute(
        f"""INSERT INTO daily_figures (day, {cols}) SELECT * FROM unnest($1::date[], {arrays})
            ON CONFLICT (day) DO UPDATE SET {sets}""",
        ds, *[[days[d][c] for d in ds] for c in COLUMNS])


async def set_tiers(conn: asyncpg.Connection, tiers: dict[str, tuple[str, datetime]]) -> None:
    if not tiers:
        return
    ids = sorted(tiers)
    await conn.execute(
        """INSERT INTO promoter_tiers (promoter_id, tier, effective_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
           ON CONFLICT (promoter_id) DO UPDATE SET tier = EXCLUDED.tier, effective_at = EXCLUDED.effective_at
           WHERE promoter_tiers.effective_at <= EXCLUDED.effective_at""",
        ids, [tiers[i][0] for i in ids], [tiers[i][1] for i in ids])


async def days(conn: asyncpg.Connection, since: date) -> list[dict]:
    rows = await conn.fetch(f"SELECT day, {', '.join(COLUMNS)} FROM daily_figures WHERE day >= $1 ORDER BY day", since)
    return [dict(r) for r in rows]


async def tier_of(conn: asyncpg.Connection, promoter_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT tier, effective_at FROM promoter_tiers WHERE promoter_id = $1", promoter_id)
