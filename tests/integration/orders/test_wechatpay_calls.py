"""Orders' outgoing WeChat Pay calls against the stand-in over real HTTP (real Kafka and
PostgreSQL): JSAPI prepay and wx.requestPayment, close before cancel (and the payment that
races it), recovery of a lost notice by query, refund submission with an unknown outcome."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from services.orders.domain.wechatpay import pay_sign_message
from shared.wechatpay import verify
from tests.conftest import eventually

pytestmark = pytest.mark.integration


def no(ids, tag: str) -> str:
    return ids(tag).replace("-", "")


def merchant_public_key(pay):
    return serialization.load_pem_private_key(pay.merchant_private_pem.encode(), None).public_key()


async def test_placing_an_order_makes_the_prepay_and_paysign_verifies_with_the_merchant_key(paying, ids):
    buyer, openid = ids("buyer"), ids("oBuyer")
    order = await paying.place(buyer, no(ids, "T"), openid=openid)
    params = order["payment"]
    assert params and params["signType"] == "RSA" and params["package"].startswith("prepay_id=")
    assert params["appId"] == paying.pay.appid and params["timeStamp"].isdigit() and len(params["nonceStr"]) <= 32
    message = pay_sign_message(params["appId"], params["timeStamp"], params["nonceStr"], params["package"])
    assert verify(merchant_public_key(paying.pay), message, params["paySign"])
    assert not verify(merchant_public_key(paying.pay), message.replace(b"prepay_id=", b"prepay_id=x"), params["paySign"])

    trade = paying.pay.trades[order["out_trade_no"]]
    sent = trade.request
    assert sent["payer"] == {"openid": openid} and sent["amount"] == {"total": order["total_fen"], "currency": "CNY"}
    assert sent["notify_url"] == paying.notify_url and sent["out_trade_no"] == order["out_trade_no"]
    assert datetime.fromisoformat(sent["time_expire"]) == datetime.fromisoformat(order["pay_before"]).replace(microsecond=0)

    # asking again reuses the prepay (no second JSAPI order), with freshly signed parameters
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/payment", headers=paying.who(buyer, openid=openid))
    assert r.status_code == 200, r.text
    again = r.json()["params"]
    assert again["package"] == params["package"] and trade.prepay_calls == 1
    assert verify(merchant_public_key(paying.pay), pay_sign_message(again["appId"], again["timeStamp"],
                                                                    again["nonceStr"], again["package"]),
                  again["paySign"])
    # someone else cannot pay (or see) it
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/payment", headers=paying.who("other", openid="oX"))
    assert r.status_code == 404

    # the buyer pays in the mini-program: WeChat checks paySign and notifies orders
    _, resp = await paying.pay.request_payment(again)
    assert resp is not None and resp.status_code == 204, resp.text if resp else None
    evs = await paying.events.until_type(order["order_id"], "OrderPaid")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid"]
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/payment", headers=paying.who(buyer, openid=openid))
    assert r.status_code == 409 and r.json()["code"] == "order_already_paid"


async def test_a_prepay_needs_the_openid_and_a_forged_pay_sign_is_refused_by_wechat(paying, ids):
    buyer = ids("buyer")
    order = await paying.place(buyer, no(ids, "T"))          # an identity without openid: no prepay yet
    assert order["payment"] is None and order["out_trade_no"] not in paying.pay.trades
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/payment", headers=paying.who(buyer))
    assert r.status_code == 422 and r.json()["code"] == "openid_required"
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/payment", headers=paying.who(buyer, openid="oB1"))
    assert r.status_code == 200
    params = r.json()["params"]
    from standins.wechat.pay import PayError
    with pytest.raises(PayError) as e:
        await paying.pay.request_payment({**params, "paySign": params["paySign"][:-8] + "AAAAAAA="})
    assert e.value.code == "SIGN_ERROR"


async def test_a_close_that_races_a_payment_yields_order_paid_not_cancelled(paying, ids):
    buyer, openid = ids("buyer"), ids("oB")
    raced = await paying.place(buyer, no(ids, "R"), openid=openid)
    lapsed = await paying.place(buyer, no(ids, "L"), openid=openid)
    never = await paying.place(buyer, no(ids, "Z"))     # no openid: no prepay, WeChat never saw it
    paying.pay.close_races.add(raced["out_trade_no"])   # the buyer pays just before our close lands (204 anyway)
    paying.clock.advance(minutes=31)

    evs = await paying.events.until_type(raced["order_id"], "OrderPaid")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid"]
    evs = await paying.events.until_type(lapsed["order_id"], "OrderCancelled")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderCancelled"]
    assert evs[1].payload["reason"] == "unpaid_timeout"
    assert paying.pay.trades[lapsed["out_trade_no"]].state == "CLOSED"
    closes = [c for c in paying.pay.calls if c[1].endswith("/close")]
    assert {c[1].split("/")[-2] for c in closes} >= {raced["out_trade_no"], lapsed["out_trade_no"]}
    assert all(c[2] == 204 for c in closes if never["out_trade_no"] not in c[1])
    evs = await paying.events.until_type(never["order_id"], "OrderCancelled")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderCancelled"]
    assert [c[2:] for c in paying.pay.calls if never["out_trade_no"] in c[1]][:2] == [(404, "ORDER_NOT_EXIST")] * 2

    # the raced payment's notice arrives later: acknowledged, nothing new (proven by the next event)
    r = await paying.pay.deliver_payment(paying.notify_url, raced["out_trade_no"], raced["total_fen"])
    assert r.status_code == 204
    r = await paying.http.post(f"/v1/orders/{raced['order_id']}/confirm-receipt", headers=paying.who(buyer))
    assert r.status_code == 200
    evs = await paying.events.until_type(raced["order_id"], "OrderCompleted")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid", "OrderCompleted"]
    # the closed one cannot be paid any more
    from standins.wechat.pay import PayError
    with pytest.raises(PayError) as e:
        paying.pay.settle_payment(paying.pay.trades[lapsed["out_trade_no"]])
    assert e.value.code == "ORDER_CLOSED"


async def test_a_buyer_cancellation_closes_at_wechat_first(paying, ids):
    buyer, openid = ids("buyer"), ids("oB")
    order = await paying.place(buyer, no(ids, "C"), openid=openid)
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/cancel", headers=paying.who(buyer))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert paying.pay.trades[order["out_trade_no"]].state == "CLOSED"

    raced = await paying.place(buyer, no(ids, "D"), openid=openid)
    paying.pay.close_races.add(raced["out_trade_no"])
    r = await paying.http.post(f"/v1/orders/{raced['order_id']}/cancel", headers=paying.who(buyer))
    assert r.status_code == 409 and r.json()["code"] == "order_already_paid", r.text
    evs = await paying.events.until_type(raced["order_id"], "OrderPaid")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid"]


async def test_a_lost_notice_is_recovered_by_query_exactly_once(paying, ids):
    buyer, openid = ids("buyer"), ids("oB")
    order = await paying.place(buyer, no(ids, "N"), openid=openid)
    resource, resp = await paying.pay.request_payment(order["payment"], deliver=False)   # the notice is lost
    assert resp is None
    paying.clock.advance(seconds=paying.settings.payment_query_after_s + 1)
    evs = await paying.events.until_type(order["order_id"], "OrderPaid")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid"]
    assert evs[1].payload["transaction_id"] == resource["transaction_id"]

    # WeChat's notice arrives after all (twice): acknowledged, no second OrderPaid
    for _ in range(2):
        r = await paying.pay.deliver(paying.notify_url, paying.pay.notice("TRANSACTION.SUCCESS", resource))
        assert r.status_code == 204, r.text
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/confirm-receipt", headers=paying.who(buyer))
    assert r.status_code == 200
    evs = await paying.events.until_type(order["order_id"], "OrderCompleted")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid", "OrderCompleted"]


async def _paid(paying, ids, tag="P"):
    buyer, openid = ids("buyer"), ids("oB")
    order = await paying.place(buyer, no(ids, tag), openid=openid)
    _, resp = await paying.pay.request_payment(order["payment"])
    assert resp is not None and resp.status_code == 204
    return order


async def _refund_row(paying, out_refund_no):
    conn = await paying.db()
    try:
        return await conn.fetchrow("SELECT * FROM refunds WHERE out_refund_no = $1", out_refund_no)
    finally:
        await conn.close()


async def test_a_refund_whose_submission_times_out_is_queried_not_resubmitted(paying, ids):
    order = await _paid(paying, ids)
    rno = ids("RF")
    # WeChat creates the refund but answers after our 1 s timeout; it succeeds without a notice
    paying.pay.behave_refund(rno, fault="slow", slow_s=3.0, final="SUCCESS", notify=False)
    r = await paying.http.post(f"/v1/orders/{order['order_id']}/refunds", headers=paying.who("op", "operator"),
                               json={"out_refund_no": rno, "reason": "damaged",
                                     "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 4500},
                                               {"line_id": "2", "quantity": 0, "amount_fen": 500}]})
    assert r.status_code == 201, r.text

    async def unknown_recorded():
        row = await _refund_row(paying, rno)
        return row if row["submit_state"] == "sending" and row["checks"] >= 1 else None

    row = await eventually(unknown_recorded)
    assert "timeout" in row["last_error"] and row["status"] == "pending"
    sent = paying.pay.refund_orders[rno].request
    assert sent["amount"] == {"refund": 5000, "total": order["total_fen"], "currency": "CNY"}
    assert sent["notify_url"] == paying.notify_url and sent["out_trade_no"] == order["out_trade_no"]
    assert [(g["refund_amount"], g["refund_quantity"]) for g in sent["goods_detail"]] == [(4500, 1), (500, 0)]

    paying.clock.advance(seconds=30)
    evs = await paying.events.until_type(order["order_id"], "OrderRefunded")
    assert evs[-1].payload["out_refund_no"] == rno and evs[-1].payload["amount_fen"] == 5000
    row = await _refund_row(paying, rno)
    assert row["status"] == "succeeded" and row["submissions"] == 1
    assert paying.pay.refund_orders[rno].submissions == 1          # WeChat saw one submission
    queries = [c for c in paying.pay.calls if c[0] == "GET" and c[1].endswith("/refunds/" + rno)]
    assert queries, "settled by a query"


async def test_processing_abnormal_and_closed_refunds_follow_wechat(paying, ids):
    order = await _paid(paying, ids)
    op = paying.who("op", "operator")
    url = f"/v1/orders/{order['order_id']}/refunds"
    rno = ids("RP")
    paying.pay.behave_refund(rno, final=None)                         # stays PROCESSING
    r = await paying.http.post(url, headers=op, json={"out_refund_no": rno,
                                                     "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 4500}]})
    assert r.status_code == 201

    async def state(want):
        row = await _refund_row(paying, rno)
        return row if (row["wechat_status"], row["status"]) == want else None

    await eventually(lambda: state(("PROCESSING", "pending")))
    await paying.pay.finish_refund(rno, "ABNORMAL", notify=False)
    paying.clock.advance(seconds=paying.settings.refund_query_after_s + 1)
    await eventually(lambda: state(("ABNORMAL", "abnormal")))
    # abnormal still holds its share of line 1
    over = {"out_refund_no": ids("RX"), "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 4501}]}
    r = await paying.http.post(url, headers=op, json=over)
    assert r.status_code == 422 and r.json()["code"] == "refund_exceeds_remainder"
    await paying.pay.finish_refund(rno, "CLOSED", notify=False)
    paying.clock.advance(seconds=paying.settings.refund_query_after_s * 4)
    await eventually(lambda: state(("CLOSED", "closed")))
    assert paying.pay.refund_orders[rno].submissions == 1
    # closed released the share: the whole line can be refunded again, and this one succeeds by notice
    again = {"out_refund_no": ids("RY"), "lines": [{"line_id": "1", "quantity": 2, "amount_fen": 9000}]}
    assert (await paying.http.post(url, headers=op, json=again)).status_code == 201
    evs = await paying.events.until_type(order["order_id"], "OrderRefunded")
    assert [e.payload["out_refund_no"] for e in evs if e.event_type == "OrderRefunded"] == [again["out_refund_no"]]


async def test_sweepers_never_hand_one_order_or_refund_to_two_replicas(paying, ids):
    from services.orders.store import orders as store

    order_nos = [await paying.place(ids("buyer") + str(i), no(ids, f"S{i}"), openid=f"o{i}") for i in range(6)]
    paying.clock.advance(seconds=1)  # nothing due for the service itself yet (query after 60 s)
    now = paying.clock() + timedelta(seconds=120)
    conns = [await paying.db() for _ in range(2)]
    try:
        txs = [c.transaction() for c in conns]
        for t in txs:
            await t.start()
        a = await store.claim_query_due(conns[0], now, now.replace(year=now.year + 1), 4)
        b = await asyncio.wait_for(store.claim_query_due(conns[1], now, now.replace(year=now.year + 1), 10), 5)
        for t in txs:
            await t.rollback()
    finally:
        for c in conns:
            await c.close()
    ids_a, ids_b = {r["order_id"] for r in a}, {r["order_id"] for r in b}
    assert len(ids_a) == 4 and ids_a.isdisjoint(ids_b) and ids_a | ids_b == {o["order_id"] for o in order_nos}


async def test_a_refund_wechat_refuses_outright_is_closed_and_releases_its_share(paying, ids):
    order = await _paid(paying, ids)
    op, url = paying.who("op", "operator"), f"/v1/orders/{order['order_id']}/refunds"
    rno = ids("RR")
    paying.pay.behave_refund(rno, refuse="INVALID_REQUEST")
    line = {"line_id": "2", "quantity": 1, "amount_fen": 3000}
    assert (await paying.http.post(url, headers=op, json={"out_refund_no": rno, "lines": [line]})).status_code == 201

    async def closed():
        row = await _refund_row(paying, rno)
        return row if row["status"] == "closed" else None

    row = await eventually(closed)
    assert row["submit_state"] == "refused" and "INVALID_REQUEST" in row["last_error"] and row["submissions"] == 1
    assert rno not in paying.pay.refund_orders
    # its share is free again: the whole line can be refunded (and this time WeChat does it)
    again = {"out_refund_no": ids("RS"), "lines": [line]}
    assert (await paying.http.post(url, headers=op, json=again)).status_code == 201
    evs = await paying.events.until_type(order["order_id"], "OrderRefunded")
    assert [e.payload["out_refund_no"] for e in evs if e.event_type == "OrderRefunded"] == [again["out_refund_no"]]
