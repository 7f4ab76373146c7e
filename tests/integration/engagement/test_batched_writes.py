"""The engagement projection writes a batch in a fixed number of statements, whatever its size:
at a sale's rate (thousands of accruals a second) a statement per notice, per first purchase and
per honour made the projection fall minutes behind the commission it announces. Checked here
against the rules the per-row statements kept: a promoter's notice ids follow the events' order
with no repeat, the earliest purchase wins, an honour is awarded once."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.engagement.domain.notices import Notice
from services.engagement.handlers.activity import ActivityProjection
from services.engagement.main import MIGRATIONS
from services.engagement.store import facts, notices
from shared.contracts.commission import CommissionAccrued
from shared.events import new_event
from shared.projector import Applied, Batch
from tests.conftest import migrated, statements_of

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
TEMPLATE = "tmplBatch00000000001"


@pytest.fixture
async def conn(infra, fresh_schema):
    async with migrated(infra["db"], fresh_schema, MIGRATIONS) as c:
        yield c


def _notice(promoter: str, i: int) -> Notice:
    return Notice(promoter, "commission_accrued", f"n{i}", "body", 100 + i, T0 + timedelta(seconds=i), "待结算", f"o{i}")


async def test_a_batch_of_notices_numbers_each_promoters_in_event_order(conn):
    """Random batches over a few promoters, with events repeated inside a batch and across
    batches: every promoter's ids are 1, 2, 3... in the order the new events were given, and a
    repeat gets no notice."""
    rnd = random.Random(5)
    promoters = ["pa", "pb", "pc"]
    seen: dict[uuid.UUID, str] = {}
    expected: dict[str, list[uuid.UUID]] = {p: [] for p in promoters}
    i = 0
    for _ in range(6):
        told = []
        for _ in range(rnd.randrange(1, 40)):
            if seen and rnd.random() < 0.2:
                eid = rnd.choice(list(seen))  # delivered again
                told.append((eid, _notice(seen[eid], i)))
            else:
                eid, p = uuid.uuid4(), rnd.choice(promoters)
                told.append((eid, _notice(p, i)))
            i += 1
        got = []
        async with conn.transaction():
            got = await notices.add_notices(conn, told)
        assert len(got) == len(told)
        for (eid, n), notice_id in zip(told, got):
            if eid in seen:
                assert notice_id is None  # noticed before, or earlier in this batch
                continue
            seen[eid] = n.promoter_id
            expected[n.promoter_id].append(eid)
            assert notice_id == len(expected[n.promoter_id])
    for p in promoters:
        rows = await conn.fetch("SELECT notice_id, source_event_id FROM notices WHERE promoter_id = $1 ORDER BY notice_id", p)
        assert [r["source_event_id"] for r in rows] == expected[p]
        assert [r["notice_id"] for r in rows] == list(range(1, len(rows) + 1))
    assert await notices.add_notices(conn, []) == []


async def test_a_batch_of_first_purchases_keeps_the_earliest(conn):
    """Against a model of the per-row rule on random rows (pairs repeated within and across
    batches, ties included): the stored first purchase per pair and the new customers reported."""
    rnd = random.Random(11)
    model: dict[tuple[str, str], tuple[datetime, str]] = {}
    for b in range(8):
        rows = []
        for j in range(rnd.randrange(1, 60)):
            p, c = f"p{rnd.randrange(4)}", f"c{rnd.randrange(12)}"
            rows.append((p, c, f"o{b}-{j}", T0 + timedelta(minutes=rnd.randrange(0, 30))))
        want_new: list[str] = []
        for p, c, o, at in rows:
            if (p, c) not in model:
                model[(p, c)] = (at, o)
                want_new.append(p)
            elif at < model[(p, c)][0]:
                model[(p, c)] = (at, o)
        async with conn.transaction():
            got_new = await facts.add_first_purchases(conn, rows)
        assert sorted(got_new) == sorted(want_new)
    stored = {(r["promoter_id"], r["buyer_id"]): (r["at"], r["order_id"])
              for r in await conn.fetch("SELECT promoter_id, buyer_id, order_id, at FROM first_purchases")}
    assert stored == model
    assert await facts.add_first_purchases(conn, []) == []


def _accrued(promoter: str, buyer: str, n: int) -> Applied:
    p = CommissionAccrued(accrual_id=f"a{n}", order_id=f"o{n}", line_id="l1", beneficiary_id=promoter, buyer_id=buyer,
                          level="level1", base_fen=10_000, quantity=1, rate_bp=1000, amount_fen=1_000, plan_version=1,
                          tier="sharer", unfreeze="order_completed+7d", paid_at=T0 + timedelta(seconds=n))
    return Applied(new_event(p), p, "commission", 0, n, {})


async def test_a_batch_takes_as_many_statements_whatever_its_size(conn):
    """First sales of new promoters (a notice, a first purchase and a first-sale honour each):
    10 and 300 of them in one batch take the same statements, and every one is there."""
    proj = ActivityProjection()
    await notices.put_template(conn, "commission_accrued", TEMPLATE, "pages/earnings/index",
                               {"thing1": "title", "amount2": "amount", "time3": "time", "phrase4": "status"}, True, "op")
    counts = []
    n = 0
    # the first batch warms the connection's statement cache (its type lookups are statements too)
    for size in (5, 10, 300):
        events = []
        for _ in range(size):
            events.append(_accrued(f"p{n}", f"c{n}", n))
            n += 1
        # the batch's first promoter has accepted one subscribe message (the others none)
        await conn.execute("INSERT INTO subscriptions (promoter_id, template_id, openid, accepted) VALUES ($1, $2, $3, 1)",
                           events[0].payload.beneficiary_id, TEMPLATE, f"openid-{n}")
        batch = Batch(events=events)
        with statements_of(conn) as statements:
            async with conn.transaction():
                await proj.apply(conn, batch)
        counts.append(len(statements))
        promoters = [a.payload.beneficiary_id for a in events]
        assert await conn.fetchval("SELECT count(*) FROM notices WHERE promoter_id = ANY($1::text[]) AND kind = "
                                   "'commission_accrued'", promoters) == size
        assert await conn.fetchval("SELECT count(*) FROM first_purchases WHERE promoter_id = ANY($1::text[])", promoters) == size
        assert await conn.fetchval("SELECT count(*) FROM honours WHERE promoter_id = ANY($1::text[]) AND honour_key = "
                                   "'first_sale'", promoters) == size
        # each promoter: the accrual's notice first, then the honour's
        kinds = await conn.fetch("SELECT promoter_id, notice_id, kind FROM notices WHERE promoter_id = ANY($1::text[]) "
                                 "ORDER BY promoter_id, notice_id", promoters)
        assert {(r["notice_id"], r["kind"]) for r in kinds} == {(1, "commission_accrued"), (2, "honour_awarded")}
        sends = await conn.fetch("SELECT promoter_id, notice_id FROM subscribe_sends WHERE promoter_id = ANY($1::text[])",
                                 promoters)
        assert [(r["promoter_id"], r["notice_id"]) for r in sends] == [(events[0].payload.beneficiary_id, 1)]
        assert sum(1 for e in batch.emitted if e.headers.get("event_type") == "HonourAwarded") == size
    assert counts[1] == counts[2], counts
