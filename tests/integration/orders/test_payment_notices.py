"""WeChat Pay payment notices against the real service, Kafka and PostgreSQL: a verified
notice matching the order gives exactly one OrderPaid, however often and however
concurrently it is delivered; anything forged, stale, probing or not matching gives none."""
from __future__ import annotations

import asyncio
import time

import pytest

pytestmark = pytest.mark.integration


async def test_valid_notice_publishes_one_order_paid_with_the_order_lines(orders, ids):
    order = await orders.place(ids("buyer"), ids("T").replace("-", ""), promoter_code="PCODE1")
    r = await orders.pay.deliver_payment(orders.notify_url, order["out_trade_no"], order["total_fen"])
    assert r.status_code == 204, r.text

    evs = await orders.events.until_type(order["order_id"], "OrderPaid")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid"]
    paid = evs[1].payload
    assert paid["buyer_id"] == order["buyer_id"] and paid["promoter_code"] == "PCODE1"
    assert paid["total_fen"] == 12500 and paid["postage_fen"] == 500
    assert [(ln["line_id"], ln["quantity"], ln["paid_fen"]) for ln in paid["lines"]] == [("1", 2, 9000), ("2", 1, 3000)]
    assert paid["transaction_id"] == orders.pay.transactions[order["out_trade_no"]]["transaction_id"]
    assert paid["paid_at"] and evs[1].correlation_id == evs[0].event_id

    got = (await orders.http.get(f"/v1/orders/{order['order_id']}", headers=orders.who(order["buyer_id"]))).json()
    assert got["status"] == "paid" and got["transaction_id"] == paid["transaction_id"]


async def test_a_hundred_deliveries_some_concurrent_still_pay_once(orders, ids):
    order = await orders.place(ids("buyer"), ids("T").replace("-", ""))
    no, total = order["out_trade_no"], order["total_fen"]
    same = orders.pay.payment_notice(no, total)
    # 40 at once of the same notice, 30 in a row, 30 more with fresh notification ids (a
    # notice id is only one of the guards: the order row is the other).
    first = await asyncio.gather(*(orders.pay.deliver(orders.notify_url, same) for _ in range(40)))
    seq = [await orders.pay.deliver(orders.notify_url, same) for _ in range(30)]
    fresh = await asyncio.gather(*(orders.pay.deliver_payment(orders.notify_url, no, total) for _ in range(30)))
    assert {r.status_code for r in [*first, *seq, *fresh]} == {204}

    # Receipt confirmation comes after on the same key: once it is read, everything before it is.
    r = await orders.http.post(f"/v1/orders/{order['order_id']}/confirm-receipt", headers=orders.who(order["buyer_id"]))
    assert r.status_code == 200, r.text
    evs = await orders.events.until_type(order["order_id"], "OrderCompleted")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid", "OrderCompleted"]

    conn = await orders.db()
    try:
        assert await conn.fetchval("SELECT count(*) FROM notice_archive WHERE out_trade_no = $1", no) == 100
        outcomes = dict(await conn.fetch("SELECT outcome, count(*) FROM notice_archive WHERE out_trade_no = $1 "
                                         "GROUP BY outcome", no))
        assert outcomes["paid"] == 1 and sum(outcomes.values()) == 100
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1 AND headers->>'event_type' = 'OrderPaid'",
                                   order["order_id"]) == 1
    finally:
        await conn.close()


async def test_forged_stale_probe_and_mismatched_notices_are_refused_and_never_pay(orders, ids):
    order = await orders.place(ids("buyer"), ids("T").replace("-", ""))
    no, total = order["out_trade_no"], order["total_fen"]
    pay = orders.pay
    stranger_key = type(pay)(mchid=pay.mchid, appid=pay.appid, apiv3_key=pay.apiv3_key)
    bad = [
        ("forged signature", pay.payment_notice(no, total, notice={"forge": True}), 401, "bad_signature"),
        ("stale timestamp", pay.payment_notice(no, total, notice={"timestamp": int(time.time()) - 360}), 401,
         "stale_timestamp"),
        ("probe", pay.payment_notice(no, total, notice={"probe": True}), 401, "bad_signature"),
        ("tampered body", pay.payment_notice(no, total, notice={"tamper": True}), 401, "bad_signature"),
        ("unknown platform serial", stranger_key.payment_notice(no, total), 401, "unknown_serial"),
        ("wrong amount", pay.payment_notice(no, total - 1), 422, "amount_mismatch"),
        ("wrong mchid", pay.payment_notice(no, total, mchid="1900000999"), 422, "mchid_mismatch"),
        ("wrong appid", pay.payment_notice(no, total, appid="wx0000000000000bad"), 422, "appid_mismatch"),
        ("not paid", pay.payment_notice(no, total, trade_state="NOTPAY"), 422, "not_paid"),
        ("unknown order", pay.payment_notice(no + "x", total), 404, "unknown_order"),
    ]
    for what, notice, status, reason in bad:
        r = await pay.deliver(orders.notify_url, notice)
        assert r.status_code == status, (what, r.text)
        assert r.json()["code"] == "FAIL" and r.json()["message"].startswith(reason + ":"), (what, r.text)

    got = (await orders.http.get(f"/v1/orders/{order['order_id']}", headers=orders.who(order["buyer_id"]))).json()
    assert got["status"] == "placed"
    conn = await orders.db()
    try:
        rows = await conn.fetch("SELECT outcome, http_status, reason_code, body_sha256, headers FROM notice_archive "
                                "ORDER BY seq")
        assert [(r["outcome"], r["reason_code"]) for r in rows] == [("rejected", b[3]) for b in bad]
        assert all(len(r["body_sha256"]) == 64 and "wechatpay-serial" in r["headers"] for r in rows)
        assert await conn.fetchval("SELECT count(*) FROM processed_notices") == 0
    finally:
        await conn.close()

    # the wrong-amount notice was not "used up": the right one still pays, once
    r = await pay.deliver_payment(orders.notify_url, no, total)
    assert r.status_code == 204
    r = await orders.http.post(f"/v1/orders/{order['order_id']}/confirm-receipt", headers=orders.who(order["buyer_id"]))
    evs = await orders.events.until_type(order["order_id"], "OrderCompleted")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid", "OrderCompleted"]


async def test_both_platform_keys_are_accepted_during_the_switch(orders, ids):
    cert_serial, pubkey_serial = list(orders.pay.keys)
    assert pubkey_serial.startswith("PUB_KEY_ID_")
    a = await orders.place(ids("buyer-a"), ids("TA").replace("-", ""))
    b = await orders.place(ids("buyer-b"), ids("TB").replace("-", ""))
    ra = await orders.pay.deliver_payment(orders.notify_url, a["out_trade_no"], a["total_fen"])
    orders.pay.switch_to(pubkey_serial)
    rb = await orders.pay.deliver_payment(orders.notify_url, b["out_trade_no"], b["total_fen"])
    assert (ra.status_code, rb.status_code) == (204, 204), (ra.text, rb.text)
    for o in (a, b):
        await orders.events.until_type(o["order_id"], "OrderPaid")
    conn = await orders.db()
    try:
        serials = {r["o"]: r["s"] for r in await conn.fetch(
            "SELECT out_trade_no o, headers->>'wechatpay-serial' s FROM notice_archive WHERE outcome = 'paid'")}
    finally:
        await conn.close()
    assert serials == {a["out_trade_no"]: cert_serial, b["out_trade_no"]: pubkey_serial}
