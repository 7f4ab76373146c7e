"""Enrolment in every merchant mode (by application, by operator, by first order and by spend
from the order topic), and the promoter's team views with masked personal data."""
from __future__ import annotations

from datetime import timedelta

import pytest

from shared.contracts.orders import OrderLine, OrderPaid, OrderRefunded, RefundedLine
from shared.topics import ORDER_EVENTS
from tests.conftest import eventually
from tests.integration.referral.conftest import bind, designate, enrol, outbox_events, publish

pytestmark = pytest.mark.integration


def paid(order_id: str, buyer: str, fen: int, at, postage: int = 0) -> OrderPaid:
    return OrderPaid(order_id=order_id, buyer_id=buyer, postage_fen=postage, total_fen=fen + postage,
                     transaction_id="tx-" + order_id, paid_at=at,
                     lines=(OrderLine(line_id="1", product_id="p1", quantity=1, unit_price_fen=fen, paid_fen=fen),))


async def set_mode(svc, **changes):
    r = await svc.client.put("/v1/admin/settings", json=changes, headers=svc.admin())
    assert r.status_code == 200, r.text
    return r.json()


async def test_enrolment_by_application(make_svc, ids, db_conn, fresh_schema):
    async with make_svc(enrolment_mode="application") as svc:
        u = ids("u")
        r = await svc.client.post("/v1/promoters", json={}, headers=svc.who(u))
        assert (r.status_code, r.json()["code"]) == (409, "application_required")
        r = await svc.client.post("/v1/promoters/applications", json={"note": "我想分享", "nickname": "赵六"}, headers=svc.who(u))
        assert r.status_code == 201 and r.json()["state"] == "pending"
        r = await svc.client.post("/v1/promoters/applications", json={}, headers=svc.who(u))
        assert (r.status_code, r.json()["code"]) == (409, "application_pending")

        pending = await svc.client.get("/v1/admin/applications", params={"state": "pending"}, headers=svc.admin())
        assert [a["user_id"] for a in pending.json()] == [u]
        r = await svc.client.post(f"/v1/admin/applications/{u}/decision", json={"approved": False}, headers=svc.admin())
        assert (r.status_code, r.json()["code"]) == (422, "reason_required")
        r = await svc.client.post(f"/v1/admin/applications/{u}/decision", json={"approved": False}, headers=svc.who(u))
        assert r.status_code == 403  # only an operator decides
        r = await svc.client.post(f"/v1/admin/applications/{u}/decision", json={"approved": False, "reason": "资料不全"},
                                  headers=svc.admin())
        assert r.status_code == 200 and r.json()["state"] == "rejected" and r.json()["reason"] == "资料不全"

        assert (await svc.client.post("/v1/promoters/applications", json={"note": "补充了资料"}, headers=svc.who(u))).status_code == 201
        r = await svc.client.post(f"/v1/admin/applications/{u}/decision", json={"approved": True}, headers=svc.admin())
        assert r.status_code == 200 and r.json()["state"] == "approved"
        me = (await svc.client.get("/v1/promoters/me", headers=svc.who(u))).json()
        assert me["promoter"]["enrolled_by"] == "application" and me["promoter"]["status"] == "active"
        assert me["application"]["state"] == "approved"

    kinds = [(e["event_type"], e["key"]) for e in await outbox_events(db_conn, fresh_schema)]
    assert kinds == [("PromoterApplicationSubmitted", u), ("PromoterApplicationDecided", u),
                     ("PromoterApplicationSubmitted", u), ("PromoterApplicationDecided", u), ("PromoterEnrolled", u)]
    decided = await outbox_events(db_conn, fresh_schema, "PromoterApplicationDecided")
    assert [(d["payload"]["approved"], d["payload"]["reason"]) for d in decided] == [(False, "资料不全"), (True, None)]


