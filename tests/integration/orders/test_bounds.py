"""Hostile orders: too many lines, integers past int32/int64, NUL characters and oversized
notify bodies are refused with a 4xx before anything is stored or published."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

LINE = {"product_id": "p-tea", "quantity": 1, "unit_price_fen": 100, "paid_fen": 100}


@pytest.mark.parametrize("line", [
    {**LINE, "quantity": 2**31}, {**LINE, "quantity": 2**63}, {**LINE, "paid_fen": 2**63},
    {**LINE, "unit_price_fen": 2**62 * 4}, {**LINE, "quantity": "2"}, {**LINE, "paid_fen": 100.0},
    {**LINE, "product_id": "a\u0000b"},
])
async def test_out_of_range_or_hostile_lines_are_422(orders, ids, line):
    body = {"out_trade_no": ids("ot")[:32], "lines": [line], "postage_fen": 0, "total_fen": 100}
    r = await orders.http.post("/v1/orders", json=body, headers=orders.who(ids("buyer")))
    assert r.status_code == 422, r.text


async def test_an_order_has_at_most_200_lines_and_nul_paths_are_422(orders, ids):
    buyer = ids("buyer")
    lines = [dict(LINE, line_id=str(i)) for i in range(10_000)]
    body = {"out_trade_no": ids("ot")[:32], "lines": lines, "postage_fen": 0, "total_fen": 100 * len(lines)}
    r = await orders.http.post("/v1/orders", json=body, headers=orders.who(buyer))
    assert r.status_code in (413, 422), r.text       # 10,000 lines: refused, no 1.2 MB event
    body = {**body, "lines": lines[:201], "total_fen": 100 * 201}
    r = await orders.http.post("/v1/orders", json=body, headers=orders.who(buyer))
    assert r.status_code == 422, r.text
    body = {**body, "lines": lines[:200], "total_fen": 100 * 200}
    r = await orders.http.post("/v1/orders", json=body, headers=orders.who(buyer))
    assert r.status_code == 201, r.text
    assert (await orders.http.get("/v1/orders/a%00b", headers=orders.who(buyer))).status_code == 422


async def test_notify_bodies_are_refused_by_size_before_reading(orders):
    r = await orders.http.post("/v1/wechatpay/notify", content=b"x" * (200 * 1024),
                               headers={"content-type": "application/json"})
    assert r.status_code == 413
