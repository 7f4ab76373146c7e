"""The services' pool releases a connection without asyncpg's reset query (a round trip per
release), and still never hands out a connection inside a transaction."""
from __future__ import annotations

import pytest

from shared import db
from tests.integration.foundation.tally import MIGRATIONS

pytestmark = pytest.mark.integration


async def test_release_sends_no_reset_query_but_rolls_back_an_open_transaction(infra, fresh_schema):
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)  # creates the schema
    pool = await db.create_pool(infra["db"], fresh_schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE pool_reset_probe (v int)")
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            # session state the default reset would undo: a session setting (RESET ALL)
            await conn.execute("SET application_name = 'kept-by-the-pool'")
            # and a transaction left open by code that did not use `conn.transaction()`
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_reset_probe VALUES (1)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend  # the same connection
            assert await conn.fetchval("SELECT current_setting('application_name')") == "kept-by-the-pool"
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_reset_probe") == 0  # the open transaction was rolled back
            # its search path is still the service's schema
            assert await conn.fetchval("SELECT current_schema()") == fresh_schema
    finally:
        await pool.close()
