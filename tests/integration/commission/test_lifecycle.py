"""From paid orders and bindings to balances, over the real Kafka and PostgreSQL: accrual two
levels up, partial refunds that add up, settlement, withdrawal, refund after withdrawal, skips,
tier change between orders, and the audit replay equal to live."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from services.commission.main import create_app
from services.commission.replay import replay
from shared.contracts.orders import OrderCompleted, OrderLine, OrderPaid, OrderRefunded, RefundedLine
from shared.contracts.payout import WithdrawalPaid, WithdrawalRequested
from shared.contracts.referral import PromoterEnrolled, PromoterStatusChanged, ReferralBound
from tests.conftest import eventually, running_app
from tests.integration.commission.conftest import PLAN, now, settings, who

pytestmark = pytest.mark.integration


async def enrol(feed, pid: str, at) -> None:
    await feed.send(PromoterEnrolled(promoter_id=pid, promoter_code=pid[-20:], enrolled_by="operator", enrolled_at=at))


async def bind(feed, customer: str, promoter: str, at) -> None:
    await feed.send(ReferralBound(customer_id=customer, promoter_id=promoter, promoter_code=promoter[-20:], source="link",
                                  mode="first_touch", bound_at=at))


def paid(order_id: str, buyer: str, at, *lines: tuple[str, str, int, int]) -> OrderPaid:
    ls = tuple(OrderLine(line_id=l, product_id=p, quantity=q, unit_price_fen=fen // q, paid_fen=fen) for l, p, q, fen in lines)
    return OrderPaid(order_id=order_id, buyer_id=buyer, lines=ls, postage_fen=800, total_fen=sum(l.paid_fen for l in ls) + 800,
                     transaction_id="tx-" + order_id, paid_at=at)


async def get_json(client, path: str, user: str, *roles: str):
    r = await client.get(path, headers=who(user, *roles))
    assert r.status_code == 200, r.text
    return r.json()


async def test_accrue_refund_settle_withdraw_refund_again_and_replay(infra, schema, feed, ids):
    a, b, c = ids("pa"), ids("pb"), ids("buyer")
    t = now() - timedelta(hours=1)
    async with running_app(create_app(settings(), schema=schema)) as client:
        r = await client.put("/v1/admin/plan", json=PLAN, headers=who("op", "plan_admin"))
        assert r.status_code == 201, r.text
        await enrol(feed, a, t)
        await enrol(feed, b, t)
        await bind(feed, b, a, t)   # a refers b
        await bind(feed, c, b, t)   # b refers the buyer c
        order = ids("o")
        await feed.send(paid(order, c, now(), ("l1", "sku", 3, 2999), ("l2", "fixed-sku", 2, 3000)))

        async def records(user):
            body = await get_json(client, f"/v1/promoters/me/commissions?order_id={order}", user)
            return {i["line_id"]: i for i in body["items"]} if len(body["items"]) == 2 else None

        rb = await eventually(lambda: records(b))
        ra = await eventually(lambda: records(a))
        # percent of the whole line (3 units) rounded down; fixed fen per unit times quantity
        assert (rb["l1"]["level"], rb["l1"]["amount_fen"], rb["l1"]["quantity"], rb["l1"]["rate_bp"]) == ("level1", 299, 3, 1000)
        assert (rb["l2"]["amount_fen"], rb["l2"]["fixed_fen_per_unit"]) == (300, 150)
        assert (ra["l1"]["level"], ra["l1"]["amount_fen"], ra["l2"]["amount_fen"]) == ("level2", 149, 100)
        assert rb["l1"]["tier"] == "sharer" and rb["l1"]["plan_version"] == 1 and rb["l1"]["status"] == "frozen"

        async def balance(user):
            return await get_json(client, f"/v1/admin/promoters/{user}/balance", "op", "plan_admin")

        async def balance_is(user, **want):
            got = await balance(user)
            return got if all(got[k] == v for k, v in want.items()) else None

        await eventually(lambda: balance_is(b, frozen_fen=599, available_fen=0))
        await eventually(lambda: balance_is(a, frozen_fen=249))

        # a partial refund of line 1 (1000 of 2999 fen) while frozen
        await feed.send(OrderRefunded(order_id=order, out_refund_no="r1", lines=(RefundedLine(line_id="l1", quantity=1, amount_fen=1000),),
                                      amount_fen=1000, refunded_at=now()))
        await eventually(lambda: balance_is(b, frozen_fen=599 - 99, reversed_fen=99))
        await eventually(lambda: balance_is(a, frozen_fen=249 - 49, reversed_fen=49))

        # completed, freeze 0 days: settled net of the reversal so far
        await feed.send(OrderCompleted(order_id=order, reason="receipt_confirmed", completed_at=now()))
        await eventually(lambda: balance_is(b, frozen_fen=0, available_fen=500))
        await eventually(lambda: balance_is(a, frozen_fen=0, available_fen=200))

        # b withdraws 450 fen and is paid
        wid = ids("w")
        await feed.send(WithdrawalRequested(withdrawal_id=wid, promoter_id=b, amount_fen=450, fee_fen=0, requested_at=now()))
        await feed.send(WithdrawalPaid(withdrawal_id=wid, promoter_id=b, amount_fen=450, fee_fen=0, out_bill_no="bill" + wid[-10:], paid_at=now()))
        await eventually(lambda: balance_is(b, available_fen=50, reserved_fen=0, withdrawn_fen=450))

        # the rest of line 1 and all of line 2 refunded after settlement and withdrawal: balance goes negative
        await feed.send(OrderRefunded(order_id=order, out_refund_no="r2", lines=(RefundedLine(line_id="l1", quantity=2, amount_fen=1999),
                                      RefundedLine(line_id="l2", quantity=2, amount_fen=3000)), amount_fen=4999, refunded_at=now()))
        final_b = await eventually(lambda: balance_is(b, frozen_fen=0, available_fen=50 - 200 - 300, reversed_fen=599))
        assert final_b["withdrawn_fen"] == 450
        await eventually(lambda: balance_is(a, available_fen=0, reversed_fen=249))
        body = await get_json(client, f"/v1/promoters/me/commissions?status=reversed", b)
        assert {i["accrual_id"] for i in body["items"]} == {f"{order}:l1:level1", f"{order}:l2:level1"}

        # the audit replay rebuilds the same balances from the log
        result = await replay(settings(), schema, progress_out=None)
        assert result.equal, (result.differences, result.missing, result.undrained)
        assert result.folded >= 10 and result.events > 0


async def test_skips_self_purchase_and_tier_change_between_orders(infra, schema, feed, ids, dbc):
    a, b, s, c = ids("pa"), ids("pb"), ids("psusp"), ids("buyer")
    t = now() - timedelta(hours=1)
    async with running_app(create_app(settings(tier_epoch_s=1), schema=schema)) as client:
        assert (await client.put("/v1/admin/plan", json=PLAN, headers=who("op", "plan_admin"))).status_code == 201
        for p in (a, b, s):
            await enrol(feed, p, t)
        await bind(feed, b, a, t)
        await bind(feed, c, s, t)
        await bind(feed, s, a, t)
        await feed.send(PromoterStatusChanged(promoter_id=s, status="suspended", reason="review", changed_at=t + timedelta(minutes=1)))
        # the suspended referrer gets nothing (recorded); level 2 is still paid
        o1 = ids("o1")
        await feed.send(paid(o1, c, now(), ("l1", "sku", 1, 10000)))
        # b buys for themselves: self-purchase rebate as level 1, their referrer a as level 2.
        # Tiers move at epoch boundaries (1 s here): four orders in one epoch, one in the next.
        boundary = datetime.fromtimestamp(math.ceil(now().timestamp()) + 2, timezone.utc)
        orders = [ids(f"self{i}") for i in range(5)]
        times = [boundary - timedelta(milliseconds=500 - 10 * i) for i in range(4)] + [boundary + timedelta(milliseconds=300)]
        for o, at in zip(orders, times):
            await feed.send(paid(o, b, at, ("l1", "sku", 2, 10000)))

        async def settled_in():
            n = await dbc.fetchval("SELECT count(*) FROM accruals WHERE order_id = ANY($1::text[])", [o1, *orders])
            return n == 1 + 2 * len(orders)

        await eventually(settled_in)
        skips = await dbc.fetch("SELECT beneficiary_id, level, reason FROM accrual_skips WHERE order_id = $1", o1)
        assert [tuple(r) for r in skips] == [(s, "level1", "suspended")]
        lvl = await dbc.fetch("SELECT level, beneficiary_id, amount_fen FROM accruals WHERE order_id = $1", o1)
        assert [tuple(r) for r in lvl] == [("level2", a, 500)]
        rows = await dbc.fetch("""SELECT order_id, level, beneficiary_id, tier, amount_fen FROM accruals
                                  WHERE order_id = ANY($1::text[]) ORDER BY paid_at, level DESC""", orders)
        selfs = [(r["tier"], r["amount_fen"]) for r in rows if r["level"] == "self_purchase"]
        # min_orders 3: the third order reaches partner, which applies from the next epoch on
        # (the fourth order, in the same epoch, keeps the old tier)
        assert selfs == [("sharer", 800)] * 4 + [("partner", 1000)]
        assert {r["beneficiary_id"] for r in rows if r["level"] == "level2"} == {a}
        change = await dbc.fetchrow("SELECT from_tier, to_tier, rule, effective_at FROM tier_changes WHERE promoter_id = $1", b)
        assert tuple(change) == ("sharer", "partner", "orders>=3", boundary)
        est = await client.post("/v1/estimate", json={"lines": [{"product_id": "sku", "quantity": 2, "paid_fen": 5000},
                                                                 {"product_id": "fixed-sku", "quantity": 3, "paid_fen": 4500}]},
                                headers=who(b))
        assert est.status_code == 200, est.text
        e = est.json()
        assert (e["tier"], e["share_earn_fen"], e["self_purchase_fen"]) == ("partner", 1000 + 450, 500 + 0)
        assert [l["share_earn_fen"] for l in e["lines"]] == [1000, 450]


async def test_settlement_waits_for_freeze_days_on_the_injected_clock(infra, schema, feed, ids, dbc):
    p, c = ids("p"), ids("buyer")
    t = now() - timedelta(hours=1)
    shift = {"by": timedelta(0)}
    async with running_app(create_app(settings(), schema=schema, clock=lambda: now() + shift["by"])) as client:
        plan = {**PLAN, "freeze_days": 7}
        assert (await client.put("/v1/admin/plan", json=plan, headers=who("op", "plan_admin"))).status_code == 201
        await enrol(feed, p, t)
        await bind(feed, c, p, t)
        order = ids("o")
        await feed.send(paid(order, c, now(), ("l1", "sku", 1, 5000)))
        await feed.send(OrderCompleted(order_id=order, reason="after_sale_window_closed", completed_at=now()))

        async def due():
            return await dbc.fetchval("SELECT due_at FROM settlement_due WHERE accrual_id = $1", f"{order}:l1:level1")

        due_at = await eventually(due)
        assert timedelta(days=6, hours=23) < due_at - now() <= timedelta(days=7)
        balance = lambda: client.get(f"/v1/admin/promoters/{p}/balance", headers=who("op", "plan_admin"))  # noqa: E731
        assert (await balance()).json()["frozen_fen"] == 500
        shift["by"] = timedelta(days=7, minutes=1)  # the freeze days pass

        async def settled():
            b = (await balance()).json()
            return b if b["available_fen"] == 500 and b["frozen_fen"] == 0 else None

        await eventually(settled)
        row = await dbc.fetchrow("SELECT settled_fen, settled_at FROM accruals WHERE accrual_id = $1", f"{order}:l1:level1")
        assert row["settled_fen"] == 500 and row["settled_at"] >= due_at
