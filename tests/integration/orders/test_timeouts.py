"""Time-driven transitions with an injected clock: unpaid orders are cancelled after
ORDERS_UNPAID_TIMEOUT_MINUTES, paid ones complete ORDERS_AUTO_COMPLETE_DAYS after payment;
the sweeper finds due rows through the orders_due index."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.orders.store import orders as store

pytestmark = pytest.mark.integration


async def test_unpaid_order_is_cancelled_after_the_timeout_and_a_late_payment_is_not_a_payment(orders, ids):
    order = await orders.place(ids("buyer"), ids("T").replace("-", ""))
    paid_in_time = await orders.place(ids("buyer"), ids("P").replace("-", ""))
    assert (await orders.pay.deliver_payment(orders.notify_url, paid_in_time["out_trade_no"],
                                             paid_in_time["total_fen"])).status_code == 204
    orders.clock.advance(minutes=31)
    evs = await orders.events.until_type(order["order_id"], "OrderCancelled")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderCancelled"]
    assert evs[1].payload["reason"] == "unpaid_timeout"

    # money arriving after the cancellation is acknowledged (WeChat stops) but pays nothing
    r = await orders.pay.deliver_payment(orders.notify_url, order["out_trade_no"], order["total_fen"])
    assert r.status_code == 204
    got = (await orders.http.get(f"/v1/orders/{order['order_id']}", headers=orders.who(order["buyer_id"]))).json()
    assert got["status"] == "cancelled" and got["late_transaction_id"]
    assert (await orders.http.get(f"/v1/orders/{paid_in_time['order_id']}",
                                  headers=orders.who(paid_in_time["buyer_id"]))).json()["status"] == "paid"
    r = await orders.http.post(f"/v1/orders/{order['order_id']}/confirm-receipt", headers=orders.who(order["buyer_id"]))
    assert r.status_code == 409


async def test_paid_order_completes_when_the_after_sale_window_closes(orders, ids):
    order = await orders.place(ids("buyer"), ids("T").replace("-", ""))
    assert (await orders.pay.deliver_payment(orders.notify_url, order["out_trade_no"],
                                             order["total_fen"])).status_code == 204
    unpaid = await orders.place(ids("buyer"), ids("U").replace("-", ""))
    orders.clock.advance(days=6, hours=23)
    # the unpaid order's cancellation proves a sweep ran at this time; the paid order stays paid
    await orders.events.until_type(unpaid["order_id"], "OrderCancelled")
    got = (await orders.http.get(f"/v1/orders/{order['order_id']}", headers=orders.who(order["buyer_id"]))).json()
    assert got["status"] == "paid" and got["auto_complete_at"]
    orders.clock.advance(hours=2)
    evs = await orders.events.until_type(order["order_id"], "OrderCompleted")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid", "OrderCompleted"]
    assert evs[2].payload["reason"] == "after_sale_window_closed"


async def test_buyer_can_cancel_an_unpaid_order_but_not_a_paid_one(orders, ids):
    order = await orders.place(ids("buyer"), ids("T").replace("-", ""))
    who = orders.who(order["buyer_id"])
    r = await orders.http.post(f"/v1/orders/{order['order_id']}/cancel", headers=who)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "buyer_cancelled"
    evs = await orders.events.until_type(order["order_id"], "OrderCancelled")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderCancelled"]

    paid = await orders.place(ids("buyer"), ids("P").replace("-", ""))
    await orders.pay.deliver_payment(orders.notify_url, paid["out_trade_no"], paid["total_fen"])
    r = await orders.http.post(f"/v1/orders/{paid['order_id']}/cancel", headers=orders.who(paid["buyer_id"]))
    assert r.status_code == 409 and r.json()["code"] == "order_already_paid"


async def test_due_orders_are_read_through_the_index(orders):
    conn = await orders.db()
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + store.LOCK_DUE_SQL, datetime.now(timezone.utc), 500))
    finally:
        await conn.close()
    assert "orders_due" in plan, plan
