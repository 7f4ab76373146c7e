"""Refunds per line: requested (pending, holding part of the line), confirmed by WeChat's
REFUND.SUCCESS (OrderRefunded, once per out_refund_no), left open by ABNORMAL, released by
CLOSED; never more than what remains refundable, even when requested concurrently."""
from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration


async def paid_order(orders, ids, tag="T"):
    order = await orders.place(ids("buyer"), ids(tag).replace("-", ""))
    r = await orders.pay.deliver_payment(orders.notify_url, order["out_trade_no"], order["total_fen"])
    assert r.status_code == 204, r.text
    return order


async def test_partial_refunds_per_line_are_confirmed_by_refund_notices(orders, ids):
    order = await paid_order(orders, ids)
    oid, no, total, buyer = order["order_id"], order["out_trade_no"], order["total_fen"], order["buyer_id"]
    op = orders.who("operator-1", "operator")
    url = f"/v1/orders/{oid}/refunds"
    r1 = {"out_refund_no": ids("R1"), "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 4500}], "reason": "damaged"}

    r = await orders.http.post(url, json=r1, headers=op)
    assert r.status_code == 201 and r.json()["status"] == "pending" and r.json()["amount_fen"] == 4500, r.text
    assert (await orders.http.post(url, json=r1, headers=op)).status_code == 200           # same request again
    other = {**r1, "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 4000}]}
    assert (await orders.http.post(url, json=other, headers=op)).json()["code"] == "out_refund_no_conflict"

    # WeChat confirms; a repeat of the notice changes nothing
    for _ in range(3):
        r = await orders.pay.deliver_refund(orders.notify_url, no, r1["out_refund_no"], 4500, total)
        assert r.status_code == 204, r.text

    # the buyer asks for a price-only refund on line 2; WeChat first reports it ABNORMAL, then SUCCESS
    r2 = {"out_refund_no": ids("R2"), "lines": [{"line_id": "2", "quantity": 0, "amount_fen": 1000}]}
    assert (await orders.http.post(url, json=r2, headers=orders.who(buyer))).status_code == 201
    r = await orders.pay.deliver_refund(orders.notify_url, no, r2["out_refund_no"], 1000, total, status="ABNORMAL")
    assert r.status_code == 204
    refunds = (await orders.http.get(url, headers=op)).json()
    assert {x["out_refund_no"]: x["status"] for x in refunds}[r2["out_refund_no"]] == "abnormal"
    # abnormal still holds its share: line 2 has 2000 left, not 3000
    over = {"out_refund_no": ids("R2b"), "lines": [{"line_id": "2", "amount_fen": 2001}]}
    r = await orders.http.post(url, json=over, headers=op)
    assert r.status_code == 422 and r.json()["code"] == "refund_exceeds_remainder", r.text
    assert (await orders.pay.deliver_refund(orders.notify_url, no, r2["out_refund_no"], 1000, total)).status_code == 204

    # a refund WeChat closes gives its share back
    r3 = {"out_refund_no": ids("R3"), "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 4500}]}
    assert (await orders.http.post(url, json=r3, headers=op)).status_code == 201
    r4 = {"out_refund_no": ids("R4"), "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 1}]}
    r = await orders.http.post(url, json=r4, headers=op)
    assert r.status_code == 422 and r.json()["code"] == "refund_exceeds_remainder"
    assert (await orders.pay.deliver_refund(orders.notify_url, no, r3["out_refund_no"], 4500, total,
                                            status="CLOSED")).status_code == 204
    # CLOSED is final: a later SUCCESS for it is refused
    r = await orders.pay.deliver_refund(orders.notify_url, no, r3["out_refund_no"], 4500, total)
    assert r.status_code == 409 and r.json()["message"].startswith("refund_final:")
    assert (await orders.http.post(url, json=r4, headers=op)).status_code == 201

    got = (await orders.http.get(f"/v1/orders/{oid}", headers=orders.who(buyer))).json()
    assert [(ln["refunded_fen"], ln["refunded_quantity"], ln["refundable_fen"], ln["refundable_quantity"])
            for ln in got["lines"]] == [(4500, 1, 4499, 0), (1000, 0, 2000, 1)]
    assert got["refunded_fen"] == 5500

    assert (await orders.http.post(f"/v1/orders/{oid}/confirm-receipt", headers=orders.who(buyer))).status_code == 200
    evs = await orders.events.until_type(oid, "OrderCompleted")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid", "OrderRefunded", "OrderRefunded", "OrderCompleted"]
    first, second = evs[2].payload, evs[3].payload
    assert first["out_refund_no"] == r1["out_refund_no"] and first["amount_fen"] == 4500
    assert first["lines"] == [{"line_id": "1", "quantity": 1, "amount_fen": 4500}]
    assert second["out_refund_no"] == r2["out_refund_no"]
    assert second["lines"] == [{"line_id": "2", "quantity": 0, "amount_fen": 1000}]


async def test_concurrent_refund_requests_never_exceed_the_line(orders, ids):
    order = await paid_order(orders, ids)
    op = orders.who("operator-1", "operator")
    reqs = [{"out_refund_no": ids(f"C{i}"), "lines": [{"line_id": "1", "amount_fen": 4000}]} for i in range(10)]
    rs = await asyncio.gather(*(orders.http.post(f"/v1/orders/{order['order_id']}/refunds", json=b, headers=op)
                                for b in reqs))
    codes = sorted(r.status_code for r in rs)
    assert codes == [201, 201] + [422] * 8, [r.text for r in rs]  # 9000 paid on line 1: two of 4000 fit


async def test_refund_refusals(orders, ids):
    op = orders.who("operator-1", "operator")
    unpaid = await orders.place(ids("buyer"), ids("U").replace("-", ""))
    r = await orders.http.post(f"/v1/orders/{unpaid['order_id']}/refunds", headers=op,
                               json={"out_refund_no": ids("R"), "lines": [{"line_id": "1", "amount_fen": 1}]})
    assert r.status_code == 409 and r.json()["code"] == "order_not_paid"

    order = await paid_order(orders, ids)
    url = f"/v1/orders/{order['order_id']}/refunds"
    r = await orders.http.post(url, headers=orders.who("someone-else"),
                               json={"out_refund_no": ids("R"), "lines": [{"line_id": "1", "amount_fen": 1}]})
    assert r.status_code == 404  # not the buyer's order: not visible
    r = await orders.http.post(url, headers=op,
                               json={"out_refund_no": ids("R"), "lines": [{"line_id": "1", "quantity": 3, "amount_fen": 1}]})
    assert r.status_code == 422 and r.json()["code"] == "refund_exceeds_remainder"

    # notices about refunds we never requested, or that do not match, are refused and recorded
    no, total = order["out_trade_no"], order["total_fen"]
    r = await orders.pay.deliver_refund(orders.notify_url, no, ids("never"), 100, total)
    assert r.status_code == 404 and r.json()["message"].startswith("unknown_refund:")
    rq = {"out_refund_no": ids("RM"), "lines": [{"line_id": "1", "amount_fen": 100}]}
    assert (await orders.http.post(url, headers=op, json=rq)).status_code == 201
    r = await orders.pay.deliver_refund(orders.notify_url, no, rq["out_refund_no"], 101, total)
    assert r.status_code == 422 and r.json()["message"].startswith("amount_mismatch:")
    r = await orders.pay.deliver_refund(orders.notify_url, no, rq["out_refund_no"], 100, total, mchid="1900000999")
    assert r.status_code == 422 and r.json()["message"].startswith("mchid_mismatch:")
    r = await orders.pay.deliver_refund(orders.notify_url, no, rq["out_refund_no"], 100, total,
                                        notice={"forge": True})
    assert r.status_code == 401
    refunds = (await orders.http.get(url, headers=op)).json()
    assert [x["status"] for x in refunds] == ["pending"]
