"""A dashboard is one snapshot: money that lands while it is being read shows in every figure of
the answer or in none (read statement by statement, today's sums could miss what the balance had)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

from services.engagement.api.dashboard import dashboard_of
from services.engagement.main import MIGRATIONS
from shared import db

pytestmark = pytest.mark.integration


class LandsAfterFirstRead:
    """The request's connection; after its first statement, a settlement commits on another one."""

    def __init__(self, conn: asyncpg.Connection, other: asyncpg.Connection, promoter_id: str, at: datetime) -> None:
        self.conn, self.other, self.promoter_id, self.at = conn, other, promoter_id, at
        self.landed = False

    def transaction(self, **kw):
        return self.conn.transaction(**kw)

    async def _after(self, result):
        if not self.landed:
            self.landed = True
            await self.other.execute("INSERT INTO earnings (event_id, promoter_id, kind, amount_fen, at) VALUES ($1, $2, 'settled', 1000, $3)",
                                     uuid.uuid4(), self.promoter_id, self.at)
        return result

    async def fetch(self, *a):
        return await self._after(await self.conn.fetch(*a))

    async def fetchrow(self, *a):
        return await self._after(await self.conn.fetchrow(*a))

    async def fetchval(self, *a):
        return await self._after(await self.conn.fetchval(*a))


async def test_money_landing_mid_read_shows_in_every_figure_or_in_none(infra, fresh_schema):
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    now = datetime.now(timezone.utc)
    p = f"p-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(infra["db"], server_settings={"search_path": fresh_schema})
    other = await asyncpg.connect(infra["db"], server_settings={"search_path": fresh_schema})
    try:
        await conn.execute("INSERT INTO earnings (event_id, promoter_id, kind, amount_fen, at) VALUES ($1, $2, 'accrued', 3000, $3)",
                           uuid.uuid4(), p, now)
        spy = LandsAfterFirstRead(conn, other, p, now)
        d = await dashboard_of(spy, p, "Asia/Shanghai", now, 30)
        assert spy.landed
        today, = [x for x in d.periods if x.period == "today"]
        whole, = [x for x in d.periods if x.period == "all"]
        assert today.settled_fen == whole.settled_fen == d.balance.settled_fen == 0  # read before it landed
        assert d.balance.frozen_fen == 3000
        # the next read sees it everywhere
        d = await dashboard_of(conn, p, "Asia/Shanghai", now, 30)
        assert [x.settled_fen for x in d.periods if x.period in ("today", "all")] == [1000, 1000] == [d.balance.settled_fen] * 2
    finally:
        await conn.close()
        await other.close()
