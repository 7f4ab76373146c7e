"""The HTTP API: plan publishing (admin only, refused with a reason), versions, balances,
pagination and the estimate."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.commission.main import create_app
from shared.contracts.orders import OrderLine, OrderPaid
from shared.contracts.referral import PromoterEnrolled, ReferralBound
from tests.conftest import eventually, running_app
from tests.integration.commission.conftest import PLAN, next_boundary, now, settings, who

pytestmark = pytest.mark.integration


async def test_plan_is_admin_only_refused_with_a_reason_and_versioned(schema, dbc):
    async with running_app(create_app(settings(), schema=schema)) as client:
        assert (await client.get("/v1/admin/plan", headers=who("op", "plan_admin"))).status_code == 404
        assert (await client.put("/v1/admin/plan", json=PLAN, headers=who("someone"))).status_code == 403
        assert (await client.put("/v1/admin/plan", json=PLAN)).status_code == 401
        over = {**PLAN, "tiers": [{"name": "t", "level1_bp": 2600, "level2_bp": 500}]}
        r = await client.put("/v1/admin/plan", json=over, headers=who("op", "plan_admin"))
        assert r.status_code == 422 and r.json()["code"] == "plan_over_cap", r.text
        r = await client.put("/v1/admin/plan", json={**PLAN, "levels": 3}, headers=who("op", "plan_admin"))
        assert r.status_code == 422 and r.json()["code"] == "third_level_forbidden"
        r = await client.put("/v1/admin/plan", json={**PLAN, "cap_bp": 5000}, headers=who("op", "plan_admin"))
        assert r.status_code == 422 and r.json()["code"] == "cap_above_ceiling"
        assert await dbc.fetchval("SELECT count(*) FROM plans") == 0
        assert await dbc.fetchval("SELECT count(*) FROM outbox") == 0

        r1 = await client.put("/v1/admin/plan", json=PLAN, headers=who("op", "plan_admin"))
        r2 = await client.put("/v1/admin/plan", json={**PLAN, "freeze_days": 15}, headers=who("op2", "plan_admin"))
        assert (r1.status_code, r2.status_code) == (201, 201)
        assert (r1.json()["plan_version"], r2.json()["plan_version"]) == (1, 2)
        got = (await client.get("/v1/admin/plan", headers=who("op", "plan_admin"))).json()
        assert got["plan_version"] == 2 and got["plan"]["freeze_days"] == 15 and got["published_by"] == "op2"
        assert got["hard_cap_bp"] == 3000
        # published through the outbox, in the same transaction
        events = await dbc.fetch("SELECT key FROM outbox ORDER BY seq")
        assert [e["key"] for e in events] == ["default", "default"]
        await eventually(lambda: dbc.fetchval("SELECT count(*) = 0 FROM outbox_pending"))


async def test_records_are_paginated_and_filtered(schema, feed, ids):
    p, buyer = ids("p"), ids("b")
    t = now() - timedelta(hours=1)
    async with running_app(create_app(settings(tier_epoch_s=1), schema=schema)) as client:
        assert (await client.put("/v1/admin/plan", json=PLAN, headers=who("op", "plan_admin"))).status_code == 201
        # tiers move at epoch boundaries (1 s here): orders 1-3 in one epoch, 4-5 in the next
        boundary = next_boundary(1)
        times = [boundary - timedelta(milliseconds=500 - 10 * i) for i in range(3)] + [boundary + timedelta(milliseconds=300)] * 2
        await feed.send(PromoterEnrolled(promoter_id=p, promoter_code="x", enrolled_by="everyone", enrolled_at=t))
        await feed.send(ReferralBound(customer_id=buyer, promoter_id=p, promoter_code="x", source="qr", mode="first_touch", bound_at=t))
        for i in range(5):
            lines = tuple(OrderLine(line_id=f"l{j}", product_id="sku", quantity=1, unit_price_fen=1000, paid_fen=1000) for j in range(2))
            await feed.send(OrderPaid(order_id=ids(f"o{i}"), buyer_id=buyer, lines=lines, postage_fen=0, total_fen=2000,
                                      transaction_id=f"tx{i}", paid_at=times[i]))

        async def all_in():
            r = (await client.get("/v1/promoters/me/commissions?limit=200", headers=who(p))).json()
            return len(r["items"]) == 10

        await eventually(all_in)
        seen, cursor = [], None
        while True:
            q = "/v1/promoters/me/commissions?limit=3&status=frozen" + (f"&cursor={cursor}" if cursor else "")
            page = (await client.get(q, headers=who(p))).json()
            seen += [i["accrual_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(set(seen)) == 10
        none = (await client.get("/v1/promoters/me/commissions?status=settled", headers=who(p))).json()
        assert none["items"] == []
        later = (await client.get("/v1/promoters/me/commissions", params={"from": (boundary + timedelta(days=1)).isoformat()},
                                  headers=who(p))).json()
        assert later["items"] == []
        bad = await client.get("/v1/promoters/me/commissions?cursor=nonsense", headers=who(p))
        assert bad.status_code == 400 and bad.json()["code"] == "bad_cursor"
        me = (await client.get("/v1/promoters/me/balance", headers=who(p))).json()
        assert me["promoter_id"] == p
        items = (await client.get("/v1/promoters/me/commissions?limit=200", headers=who(p))).json()["items"]
        # min_orders 3: orders 1-3 at sharer (10 %), 4-5 at partner (20 %)
        assert sorted(i["amount_fen"] for i in items) == [100] * 6 + [200] * 4
        await eventually(lambda: _frozen(client, p, 1400))
        # a stranger sees only their own (empty) records
        assert (await client.get("/v1/promoters/me/commissions", headers=who(ids("x")))).json()["items"] == []


async def _frozen(client, p, fen):
    return (await client.get("/v1/promoters/me/balance", headers=who(p))).json()["frozen_fen"] == fen