async def test_enrolment_by_operator_only(make_svc, ids):
    async with make_svc(enrolment_mode="operator") as svc:
        u = ids("u")
        r = await svc.client.post("/v1/promoters", json={}, headers=svc.who(u))
        assert (r.status_code, r.json()["code"]) == (403, "designation_required")
        r = await svc.client.post(f"/v1/admin/promoters/{u}/designate", json={}, headers=svc.who(u))
        assert r.status_code == 403
        code = await designate(svc, u, "钱七")
        r = await svc.client.post(f"/v1/admin/promoters/{u}/designate", json={}, headers=svc.admin())
        assert (r.status_code, r.json()["code"]) == (409, "already_promoter")
        me = (await svc.client.get("/v1/promoters/me", headers=svc.who(u))).json()
        assert me["promoter"]["code"] == code and me["promoter"]["enrolled_by"] == "operator"


async def test_first_paid_order_enrols_the_buyer(make_svc, ids, infra, db_conn, fresh_schema):
    async with make_svc() as svc:
        early, buyer = ids("early"), ids("buyer")
        # paid before the merchant switched to first-order mode: not enrolled automatically ...
        await publish(infra["kafka"], ORDER_EVENTS, paid(ids("o0"), early, 500, svc.clock.now - timedelta(hours=1)))
        await set_mode(svc, enrolment_mode="first_order")
        r = await svc.client.post("/v1/promoters", json={}, headers=svc.who(buyer))
        assert (r.status_code, r.json()["code"]) == (403, "not_eligible")

        order_evt = await _publish_and_get(infra, paid(ids("o1"), buyer, 100, svc.clock.now))

        async def enrolled():
            return (await svc.client.get("/v1/promoters/me", headers=svc.who(buyer))).json()["promoter"]
        p = await eventually(enrolled)
        assert p["enrolled_by"] == "first_order" and p["status"] == "active"

        async def early_seen():
            async with svc.app.state.runtime.pool.acquire() as conn:
                return await conn.fetchval("SELECT 1 FROM customer_orders WHERE buyer_id = $1", early)
        await eventually(early_seen)
        assert (await svc.client.get("/v1/promoters/me", headers=svc.who(early))).json()["promoter"] is None
        # ... but eligible on request
        r = await svc.client.post("/v1/promoters", json={}, headers=svc.who(early))
        assert r.status_code == 200 and r.json()["enrolled_by"] == "first_order"

    enrolled_events = {e["key"]: e for e in await outbox_events(db_conn, fresh_schema, "PromoterEnrolled")}
    e = enrolled_events[buyer]
    assert e["causation_id"] == str(order_evt.event_id) and e["payload"]["promoter_code"] == p["code"]


async def _publish_and_get(infra, payload):
    from aiokafka import AIOKafkaProducer

    from shared.events import new_event

    env = new_event(payload)
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(ORDER_EVENTS, env.to_bytes(), key=env.key.encode())
    finally:
        await producer.stop()
    return env


async def test_spend_threshold_counts_goods_net_of_refunds(make_svc, ids, infra):
    async with make_svc(enrolment_mode="spend_threshold", spend_threshold_fen=10_000) as svc:
        steady, refunder = ids("steady"), ids("refunder")
        now = svc.clock.now
        o_r1 = ids("r1")

        async def spend_of(who):
            async with svc.app.state.runtime.pool.acquire() as conn:
                return await conn.fetchrow(
                    "SELECT count(*) AS n, sum(paid_fen - refunded_fen) AS net FROM customer_orders WHERE buyer_id = $1", who)

        # Orders are keyed by order id (different partitions): wait for each step so that the
        # refund is seen before the next order, as it happened.
        steps = [(paid(ids("s1"), steady, 6_000, now, postage=2_000), steady, 1, 6_000),  # postage is not spend
                 (paid(o_r1, refunder, 6_000, now), refunder, 1, 6_000),
                 (OrderRefunded(order_id=o_r1, out_refund_no=ids("rf"), amount_fen=2_000, refunded_at=now,
                                lines=(RefundedLine(line_id="1", quantity=0, amount_fen=2_000),)), refunder, 1, 4_000),
                 (paid(ids("r2"), refunder, 5_000, now), refunder, 2, 9_000)]
        for evt, who, n, net in steps:
            await publish(infra["kafka"], ORDER_EVENTS, evt)
            await eventually(lambda: _when(spend_of(who), lambda r, n=n, net=net: r["n"] == n and r["net"] == net))
        r = await svc.client.post("/v1/promoters", json={}, headers=svc.who(refunder))
        assert (r.status_code, r.json()["code"]) == (403, "not_eligible")
        assert (await svc.client.get("/v1/promoters/me", headers=svc.who(steady))).json()["promoter"] is None

        await publish(infra["kafka"], ORDER_EVENTS, paid(ids("s2"), steady, 4_000, now))

        async def steady_enrolled():
            return (await svc.client.get("/v1/promoters/me", headers=svc.who(steady))).json()["promoter"]
        assert (await eventually(steady_enrolled))["enrolled_by"] == "spend_threshold"


