"""The management bonus over the real Kafka and PostgreSQL: accrued as its own CommissionAccrued
(kind management_bonus) to the line's level 1 and level 2, reversed with a refund, settled, and
rebuilt by the audit replay."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.commission.main import create_app
from services.commission.replay import replay
from shared.contracts.orders import OrderCompleted, OrderRefunded, RefundedLine
from tests.conftest import eventually, running_app
from tests.integration.commission.conftest import now, settings, who
from tests.integration.commission.test_lifecycle import bind, enrol, paid

pytestmark = pytest.mark.integration

PLAN = {"levels": 2, "cap_bp": 3000, "freeze_days": 0,
        "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800, "management_bp": 200}]}


async def test_a_management_bonus_is_accrued_reversed_settled_and_replayed(infra, schema, feed, ids, dbc):
    a, b, c = ids("pa"), ids("pb"), ids("buyer")
    t = now() - timedelta(hours=1)
    async with running_app(create_app(settings(), schema=schema)) as client:
        over = {**PLAN, "cap_bp": 1800}  # 1000+200 + 500+200 = 1900 bp could be paid: refused
        r = await client.put("/v1/admin/plan", json=over, headers=who("op", "plan_admin"))
        assert r.status_code == 422 and r.json()["code"] == "plan_over_cap", r.text
        assert (await client.put("/v1/admin/plan", json=PLAN, headers=who("op", "plan_admin"))).status_code == 201
        for p in (a, b):
            await enrol(feed, p, t)
        await bind(feed, b, a, t)
        await bind(feed, c, b, t)
        order = ids("o")
        await feed.send(paid(order, c, now(), ("l1", "sku", 2, 10_000)))

        async def accruals():
            rows = await dbc.fetch("SELECT accrual_id, level, beneficiary_id, amount_fen FROM accruals WHERE order_id = $1 "
                                   "ORDER BY accrual_id", order)
            return rows if len(rows) == 4 else None
        rows = await eventually(accruals)
        assert [(r["accrual_id"].removeprefix(order), r["level"], r["beneficiary_id"], r["amount_fen"]) for r in rows] == [
            (":l1:level1", "level1", b, 1_000), (":l1:level1:management", "level1", b, 200),
            (":l1:level2", "level2", a, 500), (":l1:level2:management", "level2", a, 200)]
        events = [json.loads(bytes(r["value"])) for r in await dbc.fetch("SELECT value FROM outbox ORDER BY seq")]
        accrued = [e for e in events if e["event_type"] == "CommissionAccrued" and e["payload"]["order_id"] == order]
        assert sorted((e["payload"]["level"], e["payload"]["kind"]) for e in accrued) == [
            ("level1", "commission"), ("level1", "management_bonus"), ("level2", "commission"), ("level2", "management_bonus")]
        assert len({e["event_id"] for e in accrued}) == 4

        await feed.send(OrderRefunded(order_id=order, out_refund_no="r1", lines=(RefundedLine(line_id="l1", quantity=1,
                                      amount_fen=5_000),), amount_fen=5_000, refunded_at=now()))
        await feed.send(OrderCompleted(order_id=order, reason="receipt_confirmed", completed_at=now()))

        async def balance_is(user, **want):
            r = await client.get(f"/v1/admin/promoters/{user}/balance", headers=who("op", "plan_admin"))
            got = r.json()
            return got if all(got[k] == v for k, v in want.items()) else None
        await eventually(lambda: balance_is(b, frozen_fen=0, available_fen=600, reversed_fen=600))
        await eventually(lambda: balance_is(a, frozen_fen=0, available_fen=350, reversed_fen=350))

        result = await replay(settings(), schema, progress_out=None)
        assert result.equal, (result.differences, result.missing, result.undrained)
