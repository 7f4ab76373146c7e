"""Order intake and reads over HTTP: idempotent on out_trade_no, refusals name the rule,
buyers see their own orders, promoters the orders carrying their code (buyer masked)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts.referral import PromoterEnrolled
from shared.events import new_event
from shared.topics import REFERRAL_EVENTS
from tests.conftest import eventually

pytestmark = pytest.mark.integration

LINES = [{"product_id": "p1", "quantity": 2, "unit_price_fen": 1000, "paid_fen": 1800}]


def body(no: str, **kw) -> dict:
    return {"out_trade_no": no, "lines": LINES, "postage_fen": 0, "total_fen": 1800, **kw}


async def test_intake_is_idempotent_on_out_trade_no(orders, ids):
    buyer, no = orders.who(ids("buyer")), ids("T").replace("-", "")
    rs = await asyncio.gather(*(orders.http.post("/v1/orders", json=body(no), headers=buyer) for _ in range(10)))
    assert sorted(r.status_code for r in rs) == [200] * 9 + [201]
    assert len({r.json()["order_id"] for r in rs}) == 1
    order_id = rs[0].json()["order_id"]

    r = await orders.http.post("/v1/orders", json=body(no, promoter_code="OTHER"), headers=buyer)
    assert r.status_code == 409 and r.json()["code"] == "out_trade_no_conflict"
    r = await orders.http.post("/v1/orders", json=body(no), headers=orders.who(ids("another-buyer")))
    assert r.status_code == 409

    evs = await orders.events.until_type(order_id, "OrderPlaced")
    placed = evs[0].payload
    assert placed["total_fen"] == 1800 and placed["lines"][0]["paid_fen"] == 1800 and placed["postage_fen"] == 0
    conn = await orders.db()
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1", order_id) == 1
    finally:
        await conn.close()


@pytest.mark.parametrize("change, code", [
    ({"total_fen": 1801}, "lines_do_not_add_up"),
    ({"lines": [{**LINES[0], "paid_fen": 2001}], "total_fen": 2001}, "line_paid_exceeds_price"),
    ({"lines": [{**LINES[0], "quantity": 0}]}, "bad_quantity"),
    ({"lines": [], "total_fen": 0}, "no_lines"),
    ({"total_fen": 18.0}, "invalid_request"),
    ({"out_trade_no": "no"}, "bad_out_trade_no"),
])
async def test_orders_that_do_not_add_up_are_refused_with_a_reason(orders, ids, change, code):
    r = await orders.http.post("/v1/orders", json={**body(ids("T").replace("-", "")), **change},
                               headers=orders.who(ids("buyer")))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code and r.json()["message"]


async def test_buyers_see_their_own_orders_only(orders, ids):
    alice, bob = ids("alice"), ids("bob")
    o = await orders.place(alice, ids("T").replace("-", ""))
    assert (await orders.http.get(f"/v1/orders/{o['order_id']}", headers=orders.who(alice))).status_code == 200
    assert (await orders.http.get(f"/v1/orders/{o['order_id']}", headers=orders.who(bob))).status_code == 404
    assert (await orders.http.get(f"/v1/orders/{o['order_id']}", headers=orders.who("op", "viewer"))).status_code == 200
    assert (await orders.http.get(f"/v1/orders/{o['order_id']}")).status_code == 401
    mine = (await orders.http.get("/v1/orders", headers=orders.who(alice))).json()["orders"]
    assert [x["order_id"] for x in mine] == [o["order_id"]]
    assert (await orders.http.get("/v1/orders", headers=orders.who(bob))).json()["orders"] == []
    assert "/v1/wechatpay/notify" in (await orders.http.get("/openapi.json")).json()["paths"]


async def test_promoter_sees_orders_with_their_code_buyer_masked(orders, ids, infra):
    promoter, code = ids("promoter"), ids("C").replace("-", "")[:12]
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"])
    await producer.start()
    try:
        env = new_event(PromoterEnrolled(promoter_id=promoter, promoter_code=code, enrolled_by="everyone",
                                         enrolled_at=datetime.now(timezone.utc)))
        await producer.send_and_wait(REFERRAL_EVENTS, env.to_bytes(), key=env.key.encode())
    finally:
        await producer.stop()
    buyer = ids("buyer-with-a-long-id")
    mine = await orders.place(buyer, ids("T1").replace("-", ""), promoter_code=code)
    await orders.place(buyer, ids("T2").replace("-", ""), promoter_code="someone-else")

    async def seen():
        r = await orders.http.get("/v1/promoters/me/orders", headers=orders.who(promoter))
        return r.json() if r.json()["orders"] else None

    got = await eventually(seen)
    assert got["promoter_codes"] == [code]
    assert [o["order_id"] for o in got["orders"]] == [mine["order_id"]]
    assert got["orders"][0]["buyer"] != buyer and buyer not in str(got)
    assert (await orders.http.get("/v1/promoters/me/orders", headers=orders.who(buyer))).json()["orders"] == []
