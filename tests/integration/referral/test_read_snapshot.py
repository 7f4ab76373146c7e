"""Referral's reads (`api.deps.read`) see one snapshot: what commits between two of a read's
statements (a team page and its total) shows in neither, and a read cannot write."""
from __future__ import annotations

from types import SimpleNamespace

import asyncpg
import pytest

from services.referral.api.deps import read
from tests.integration.pg import pool_and_writer

pytestmark = pytest.mark.integration


async def test_a_read_sees_one_snapshot_and_cannot_write(infra, fresh_schema):
    async with pool_and_writer(infra["db"], fresh_schema) as (pool, other):
        await other.execute("CREATE TABLE team_rows (n int)")
        await other.execute("INSERT INTO team_rows VALUES (1), (2)")

        async def page_and_total(conn):
            total = await conn.fetchval("SELECT count(*) FROM team_rows")
            await other.execute("INSERT INTO team_rows VALUES (3)")  # a bind commits meanwhile
            items = await conn.fetch("SELECT n FROM team_rows ORDER BY n")
            return total, [r["n"] for r in items]

        rt = SimpleNamespace(pool=pool)
        assert await read(rt, page_and_total) == (2, [1, 2])
        assert await read(rt, lambda conn: conn.fetchval("SELECT count(*) FROM team_rows")) == 3
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await read(rt, lambda conn: conn.execute("INSERT INTO team_rows VALUES (9)"))
