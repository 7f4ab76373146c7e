"""Held order events come back in bounded steps: the earliest-paid orders first, each with every
event held for it, and nothing taken twice or left behind."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from services.commission.store import state as store

pytestmark = pytest.mark.integration


async def test_release_in_steps_takes_the_earliest_paid_orders_with_their_follow_ups(dbc):
    rnd = random.Random(7)
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    paid = {f"o{i}": t0 + timedelta(seconds=rnd.randrange(10_000)) for i in range(40)}
    rows = []
    for oid, at in rnd.sample(sorted(paid.items()), len(paid)):  # held in arrival order, not paid order
        rows.append((oid, at, f"paid {oid}".encode(), rnd.randrange(4)))
        if rnd.random() < 0.4:
            rows.append((oid, None, f"refund {oid}".encode(), rows[-1][3]))
    # a follow-up whose payment was already released by another worker: it goes with the first step
    rows.append(("gone", None, b"refund gone", 1))
    await store.defer(dbc, rows)
    cutoff = sorted(paid.values())[29]  # 30 orders may go; 10 are paid too late for now

    steps = []
    while got := await store.release_deferred(dbc, cutoff, None, 7):
        steps.append(got)
    taken = [r["order_id"] for step in steps for r in step]
    orders = [{r["order_id"] for r in step if not r["order_id"] == "gone"} for step in steps]

    assert [len(o) for o in orders] == [7, 7, 7, 7, 2]
    assert "gone" in {r["order_id"] for r in steps[0]}
    # earliest paid first: every order of a step was paid no later than any order of a later step
    for a, b in zip(orders, orders[1:]):
        assert max(paid[o] for o in a) <= min(paid[o] for o in b)
    # each order's events come together, in arrival order, once
    expected = [r for r in rows if r[0] == "gone" or paid.get(r[0], cutoff + timedelta(1)) <= cutoff]
    assert sorted(taken) == sorted(r[0] for r in expected)
    for step in steps:
        assert [r["seq"] for r in step] == sorted(r["seq"] for r in step)
        for oid in {r["order_id"] for r in step}:
            assert [r["envelope"] for r in step if r["order_id"] == oid] == [r[2] for r in rows if r[0] == oid]
    # the rest waits; without a limit it all goes at once
    left = await store.release_deferred(dbc, None, None)
    assert {r["order_id"] for r in left} == {o for o, at in paid.items() if at > cutoff}
    assert not await store.any_deferred(dbc, None)
