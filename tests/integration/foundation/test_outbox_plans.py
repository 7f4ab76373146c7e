"""The outbox relay's statements stay index-driven whatever the planner believes.

A relay cycle runs its statements prepared once per connection, and PostgreSQL caches a generic
plan for a prepared statement once it finds it no costlier than the custom ones; a generic plan
made while the outbox was empty (every fresh schema, every new deployment catching up on a
backlog) stays until an ANALYZE replaces it. For a plain join of `outbox_pending` and `outbox`
that plan is a hash join over a scan of the whole outbox, on every cycle (one bench run showed
PostgreSQL at 80-100 % of a core for 40 s of a backlog while the projection starved, until an
autovacuum). Here the generic plans are made on the empty schema (forced, so the test does not
depend on the planner's choice), the tables filled without ANALYZE, and the plans they then run
must read the outbox only by key."""
from __future__ import annotations

import asyncpg
import pytest

from shared import db
from shared.outbox import _PENDING, _PUBLISHED, _PARK
from tests.integration.foundation.tally import MIGRATIONS
from tests.integration.pg import plan_nodes

pytestmark = pytest.mark.integration

#: the join the relay used first: the control that shows the setup reproduces the hazard
PLAIN_JOIN = """SELECT o.seq, o.value FROM (SELECT seq FROM outbox_pending ORDER BY seq LIMIT $1) AS p
                JOIN outbox o ON o.seq = p.seq"""


async def test_relay_plans_cached_on_an_empty_outbox_read_it_only_by_key(infra, fresh_schema):
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    conn = await asyncpg.connect(infra["db"], server_settings={"search_path": fresh_schema,
                                                               "plan_cache_mode": "force_generic_plan"})
    try:
        await conn.execute(f"PREPARE pending(int) AS {_PENDING}")
        await conn.execute(f"PREPARE plain_join(int) AS {PLAIN_JOIN}")
        # the published statement's parameters: seqs, marks (topic, partition, next offset), heads
        await conn.execute(f"PREPARE published(bigint[], text[], int[], bigint[], text[], int[], text[]) AS {_PUBLISHED}")
        await conn.execute(f"PREPARE park(bigint[], text[]) AS {_PARK}")
        for _ in range(2):
            assert await conn.fetch("EXECUTE pending(2000)") == []
            assert await conn.fetch("EXECUTE plain_join(2000)") == []
            await conn.execute("EXECUTE published('{}', '{}', '{}', '{}', '{}', '{}', '{}')")
            await conn.execute("EXECUTE park('{}', '{}')")

        # a backlog, no ANALYZE: the plans cached above stay
        await conn.execute(
            """WITH w AS (INSERT INTO outbox (event_id, topic, key, value)
                          SELECT gen_random_uuid(), 't', 'k' || g, convert_to(repeat('x', 500), 'UTF8')
                          FROM generate_series(1, 30000) AS g RETURNING seq)
               INSERT INTO outbox_pending (seq) SELECT seq FROM w WHERE seq > 29000""")

        control = await plan_nodes(conn, "plain_join(2000)")
        assert ("Seq Scan", "outbox") in control, f"the setup no longer reproduces a stale plan: {control}"
        by_key = ("Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Bitmap Index Scan", "ModifyTable")
        for statement in ("pending(2000)", "published('{29001,29002}', '{t}', '{0}', '{5}', '{}', '{}', '{}')",
                          "park('{29003}', '{too large}')"):
            plan = await plan_nodes(conn, statement)
            assert not [n for n in plan if n[1] in ("outbox", "outbox_pending") and n[0] not in by_key], (statement, plan)
            # publishing never touches the outbox rows (migration 0004: insert-only); reading and parking do
            assert bool([n for n in plan if n[1] == "outbox"]) == (not statement.startswith("published")), (statement, plan)

        # and the answers: the oldest pending rows, in seq order
        rows = await conn.fetch("EXECUTE pending(5)")
        assert [r["seq"] for r in rows] == [29001, 29002, 29003, 29004, 29005]
        assert all(r["value"] == b"x" * 500 for r in rows)
    finally:
        await conn.close()
