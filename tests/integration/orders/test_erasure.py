"""Erasing a customer in orders (real HTTP, Kafka, PostgreSQL, the WeChat Pay stand-in): the payer's
openid is cleared from every order of theirs, the erasure is recorded, the money trail stays (amounts,
WeChat ids, the events in the log) and still moves: a refund of the erased buyer's paid order is
submitted and published after the erasure. Only an operator erases."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def no(ids, tag: str) -> str:
    return ids(tag).replace("-", "")


async def test_erasing_a_buyer_clears_the_openid_and_keeps_the_money_trail(paying, ids):
    buyer, other, openid = ids("buyer"), ids("other"), ids("oB")
    paid = await paying.place(buyer, no(ids, "P"), openid=openid)
    _, resp = await paying.pay.request_payment(paid["payment"])
    assert resp is not None and resp.status_code == 204
    await paying.events.until_type(paid["order_id"], "OrderPaid")
    waiting = await paying.place(buyer, no(ids, "W"), openid=openid)
    kept = await paying.place(other, no(ids, "K"), openid=ids("oK"))

    conn = await paying.db()
    try:
        before = {r["order_id"]: dict(r) for r in await conn.fetch(
            "SELECT order_id, total_fen, transaction_id, status, payer_openid FROM orders WHERE order_id = ANY($1)",
            [paid["order_id"], waiting["order_id"], kept["order_id"]])}
        assert before[paid["order_id"]]["payer_openid"] == openid and before[paid["order_id"]]["transaction_id"]

        url = f"/v1/admin/persons/{buyer}/erase"
        body = {"reason": "account deleted at the customer's request"}
        assert (await paying.http.post(url, json=body, headers=paying.who("fin", "finance"))).status_code == 403
        assert (await paying.http.post(url, json={"reason": ""}, headers=paying.who("op", "operator"))).status_code == 422
        r = await paying.http.post(url, json=body, headers=paying.who("op", "operator"))
        assert r.status_code == 200 and r.json() == {"person_id": buyer, "orders_cleared": 2}, r.text
        again = await paying.http.post(url, json=body, headers=paying.who("op", "operator"))
        assert again.status_code == 200 and again.json()["orders_cleared"] == 0

        after = {r["order_id"]: dict(r) for r in await conn.fetch(
            "SELECT order_id, total_fen, transaction_id, status, payer_openid FROM orders WHERE order_id = ANY($1)",
            list(before))}
        assert after[paid["order_id"]]["payer_openid"] is None and after[waiting["order_id"]]["payer_openid"] is None
        assert after[kept["order_id"]] == before[kept["order_id"]]                    # nobody else's
        for oid in (paid["order_id"], waiting["order_id"]):                          # the money stays
            assert {k: v for k, v in after[oid].items() if k != "payer_openid"} == \
                   {k: v for k, v in before[oid].items() if k != "payer_openid"}
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1 AND payer_openid IS NOT NULL", buyer) == 0
        erasure = await conn.fetchrow("SELECT * FROM personal_data_erasures WHERE person_id = $1", buyer)
        assert erasure["erased_by"] == "op" and erasure["reason"] == body["reason"]
    finally:
        await conn.close()

    # the buyer still sees their order, and its money still moves: a refund after the erasure
    r = await paying.http.get(f"/v1/orders/{paid['order_id']}", headers=paying.who(buyer))
    assert r.status_code == 200 and r.json()["total_fen"] == paid["total_fen"]
    rno = ids("RF")
    r = await paying.http.post(f"/v1/orders/{paid['order_id']}/refunds", headers=paying.who("op", "operator"),
                               json={"out_refund_no": rno, "reason": "damaged",
                                     "lines": [{"line_id": "1", "quantity": 1, "amount_fen": 4500}]})
    assert r.status_code == 201, r.text
    evs = await paying.events.until_type(paid["order_id"], "OrderRefunded")
    assert [e.event_type for e in evs] == ["OrderPlaced", "OrderPaid", "OrderRefunded"]
    assert evs[-1].payload["amount_fen"] == 4500
    assert not any(openid in e.model_dump_json() for e in evs)                     # the log never carried it
