"""The re-deriving audit over the real Kafka and PostgreSQL: a history with two plan versions, a
tier change, a suspended referrer, partial refunds before and after settlement and a withdrawal
is re-derived from the source events alone and equals what commission published and its live
balances; a balance changed in the live table and a forged accrual in the log are both reported
with the order, the beneficiary and the amount, and the CLI exits 1 for them (0 when equal)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from services.commission.audit.rederive import rederive
from services.commission.main import create_app
from shared.contracts.commission import CommissionAccrued
from shared.contracts.orders import OrderCompleted, OrderRefunded, RefundedLine
from shared.contracts.payout import WithdrawalPaid, WithdrawalRequested
from shared.contracts.referral import PromoterStatusChanged
from shared.events import new_event
from shared.outbox import OutboxRecord, record
from shared.topics import COMMISSION_EVENTS
from tests.conftest import eventually, running_app
from tests.integration.commission.conftest import PLAN, now, settings, who
from tests.integration.commission.test_lifecycle import bind, enrol, paid

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
PLAN_V2 = {**PLAN, "tiers": [{"name": "sharer", "level1_bp": 1200, "level2_bp": 300, "self_purchase_bp": 900},
                             *PLAN["tiers"][1:]]}


async def play_history(client, feed, dbc, ids) -> dict[str, str]:
    """A small but complete history; returns the people. Waits until the live service has
    decided and settled everything."""
    a, b, s, c, d = ids("pa"), ids("pb"), ids("ps"), ids("buyer-c"), ids("buyer-d")
    t = now() - timedelta(hours=1)
    assert (await client.put("/v1/admin/plan", json=PLAN, headers=who("op", "plan_admin"))).status_code == 201
    for p in (a, b, s):
        await enrol(feed, p, t)
    await bind(feed, b, a, t)
    await bind(feed, c, b, t)
    await bind(feed, s, a, t)
    await bind(feed, d, s, t)
    await feed.send(PromoterStatusChanged(promoter_id=s, status="suspended", reason="review", changed_at=t + timedelta(minutes=1)))
    o1, o2 = ids("o1"), ids("o2")
    await feed.send(paid(o1, c, now(), ("l1", "sku", 3, 2999), ("l2", "fixed-sku", 2, 3000)))
    await feed.send(paid(o2, d, now(), ("l1", "sku", 1, 10000)))   # suspended referrer: level 2 only
    selfs = [ids(f"self{i}") for i in range(4)]                     # b reaches partner after 3
    for o in selfs:
        await feed.send(paid(o, b, now(), ("l1", "sku", 2, 10000)))
    await feed.send(OrderRefunded(order_id=o1, out_refund_no="r1", amount_fen=1000, refunded_at=now(),
                                  lines=(RefundedLine(line_id="l1", quantity=1, amount_fen=1000),)))
    await feed.send(OrderCompleted(order_id=o1, reason="receipt_confirmed", completed_at=now()))
    await eventually(lambda: dbc.fetchval("SELECT settled_at IS NOT NULL FROM accruals WHERE accrual_id = $1", f"{o1}:l1:level1"))
    wid = ids("w")
    await feed.send(WithdrawalRequested(withdrawal_id=wid, promoter_id=b, amount_fen=450, fee_fen=0, requested_at=now()))
    await feed.send(WithdrawalPaid(withdrawal_id=wid, promoter_id=b, amount_fen=450, fee_fen=0, out_bill_no="bill" + wid[-10:],
                                   paid_at=now()))
    # after settlement and withdrawal: the rest of line 1 and all of line 2
    await feed.send(OrderRefunded(order_id=o1, out_refund_no="r2", amount_fen=4999, refunded_at=now(), lines=(
        RefundedLine(line_id="l1", quantity=2, amount_fen=1999), RefundedLine(line_id="l2", quantity=2, amount_fen=3000))))
    assert (await client.put("/v1/admin/plan", json=PLAN_V2, headers=who("op", "plan_admin"))).status_code == 201
    o3 = ids("o3")
    await feed.send(paid(o3, c, now(), ("l1", "sku", 1, 5000)))  # under plan version 2
    await feed.send(OrderCompleted(order_id=o3, reason="receipt_confirmed", completed_at=now()))
    await eventually(lambda: dbc.fetchval("SELECT settled_at IS NOT NULL FROM accruals WHERE accrual_id = $1", f"{o3}:l1:level2"))
    await eventually(lambda: dbc.fetchval("SELECT reversed_fen = 599 FROM balances WHERE promoter_id = $1", b))
    n = await dbc.fetchval("SELECT count(*) FROM accruals WHERE order_id = ANY($1::text[])", [o1, o2, o3, *selfs])
    assert n == 4 + 1 + 2 + 8
    return {"a": a, "b": b, "s": s, "c": c, "o1": o1, "o3": o3}


#: tiers move at one-second epoch boundaries (the service's scale-out rule), so the history's tier change
#: shows within the test; the audit folds with the same setting
EPOCH = {"tier_epoch_s": 1.0}


def cli(schema: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COMMISSION_SCHEMA": schema, "COMMISSION_TIER_EPOCH_S": "1"}
    return subprocess.run([sys.executable, "-m", "services.commission.audit", "rederive", "--quiet", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


async def test_rederive_equals_live_then_catches_a_changed_balance_and_a_forged_accrual(infra, schema, feed, ids, dbc):
    into = "t_" + uuid.uuid4().hex[:12]
    try:
        async with running_app(create_app(settings(**EPOCH), schema=schema)) as client:
            who_ = await play_history(client, feed, dbc, ids)
            a, b = who_["a"], who_["b"]
            r = await rederive(settings(**EPOCH), schema, into=into)
            assert r.equal, [str(d) for d in r.differences]
            assert r.balances_compared and r.accruals == 15 and r.settlements == 6 and r.reversals == 6
            assert r.counts["CommissionPlanPublished"] == 2 and r.counts["OrderPaid"] == 7
            conn = await asyncpg.connect(infra["db"], server_settings={"search_path": into})
            try:
                v2 = await conn.fetchrow("SELECT plan_version, amount_fen, tier FROM derived_accruals WHERE accrual_id = $1",
                                         f"{who_['o3']}:l1:level2")
                assert tuple(v2) == (2, 150, "sharer")
                # b reaches partner with its third order (o1, self 1, self 2), in force from the next one-second
                # epoch: the re-derived tiers are the live ones, accrual by accrual
                derived = {tuple(r) for r in await conn.fetch("SELECT accrual_id, tier, amount_fen FROM derived_accruals")}
                live = {tuple(r) for r in await dbc.fetch("SELECT accrual_id, tier, amount_fen FROM accruals")}
                assert derived == live
                assert await conn.fetchval("SELECT reversed_fen FROM derived_balances WHERE promoter_id = $1", b) == 599
            finally:
                await conn.close()
            done = cli(schema, "--no-store")
            assert done.returncode == 0, done.stdout + done.stderr

            # 1. a balance changed behind the log's back
            await dbc.execute("UPDATE balances SET available_fen = available_fen + 7 WHERE promoter_id = $1", a)
            r = await rederive(settings(**EPOCH), schema)
            assert not r.equal
            assert [(x.kind, x.beneficiary_id, x.amount_log_fen - x.amount_derived_fen) for x in r.differences] == [("balance", a, 7)]
            await dbc.execute("UPDATE balances SET available_fen = available_fen - 7 WHERE promoter_id = $1", a)

            # 2. an accrual nobody owes, published through the live outbox (with its money)
            forged = CommissionAccrued(accrual_id="forged:l1:level1", order_id="forged", line_id="l1", beneficiary_id=a,
                                       buyer_id="nobody", level="level1", base_fen=100000, quantity=1, rate_bp=1000,
                                       amount_fen=10000, plan_version=1, tier="sharer", unfreeze="order_completed+0d",
                                       paid_at=datetime(2020, 1, 1, tzinfo=timezone.utc))
            async with dbc.transaction():
                await record(dbc, [OutboxRecord.of(COMMISSION_EVENTS, new_event(forged))])
                await dbc.execute("UPDATE balances SET frozen_fen = frozen_fen + 10000 WHERE promoter_id = $1", a)
            r = await rederive(settings(**EPOCH), schema)
            got = [(x.kind, x.order_id, x.beneficiary_id, x.amount_log_fen, x.amount_derived_fen) for x in r.differences]
            assert ("accrual", "forged", a, 10000, None) in got
            assert [x.amount_log_fen - x.amount_derived_fen for x in r.differences if x.kind == "balance"] == [10000]
            # a period after the forged payment does not see it (and compares lines only)
            r = await rederive(settings(**EPOCH), schema, period=(now() - timedelta(hours=2), None))
            assert r.equal and not r.balances_compared, [str(d) for d in r.differences]
            done = cli(schema, "--no-store")
            assert done.returncode == 1
            assert "order forged" in done.stdout and a in done.stdout and "published 10000 fen, re-derived none" in done.stdout
    finally:
        from shared.db import drop_schema

        await drop_schema(infra["db"], into)
