"""Explain any fen: the chain at the payment instant, the plan version, tier, rate and
arithmetic, the events with their causation links, reversals and settlement, all from the
service's own records; and the plan editor's check (no publication) and version history."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.commission.main import create_app
from services.commission.store import explain as store
from shared.contracts.orders import OrderCompleted, OrderRefunded, RefundedLine
from tests.conftest import eventually, running_app
from tests.integration.commission.conftest import PLAN, now, settings, who
from tests.integration.commission.test_lifecycle import bind, enrol, paid

pytestmark = pytest.mark.integration
ADMIN = who("op", "plan_admin")  # publishes plans; every operator role reads the explanations


async def two_level_chain(client, feed, ids) -> tuple[str, str, str]:
    """A plan, promoters a <- b, buyer c bound to b: (a, b, c)."""
    a, b, c = ids("pa"), ids("pb"), ids("buyer")
    t = now() - timedelta(hours=1)
    assert (await client.put("/v1/admin/plan", json=PLAN, headers=ADMIN)).status_code == 201
    await enrol(feed, a, t)
    await enrol(feed, b, t)
    await bind(feed, b, a, t)
    await bind(feed, c, b, t + timedelta(seconds=1))
    return a, b, c


async def test_explain_an_order_and_a_commission_record(infra, schema, feed, ids):
    async with running_app(create_app(settings(clock_offset_s=0), schema=schema)) as client:
        a, b, c = await two_level_chain(client, feed, ids)
        order = ids("o")
        paid_env = await feed.send(paid(order, c, now(), ("l1", "sku", 3, 2999)))
        await feed.send(OrderRefunded(order_id=order, out_refund_no="r1", refunded_at=now(),
                                      amount_fen=1000, lines=(RefundedLine(line_id="l1", quantity=1, amount_fen=1000),)))
        await feed.send(OrderCompleted(order_id=order, reason="receipt_confirmed", completed_at=now()))

        async def explained():
            r = await client.get(f"/v1/admin/explain/orders/{order}", headers=ADMIN)
            if r.status_code != 200:
                return None
            body = r.json()
            done = all(x["settlement"] for x in body["accruals"]) and len(body["accruals"]) == 2
            return body if done and all(x["reversals"] for x in body["accruals"]) else None

        ex = await eventually(explained)
        assert [(l["level"], l["customer_id"], l["promoter_id"], l["promoter_status_at_payment"]) for l in ex["chain"]] == \
            [(1, c, b, "active"), (2, b, a, "active")]
        assert ex["plan"]["plan_version"] == 1 and ex["plan"]["cap_bp"] == 3000
        by_level = {x["level"]: x for x in ex["accruals"]}
        l1, l2 = by_level["level1"], by_level["level2"]
        assert (l1["beneficiary_id"], l1["tier"], l1["rate_bp"], l1["amount_fen"]) == (b, "sharer", 1000, 299)
        assert l1["arithmetic"]["formula"] == "2999 × 1000 ÷ 10000 = 299.9 → 299"
        assert (l2["beneficiary_id"], l2["rate_bp"], l2["amount_fen"]) == (a, 500, 149)
        assert l1["arithmetic"]["line_cap_fen"] == 899 and not l1["arithmetic"]["lowered_by_cap_guard"]
        # refund of 1000 of 2999: reverse 299 * 1000 // 2999 = 99 and 149 * 1000 // 2999 = 49
        assert [(r["amount_fen"], r["from_status"], r["out_refund_no"]) for r in l1["reversals"]] == [(99, "frozen", "r1")]
        assert l2["reversed_fen"] == 49
        assert l1["settlement"]["amount_fen"] == 200 and l1["status"] == "settled" and l1["net_fen"] == 200
        assert ex["totals"] == {"accrued_fen": 448, "reversed_fen": 148, "settled_fen": 300, "net_fen": 300}
        # the events, linked: OrderPaid -> CommissionAccrued
        assert l1["caused_by"] == str(paid_env.event_id)
        types = {e["event_type"] for e in ex["events"]}
        assert {"OrderPaid", "CommissionAccrued", "CommissionReversed", "CommissionSettled", "CommissionPlanPublished",
                "ReferralBound/TakenOver"} <= types
        accrued = next(e for e in ex["events"] if e["event_id"] == l1["event_id"])
        assert accrued["causation_id"] == str(paid_env.event_id)

        one = (await client.get(f"/v1/admin/explain/commissions/{l1['accrual_id']}", headers=ADMIN)).json()
        assert one["focus_accrual_id"] == l1["accrual_id"] and one["totals"] == ex["totals"]
        r = await client.get(f"/v1/admin/explain/orders/{ids('nope')}", headers=ADMIN)
        assert (r.status_code, r.json()["code"]) == (404, "order_not_seen")
        assert (await client.get(f"/v1/admin/explain/orders/{order}", headers=who(c))).status_code == 403


async def test_an_explanation_is_one_snapshot_whatever_commits_while_it_reads(infra, schema, feed, ids, dbc,
                                                                             monkeypatch):
    """A settlement committed between the explanation's reads (accrual rows, then the outbox) is
    either wholly in the answer or wholly out: never "frozen" beside its own settlement."""
    async with running_app(create_app(settings(clock_offset_s=0), schema=schema)) as client:
        _, _, c = await two_level_chain(client, feed, ids)
        order = ids("o")
        await feed.send(paid(order, c, now(), ("l1", "sku", 3, 2999)))

        async def accrued():
            r = await client.get(f"/v1/admin/explain/orders/{order}", headers=ADMIN)
            return r.status_code == 200 and len(r.json()["accruals"]) == 2

        await eventually(accrued)
        read_outbox = store.own_events

        async def settle_meanwhile(conn, *args):
            # the accrual rows are read; now the order completes and its settlement commits
            await feed.send(OrderCompleted(order_id=order, reason="receipt_confirmed", completed_at=now()))
            await eventually(lambda: dbc.fetchval(
                "SELECT count(*) = 2 FROM accruals WHERE order_id = $1 AND settled_at IS NOT NULL", order))
            return await read_outbox(conn, *args)

        monkeypatch.setattr(store, "own_events", settle_meanwhile)
        ex = (await client.get(f"/v1/admin/explain/orders/{order}", headers=ADMIN)).json()
        assert [(x["status"], x["settlement"]) for x in ex["accruals"]] == [("frozen", None)] * 2
        assert ex["totals"]["settled_fen"] == 0
        monkeypatch.setattr(store, "own_events", read_outbox)
        ex = (await client.get(f"/v1/admin/explain/orders/{order}", headers=ADMIN)).json()
        assert [x["status"] for x in ex["accruals"]] == ["settled"] * 2
        assert all(x["settlement"]["amount_fen"] == x["amount_fen"] for x in ex["accruals"])


async def test_plan_check_refuses_like_publication_and_history_lists_versions(infra, schema):
    async with running_app(create_app(settings(), schema=schema)) as client:
        r = await client.post("/v1/admin/plan/check", json=PLAN, headers=ADMIN)
        assert r.status_code == 200 and r.json()["worst_case_bp"] == {"sharer": 1500, "partner": 2500}
        over = {**PLAN, "tiers": [{"name": "sharer", "level1_bp": 2500, "level2_bp": 600}]}
        r = await client.post("/v1/admin/plan/check", json=over, headers=ADMIN)
        assert (r.status_code, r.json()["code"]) == (422, "plan_over_cap")
        third = {**PLAN, "levels": 3}
        r = await client.post("/v1/admin/plan/check", json=third, headers=ADMIN)
        assert (r.status_code, r.json()["code"]) == (422, "third_level_forbidden")
        assert (await client.get("/v1/admin/plans", headers=ADMIN)).json() == []  # a check publishes nothing
        for cap in (3000, 2800):
            assert (await client.put("/v1/admin/plan", json={**PLAN, "cap_bp": cap}, headers=ADMIN)).status_code == 201
        hist = (await client.get("/v1/admin/plans", headers=ADMIN)).json()
        assert [(h["plan_version"], h["plan"]["cap_bp"]) for h in hist] == [(2, 2800), (1, 3000)]
