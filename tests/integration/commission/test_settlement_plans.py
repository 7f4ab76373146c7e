"""The settlement scheduler's two statements stay index-driven whatever the planner believes.

The scheduler polls every second. Its plans are prepared once per connection, and a statement
first run while the tables were empty (a fresh schema, a new deployment catching up on a backlog)
keeps that plan until an ANALYZE happens to invalidate it. With a plain join of `settlement_due`
and `accruals` that cached plan was a scan of every accrual ever made, on every poll (343 ms at
300,000 accruals with nothing due). Here the statements are prepared on the empty schema, the
tables are filled without ANALYZE, and the plans they then run must read no accrual but by key."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.commission.store import settlement as store
from tests.integration.pg import plan_nodes

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
#: the join the scheduler used before: the control that shows the setup reproduces the hazard
PLAIN_JOIN = """SELECT d.due_at FROM settlement_due d JOIN accruals a USING (accrual_id)
                WHERE a.settled_at IS NULL ORDER BY d.due_at LIMIT 1"""


async def _fill(conn, accruals: int) -> None:
    """`accruals` accruals, every third one completed (a due row); among the earliest due, one
    already settled (its due row left behind) and one due in the past."""
    await conn.execute(
        """INSERT INTO accruals (accrual_id, order_id, line_id, level, beneficiary_id, buyer_id, product_id, base_fen,
                                 quantity, rate_bp, amount_fen, plan_version, tier, freeze_days, unfreeze, paid_at, event_id)
           SELECT 'a' || lpad(g::text, 6, '0'), 'o' || g, 'l1', 'level1', 'p' || (g % 500), 'c' || g, 'sku', 10000, 1, 500,
                  500, 1, 'standard', 7, 'completion', $1, gen_random_uuid()
           FROM generate_series(1, $2) AS g""", NOW - timedelta(days=30), accruals)
    await conn.execute(
        """INSERT INTO settlement_due (accrual_id, due_at, cause_event_id)
           SELECT 'a' || lpad(g::text, 6, '0'), $1::timestamptz + g * interval '1 minute', gen_random_uuid()
           FROM generate_series(3, $2, 3) AS g""", NOW, accruals)
    await conn.execute("UPDATE accruals SET settled_at = $1, settled_fen = 500 WHERE accrual_id = 'a000003'", NOW)
    await conn.execute("UPDATE settlement_due SET due_at = $1 WHERE accrual_id = 'a000006'", NOW - timedelta(hours=1))


async def test_scheduler_plans_cached_on_empty_tables_read_accruals_only_by_key(dbc):
    await dbc.execute(f"PREPARE take_due(timestamptz, int) AS {store.TAKE_DUE}")
    await dbc.execute(f"PREPARE next_due AS {store.NEXT_DUE}")
    await dbc.execute(f"PREPARE plain_join AS {PLAIN_JOIN}")
    for _ in range(6):  # past the custom plans PostgreSQL tries first: the generic plan is cached
        assert await dbc.fetch("EXECUTE take_due('2027-12-31 00:00:00+00', 100)") == []
        assert await dbc.fetchval("EXECUTE next_due") is None
        assert await dbc.fetchval("EXECUTE plain_join") is None

    await _fill(dbc, 30_000)  # no ANALYZE: the plans cached above stay

    control = await plan_nodes(dbc, "plain_join")
    assert ("Seq Scan", "accruals") in control, f"the setup no longer reproduces a stale plan: {control}"
    for statement in ("take_due('2026-12-02 09:00:00+00', 100)", "next_due"):
        plan = await plan_nodes(dbc, statement)
        by_index = ("Index Scan", "Index Only Scan")
        assert not [n for n in plan if n[1] in ("accruals", "settlement_due") and n[0] not in by_index], (statement, plan)
        assert [n for n in plan if n[1] == "settlement_due"], (statement, plan)

    # the same answers as before: the settled accrual's stray due row is never taken nor waited for
    assert await dbc.fetchval("EXECUTE next_due") == NOW - timedelta(hours=1)
    async with dbc.transaction():
        taken = await store.take_due(dbc, NOW + timedelta(minutes=30), 4)
    assert [st.accrual_id for st, _ in taken] == ["a000006", "a000009", "a000012", "a000015"]
    assert all(st.due and st.amount_fen == 500 for st, _ in taken)
    await dbc.execute("DELETE FROM settlement_due WHERE accrual_id = 'a000006'")
    assert await store.next_due_at(dbc) == NOW + timedelta(minutes=9)


async def test_take_due_skips_what_another_transaction_holds_and_locks_only_what_it_takes(dbc, infra, schema):
    import asyncpg

    await _fill(dbc, 60)
    other = await asyncpg.connect(infra["db"], server_settings={"search_path": schema})
    try:
        async with other.transaction():
            # a refund being applied holds accrual a000009
            await other.execute("SELECT 1 FROM accruals WHERE accrual_id = 'a000009' FOR UPDATE")
            async with dbc.transaction():
                taken = [st.accrual_id for st, _ in await store.take_due(dbc, NOW + timedelta(minutes=60), 3)]
                assert taken == ["a000006", "a000012", "a000015"]
                # exactly the taken accruals are locked (and the one the refund holds)
                locked = await other.fetch(
                    """SELECT accrual_id FROM accruals WHERE accrual_id <= 'a000060'
                       ORDER BY accrual_id FOR UPDATE SKIP LOCKED""")
                held = {f"a{i:06d}" for i in range(1, 61)} - {r["accrual_id"] for r in locked}
                assert held == {"a000006", "a000012", "a000015"}
    finally:
        await other.close()