async def _when(coro, pred):
    value = await coro
    return value if value is not None and pred(value) else None


async def test_team_views_are_paginated_masked_and_count_paid_orders(make_svc, ids, infra):
    async with make_svc() as svc:
        p, c1, c2, d = ids("p"), ids("c1"), ids("c2"), ids("d")
        code_p = await enrol(svc, p, "主推广")
        assert (await bind(svc, c1, code_p, nickname="张三")).status_code == 200
        svc.clock.advance(minutes=1)
        assert (await bind(svc, c2, code_p, nickname="李四小龙")).status_code == 200
        code_c1 = await enrol(svc, c1)
        assert (await bind(svc, d, code_c1, nickname="王")).status_code == 200

        now = svc.clock.now
        o1 = ids("o1")
        for evt in (paid(o1, c1, 1_000, now), paid(ids("o2"), c1, 2_000, now), paid(ids("o3"), d, 300, now),
                    paid(ids("old"), c2, 9_999, now - timedelta(days=1)),  # before c2 was bound: not counted
                    OrderRefunded(order_id=o1, out_refund_no=ids("rf"), amount_fen=500, refunded_at=now,
                                  lines=(RefundedLine(line_id="1", quantity=0, amount_fen=500),))):
            await publish(infra["kafka"], ORDER_EVENTS, evt)

        async def level1():
            page = (await svc.client.get("/v1/promoters/me/team", params={"level": 1}, headers=svc.who(p))).json()
            by = {m["nickname"]: m for m in page["items"]}
            # o1 and o2 sit on different partitions: wait for both, not just the refund of o1
            zhang = by.get("张*", {})
            return page if (zhang.get("refunded_fen"), zhang.get("paid_orders")) == (500, 2) else None
        page = await eventually(level1)
        assert page["total"] == 2 and [m["nickname"] for m in page["items"]] == ["李***", "张*"]  # newest first
        zhang = page["items"][1]
        assert (zhang["paid_orders"], zhang["paid_fen"], zhang["refunded_fen"], zhang["net_paid_fen"]) == (2, 3_000, 500, 2_500)
        assert page["items"][0]["paid_orders"] == 0
        text = str(page)
        assert c1 not in text and c2 not in text and "openid" not in text and "phone" not in text

        first = (await svc.client.get("/v1/promoters/me/team", params={"level": 1, "page": 1, "page_size": 1}, headers=svc.who(p))).json()
        second = (await svc.client.get("/v1/promoters/me/team", params={"level": 1, "page": 2, "page_size": 1}, headers=svc.who(p))).json()
        assert [first["total"], second["total"]] == [2, 2]
        assert [m["nickname"] for m in first["items"] + second["items"]] == ["李***", "张*"]

        async def level2():
            pg = (await svc.client.get("/v1/promoters/me/team", params={"level": 2}, headers=svc.who(p))).json()
            return pg if pg["items"] and pg["items"][0]["paid_orders"] == 1 else None
        l2 = await eventually(level2)
        assert l2["total"] == 1 and l2["items"][0]["nickname"] == "*" and l2["items"][0]["via_nickname"] == "张*"
        assert l2["items"][0]["paid_fen"] == 300

        r = await svc.client.get("/v1/promoters/me/team", params={"level": 3}, headers=svc.who(p))
        assert r.status_code == 422
        r = await svc.client.get("/v1/promoters/me/team", headers=svc.who(c2))
        assert (r.status_code, r.json()["code"]) == (403, "not_a_promoter")
