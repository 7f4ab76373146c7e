"""The one-round-trip load of what a batch of payments needs reads exactly what the per-table
queries read (bindings two levels up, statuses, tiers, records of everyone in the chains, orders
seen, plan versions) and every (promoter, direct buyer) pair a level-1 decision can ask about."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.commission.main import MIGRATIONS
from services.commission.store import state as store
from shared import db

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


async def test_payment_state_in_one_round_trip_equals_the_per_table_loads(infra, fresh_schema, ids):
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    conn = await asyncpg.connect(infra["db"], server_settings={"search_path": fresh_schema})
    try:
        top, mid, mid2, buyer, buyer2, promo_buyer, stranger = (ids(n) for n in ("top", "mid", "mid2", "b", "b2", "pb", "x"))
        ev = lambda: uuid.uuid4()  # noqa: E731
        await store.insert_bindings(conn, [
            (mid, top, T0, ev()), (buyer, mid, T0 + timedelta(hours=1), ev()), (buyer, mid2, T0 + timedelta(hours=2), ev()),
            (buyer2, mid, T0, ev()), (promo_buyer, mid2, T0, ev()), (mid2, top, T0, ev()), (stranger, top, T0, ev()),
        ])
        await store.insert_statuses(conn, [
            (p, "active", None, T0 - timedelta(days=1), "enrolled", ev()) for p in (top, mid, mid2, promo_buyer, stranger)
        ] + [(mid, "suspended", T0 + timedelta(days=9), T0 + timedelta(hours=3), "audit", ev())])
        await conn.execute("INSERT INTO tier_changes (promoter_id, from_tier, to_tier, rule, effective_at) VALUES ($1, 'a', 'b', 'r', $2)",
                           mid, T0)
        await conn.execute("INSERT INTO promoter_records VALUES ($1, 3, 2, 900), ($2, 1, 1, 5), ($3, 7, 7, 7)", mid, top, stranger)
        await store.write_pairs(conn, [(mid, buyer), (mid2, promo_buyer), (top, stranger)])
        await store.write_new_orders(conn, [(ids("o1"), buyer, T0)])
        await conn.execute("INSERT INTO plans VALUES (2, '{}', 'op', $1, $2), (1, '{}', 'op', $3, $4)",
                           T0, ev(), T0 - timedelta(days=1), ev())

        buyers = {buyer, buyer2, promo_buyer}
        orders = [ids("o1"), ids("o2")]
        got = await store.load_payment_state(conn, buyers, orders)

        # the per-table loads, as the projection made them before
        rows = await store.load_bindings(conn, buyers)
        users = set(buyers)
        ups = {r["promoter_id"] for r in rows} - users
        users |= ups
        rows += await store.load_bindings(conn, ups)
        users |= {r["promoter_id"] for r in rows}
        assert sorted(got.bindings) == sorted((r["customer_id"], r["bound_at"], r["seq"], r["promoter_id"]) for r in rows)
        assert sorted(got.statuses) == sorted((r["promoter_id"], r["changed_at"], r["seq"], r["status"], r["until"])
                                              for r in await store.load_statuses(conn, users))
        assert sorted(got.tiers) == sorted((r["promoter_id"], r["effective_at"], r["seq"], r["to_tier"])
                                           for r in await store.load_tiers(conn, users))
        assert got.records == await store.load_records(conn, users) and stranger not in got.records
        assert got.known_orders == await store.known_orders(conn, orders) == {ids("o1")}
        assert got.plan_versions == [(r["plan_version"], r["published_at"]) for r in await store.plan_versions(conn)]
        assert got.plan_versions == [(1, T0 - timedelta(days=1)), (2, T0)]
        # every pair a batch can ask about (referrer of a buyer, buyer) is answered as the table does
        asked = [(mid, buyer), (mid2, buyer), (mid, buyer2), (mid2, promo_buyer)]
        assert {p for p in asked if p in got.pairs} == await store.load_pairs(conn, asked) == {(mid, buyer), (mid2, promo_buyer)}
        assert (top, stranger) not in got.pairs
    finally:
        await conn.close()
