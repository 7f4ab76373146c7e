"""The tables that grow with every event keep a small ANALYZE sample (statistics target 10 on
every column, a column added later included), and the planner still reads them by key."""
from __future__ import annotations

import pytest

from services.commission.main import MIGRATIONS
from tests.conftest import migrated

pytestmark = pytest.mark.integration

SMALL = {"outbox", "projector_applied", "accruals", "paid_orders"}


async def test_every_column_of_the_growing_tables_has_a_small_sample(infra, fresh_schema):
    async with migrated(infra["db"], fresh_schema, MIGRATIONS) as conn:
        rows = await conn.fetch(
            """SELECT c.relname, a.attname, a.attstattarget FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped""",
            fresh_schema, sorted(SMALL))
        assert {r["relname"] for r in rows} == SMALL
        wide = [(r["relname"], r["attname"], r["attstattarget"]) for r in rows if r["attstattarget"] != 10]
        assert not wide, f"columns analyzed with the default sample (30,000 rows): {wide}"

        # a 20,000-row outbox: ANALYZE reads 3,000 of them, and lookups stay index scans
        await conn.execute(
            """INSERT INTO outbox (event_id, topic, key, value, headers)
               SELECT gen_random_uuid(), 't', 'k' || (g % 500), convert_to(repeat('x', 600), 'UTF8'), '{}'
               FROM generate_series(1, 20000) g""")
        await conn.execute("ANALYZE outbox")
        hist = await conn.fetchval(
            "SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats WHERE schemaname = $1 "
            "AND tablename = 'outbox' AND attname = 'seq'", fresh_schema)
        assert hist is not None and hist <= 11
        assert await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'outbox'::regclass") == 20000
        some = await conn.fetchval("SELECT event_id FROM outbox WHERE seq = 777")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN SELECT * FROM outbox WHERE event_id = '{some}'"))
        assert "Index Scan" in plan, plan
