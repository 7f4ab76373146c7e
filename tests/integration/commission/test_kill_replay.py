"""A random history over the real Kafka and PostgreSQL, with the service killed (-9) while it
applies a large batch: after a restart, every balance equals the sums expected from the history,
and the audit replay (`python -m services.commission.replay`) finds no difference."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from shared.contracts.commission import CommissionPlanPublished
from shared.contracts.orders import OrderCompleted, OrderLine, OrderPaid, OrderRefunded, RefundedLine
from shared.contracts.payout import WithdrawalPaid, WithdrawalRequested
from shared.contracts.referral import PromoterEnrolled, ReferralBound
from shared.topics import ORDER_EVENTS
from tests.integration.commission.conftest import end_offsets, now
from simulation.cluster import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
L1_BP, L2_BP = 1000, 500


def start_service(schema: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "COMMISSION_SCHEMA": schema, "HOST": "127.0.0.1", "PORT": str(free_port()),
           "LOG_LEVEL": "WARNING", "PROJECTOR_BATCH_MAX": "2000", "COMMISSION_SETTLE_POLL_S": "0.2"}
    return subprocess.Popen([sys.executable, "-m", "services.commission.main"], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def offsets_of(conn: asyncpg.Connection, topic: str) -> int:
    return await conn.fetchval("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets WHERE topic = $1", topic)


async def test_killed_mid_batch_balances_equal_expected_sums_and_replay(infra, schema, feed, ids, tmp_path):
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    print("seed", seed)
    t = now() - timedelta(days=1)
    await feed.send(CommissionPlanPublished(plan_version=1, published_by="test", published_at=t - timedelta(hours=1), plan={
        "levels": 2, "cap_bp": 3000, "freeze_days": 0,
        "tiers": [{"name": "sharer", "level1_bp": L1_BP, "level2_bp": L2_BP, "self_purchase_bp": 0}]}))
    # a tree of promoters, and customers bound to them
    promoters = [ids(f"p{i}") for i in range(40)]
    referrer: dict[str, str] = {}
    for i, p in enumerate(promoters):
        await feed.send(PromoterEnrolled(promoter_id=p, promoter_code=f"c{i}", enrolled_by="operator", enrolled_at=t), wait=False)
        if i:
            referrer[p] = promoters[rnd.randrange(i)]
    customers = [ids(f"c{i}") for i in range(400)]
    for c in customers:
        referrer[c] = rnd.choice(promoters)
    for c, p in referrer.items():
        await feed.send(ReferralBound(customer_id=c, promoter_id=p, promoter_code="x", source="link", mode="first_touch",
                                      bound_at=t), wait=False)
    await feed.flush()

    accrued, reversed_, settled, withdrawn = (defaultdict(int) for _ in range(4))
    n_orders = 6000
    for i in range(n_orders):
        buyer = rnd.choice(customers)
        oid = ids(f"o{i}")
        lines = [(f"l{j}", rnd.randint(1, 5), rnd.randint(0, 50_000)) for j in range(rnd.randint(1, 3))]
        await feed.send(OrderPaid(order_id=oid, buyer_id=buyer, postage_fen=0, total_fen=sum(x[2] for x in lines),
                                  transaction_id=f"tx{i}", paid_at=t + timedelta(seconds=i),
                                  lines=tuple(OrderLine(line_id=l, product_id="sku", quantity=q, unit_price_fen=fen // q,
                                                        paid_fen=fen) for l, q, fen in lines)), wait=False)
        l1, l2 = referrer[buyer], referrer.get(referrer[buyer])
        due = {}
        for l, _, fen in lines:
            due[(l1, l)] = fen * L1_BP // 10_000
            if l2:
                due[(l2, l)] = fen * L2_BP // 10_000
        refunded = {l: 0 for l, _, _ in lines}
        for k in range(rnd.choice([0, 0, 1, 2])):  # partial refunds, before completion
            l, _, fen = rnd.choice(lines)
            part = rnd.randint(0, fen - refunded[l]) if k == 0 else fen - refunded[l]
            refunded[l] += part
            await feed.send(OrderRefunded(order_id=oid, out_refund_no=f"r{k}", amount_fen=part, refunded_at=t + timedelta(seconds=i),
                                          lines=(RefundedLine(line_id=l, quantity=1, amount_fen=part),)), wait=False)
        for (p, l), amount in due.items():
            fen = next(x[2] for x in lines if x[0] == l)
            back = amount if refunded[l] >= fen else amount * refunded[l] // fen
            accrued[p] += amount
            reversed_[p] += back
        if rnd.random() < 0.6:
            await feed.send(OrderCompleted(order_id=oid, reason="after_sale_window_closed", completed_at=t + timedelta(seconds=i)),
                            wait=False)
            for (p, l), amount in due.items():
                fen = next(x[2] for x in lines if x[0] == l)
                settled[p] += amount - (amount if refunded[l] >= fen else amount * refunded[l] // fen)
    for j, p in enumerate(rnd.sample(promoters, 10)):
        w = ids(f"w{j}")
        amount = rnd.randint(1, 5000)
        await feed.send(WithdrawalRequested(withdrawal_id=w, promoter_id=p, amount_fen=amount, fee_fen=0, requested_at=t), wait=False)
        await feed.send(WithdrawalPaid(withdrawal_id=w, promoter_id=p, amount_fen=amount, fee_fen=0, out_bill_no=w[-30:], paid_at=t),
                        wait=False)
        withdrawn[p] += amount
    await feed.flush()
    orders_end = sum((await end_offsets(infra["kafka"], [ORDER_EVENTS])).values())

    conn = await asyncpg.connect(infra["db"], server_settings={"search_path": schema})
    log = tmp_path / "service.log"
    proc = start_service(schema, log)
    try:
        # kill -9 as soon as the first batch has committed: the next large batch is in flight
        start = await offsets_of(conn, ORDER_EVENTS)
        for _ in range(600):
            if await offsets_of(conn, ORDER_EVENTS) > start:
                break
            await asyncio.sleep(0.05)
        progressed = await offsets_of(conn, ORDER_EVENTS)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert progressed < orders_end, "the service was not killed mid-history"
        proc = start_service(schema, log)

        async def quiet() -> bool:
            if await offsets_of(conn, ORDER_EVENTS) < orders_end:
                return False
            if await conn.fetchval("SELECT count(*) FROM outbox_pending"):
                return False
            return not await conn.fetchval("SELECT count(*) FROM settlement_due")

        for _ in range(1200):
            if await quiet():
                await asyncio.sleep(0.5)
                if await quiet():
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the service did not catch up: " + log.read_text()[-2000:])

        rows = {r["promoter_id"]: r for r in await conn.fetch("SELECT * FROM balances WHERE promoter_id = ANY($1::text[])", promoters)}
        for p in promoters:
            r = rows.get(p)
            got = (r["frozen_fen"], r["available_fen"], r["reserved_fen"], r["withdrawn_fen"], r["reversed_fen"]) if r else (0,) * 5
            want = (accrued[p] - reversed_[p] - settled[p], settled[p] - withdrawn[p], 0, withdrawn[p], reversed_[p])
            assert got == want, (p, got, want, seed, await conn.fetchval("SELECT count(*) FROM plans"),
                                 await conn.fetch("SELECT reason, count(*) FROM accrual_skips GROUP BY 1"), log.read_text()[-3000:])
        assert await conn.fetchval("SELECT count(*) FROM paid_orders") == n_orders
        # the backlog put orders ahead of their bindings; the ordering guard held them back
        assert await conn.fetchval("SELECT count(*) FROM late_bindings") == 0
        assert await conn.fetchval("SELECT count(*) FROM deferred_order_events") == 0

        replay = subprocess.run([sys.executable, "-m", "services.commission.replay", "--schema", schema],
                                cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING"}, capture_output=True, text=True, timeout=240)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "replay equals live (0 differences)" in replay.stdout
        assert "MISSING" not in replay.stdout, replay.stdout
        assert "replay:" in replay.stderr  # progress lines
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await conn.close()
