"""The earnings dashboard (Asia/Shanghai periods, the share funnel), announcements with read
tracking, tier perks claimed once under concurrent claims, and each promoter seeing only
their own."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from shared.contracts.commission import CommissionReversed, PromoterTierChanged
from shared.contracts.orders import OrderLine, OrderPaid
from shared.contracts.payout import WithdrawalPaid, WithdrawalRequested
from shared.contracts.referral import PromoterLinkVisited, PromoterShareMade, ReferralBound
from tests.conftest import eventually
from tests.integration.engagement.conftest import outbox_events, uid

pytestmark = pytest.mark.integration


async def test_the_dashboard_sums_money_by_state_and_follows_a_share_to_paid_orders(make_svc, events):
    p, now = uid("p"), datetime.now(timezone.utc)
    async with make_svc() as svc:
        for i in range(2):
            await events.send(PromoterShareMade(promoter_id=p, source="poster", product_id="tea", made_at=now))
        for v in ("v1", "v2", "v3", "v3"):
            await events.send(PromoterLinkVisited(promoter_id=p, promoter_code="c0de", visitor_id=f"{p}-{v}", source="poster",
                                                  product_id="tea", first_visit=True, visited_at=now))
        for v in ("v1", "v2"):
            await events.send(ReferralBound(customer_id=f"{p}-{v}", promoter_id=p, promoter_code="c0de", source="poster",
                                            product_id="tea", mode="first_touch", bound_at=now))
        await events.send(OrderPaid(order_id=f"{p}-o1", buyer_id=f"{p}-v1", lines=(OrderLine(
            line_id="l1", product_id="tea", quantity=1, unit_price_fen=10_000, paid_fen=10_000),), postage_fen=0,
            total_fen=10_000, transaction_id="tx1", paid_at=now))
        await events.send(OrderPaid(order_id=f"{p}-o2", buyer_id="someone", lines=(OrderLine(
            line_id="l1", product_id="cup", quantity=2, unit_price_fen=10_000, paid_fen=20_000),), postage_fen=0,
            total_fen=20_000, transaction_id="tx2", paid_at=now))
        await events.accrue(p, 1_000, buyer=f"{p}-v1", order_id=f"{p}-o1")
        await events.accrue(p, 2_000, level="level2", order_id=f"{p}-o2")
        await events.settle(p, 1_000, order_id=f"{p}-o1")
        await events.send(CommissionReversed(accrual_id="x", order_id=f"{p}-o2", line_id="l1", beneficiary_id=p,
                                             out_refund_no="rf1", amount_fen=500, from_status="frozen", reversed_at=now))
        # a withdrawal as payout publishes it, requested then paid: these land on the session's real
        # payout topic, which other tests' payout ledgers fold too (a payment of nothing reserved
        # would break their reserved_fen >= 0)
        await events.send(WithdrawalRequested(withdrawal_id=f"{p}-w1", promoter_id=p, amount_fen=800, fee_fen=0,
                                              requested_at=now))
        await events.send(WithdrawalPaid(withdrawal_id=f"{p}-w1", promoter_id=p, amount_fen=800, fee_fen=0,
                                         out_bill_no="b1", paid_at=now))

        async def dashboard():
            d = (await svc.client.get("/v1/me/dashboard", headers=svc.who(p))).json()
            done = d["balance"] == {"frozen_fen": 1_500, "settled_fen": 1_000, "withdrawn_fen": 800, "reversed_fen": 500}
            f = d["funnel"][0] if d["funnel"] else {}
            # events of several partitions: wait until all have been applied
            return d if done and (f.get("visits"), f.get("binds"), f.get("paid_orders"), f.get("shares")) == (3, 2, 1, 2) \
                and {t["product_id"] for t in d["top_products"]} == {"cup", "tea"} else None
        d = await eventually(dashboard, timeout=60)
        assert d["timezone"] == "Asia/Shanghai"
        assert d["balance"] == {"frozen_fen": 1_500, "settled_fen": 1_000, "withdrawn_fen": 800, "reversed_fen": 500}
        today = next(x for x in d["periods"] if x["period"] == "today")
        assert (today["accrued_fen"], today["settled_fen"], today["reversed_fen"], today["withdrawn_fen"]) == (3_000, 1_000, 500, 800)
        assert {x["period"] for x in d["periods"]} == {"today", "week", "month", "all"}
        assert d["by_day"][-1]["accrued_fen"] == 3_000
        assert d["top_products"] == [{"product_id": "cup", "orders": 1, "earned_fen": 1_500},  # net of the reversal
                                     {"product_id": "tea", "orders": 1, "earned_fen": 1_000}]
        assert d["funnel"] == [{"source": "poster", "product_id": "tea", "shares": 2, "visits": 3, "binds": 2, "paid_orders": 1}]


async def test_a_perk_is_claimed_once_even_with_concurrent_claims(make_svc, events):
    p, tier = uid("p"), "合伙人"
    async with make_svc() as svc:
        r = await svc.client.post("/v1/admin/perks", headers=svc.admin(),
                                  json={"perk_id": uid("gift"), "tier": tier, "kind": "gift_pack", "title": "中秋礼盒"})
        assert r.status_code == 201
        change = await events.send(PromoterTierChanged(promoter_id=p, from_tier="分享家", to_tier=tier, rule="settled>=1000",
                                                       effective_at=datetime.now(timezone.utc)))
        await events.send(env=change)  # replayed: granted once

        async def granted():
            return (await svc.client.get("/v1/me/perks", headers=svc.who(p))).json() or None
        [grant] = await eventually(granted, timeout=60)
        assert grant["claimed_at"] is None and grant["title"] == "中秋礼盒"

        url = f"/v1/me/perks/{grant['grant_id']}/claim"
        answers = await asyncio.gather(*[svc.client.post(url, headers={**svc.who(p), "Idempotency-Key": f"k{i}"})
                                         for i in range(12)])
        codes = sorted(a.status_code for a in answers)
        assert codes == [201] + [409] * 11, codes
        winner = next(a for a in answers if a.status_code == 201)
        key = winner.request.headers["Idempotency-Key"]
        again = await svc.client.post(url, headers={**svc.who(p), "Idempotency-Key": key})
        assert again.status_code == 200 and again.json()["claimed_at"] == winner.json()["claimed_at"]
        claimed = [e for e in await outbox_events(svc, "PerkClaimed") if e["payload"]["promoter_id"] == p]
        assert len(claimed) == 1 and claimed[0]["payload"]["idempotency_key"] == key
        granted_events = [e for e in await outbox_events(svc, "PerkGranted") if e["payload"]["promoter_id"] == p]
        assert len(granted_events) == 1
        assert (await svc.client.post(url, headers=svc.who(p))).status_code == 400  # no idempotency key


async def test_a_promoter_cannot_read_another_promoters_dashboard_or_perks(make_svc, events):
    me, other, tier = uid("me"), uid("other"), "区域经理"
    async with make_svc() as svc:
        await svc.client.post("/v1/admin/perks", headers=svc.admin(),
                              json={"perk_id": uid("trial"), "tier": tier, "kind": "trial", "title": "新品试用"})
        await events.send(PromoterTierChanged(promoter_id=other, from_tier="合伙人", to_tier=tier, rule="r",
                                              effective_at=datetime.now(timezone.utc)))
        await events.accrue(other, 4_200)

        async def theirs():
            return (await svc.client.get("/v1/me/perks", headers=svc.who(other))).json() or None
        [grant] = await eventually(theirs, timeout=60)

        r = await svc.client.get(f"/v1/promoters/{other}/dashboard", headers=svc.who(me))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert (await svc.client.get(f"/v1/promoters/{other}/dashboard", headers=svc.admin())).status_code == 200
        assert (await svc.client.get("/v1/me/perks", headers=svc.who(me))).json() == []
        r = await svc.client.post(f"/v1/me/perks/{grant['grant_id']}/claim", headers={**svc.who(me), "Idempotency-Key": "x"})
        assert r.status_code == 404
        mine = (await svc.client.get("/v1/me/dashboard", headers=svc.who(me))).json()
        assert mine["balance"]["frozen_fen"] == 0 and mine["promoter_id"] == me
        assert (await svc.client.get("/v1/me/dashboard")).status_code == 401


async def test_announcements_are_read_tracked(make_svc):
    a, b = uid("a"), uid("b")
    async with make_svc() as svc:
        r = await svc.client.post("/v1/admin/announcements", headers=svc.admin(),
                                  json={"kind": "training", "title": "海报分享技巧", "body": "……"})
        assert r.status_code == 201
        aid = r.json()["announcement_id"]
        assert (await svc.client.post("/v1/admin/announcements", headers=svc.who(a), json={"title": "x", "body": "y"})).status_code == 403
        listed = (await svc.client.get("/v1/announcements", headers=svc.who(a))).json()
        assert listed[0]["announcement_id"] == aid and listed[0]["read_at"] is None
        for _ in range(2):
            assert (await svc.client.post(f"/v1/announcements/{aid}/read", headers=svc.who(a))).status_code == 204
        assert (await svc.client.get("/v1/announcements", headers=svc.who(a))).json()[0]["read_at"] is not None
        assert (await svc.client.get("/v1/announcements", headers=svc.who(b))).json()[0]["read_at"] is None
        stats = (await svc.client.get("/v1/admin/announcements", headers=svc.admin())).json()
        assert [s["reads"] for s in stats if s["announcement_id"] == aid] == [1]
        published = await outbox_events(svc, "AnnouncementPublished")
        assert [e["payload"]["announcement_id"] for e in published] == [aid]
        assert (await svc.client.post(f"/v1/announcements/{'0' * 8}-0000-0000-0000-{'0' * 12}/read",
                                      headers=svc.who(a))).status_code == 404


