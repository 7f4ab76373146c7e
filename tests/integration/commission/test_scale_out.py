"""Commission scales out by partitions: the same random history applied by two worker processes
(one consumer group, the order partitions split between them) gives exactly what one process
gives (accruals, skips, tiers, balances, event ids); and with one of two workers killed (-9)
mid-batch the survivor takes its partitions over with nothing lost or doubled."""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.contracts.commission import CommissionPlanPublished
from shared.contracts.orders import OrderCompleted, OrderLine, OrderPaid, OrderRefunded, RefundedLine
from shared.contracts.referral import PromoterEnrolled, ReferralBound
from shared.db import drop_schema
from shared.topics import ORDER_EVENTS
from simulation.cluster import free_port
from tests.integration.commission.conftest import end_offsets, now, start_at_end

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
PLAN = {"levels": 2, "cap_bp": 3000, "freeze_days": 0,
        "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800},
                  {"name": "partner", "level1_bp": 1500, "level2_bp": 800, "self_purchase_bp": 1000,
                   "upgrade": {"min_orders": 6, "min_direct_buyers": 2}}]}


class Worker:
    def __init__(self, schema: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.commission.main"], cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "COMMISSION_SCHEMA": schema, "HOST": "127.0.0.1", "PORT": str(self.port),
                 "LOG_LEVEL": "WARNING", "COMMISSION_SETTLE_POLL_S": "0.2", "COMMISSION_TIER_EPOCH_S": "1", **env})

    async def order_partitions(self) -> list[str] | None:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                r = await http.get(f"http://127.0.0.1:{self.port}/readyz")
            # 503 while a partition waits for its position: the positions are there all the same
            return [k for k in r.json()["positions"].get("commission", {}) if ".orders." in k] or None
        except httpx.HTTPError:
            return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def group_settled(workers: list[Worker], partitions: int = 4, timeout: float = 60) -> None:
    """Until the live workers own every order partition between them, each at least one."""
    for _ in range(int(timeout / 0.2)):
        owned = [await w.order_partitions() for w in workers]
        if all(owned) and sum(len(o) for o in owned) == partitions and len({p for o in owned for p in o}) == partitions:  # type: ignore[union-attr]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the consumer group did not settle: {owned}")


async def caught_up(conn: asyncpg.Connection, orders_end: int, timeout: float = 180, log: Path | None = None) -> None:
    async def quiet() -> bool:
        pos = await conn.fetchval("SELECT coalesce(sum(next_offset), 0)::bigint FROM projector_offsets WHERE topic = $1", ORDER_EVENTS)
        if pos < orders_end:
            return False
        return not await conn.fetchval(
            """SELECT (SELECT count(*) FROM outbox_pending) + (SELECT count(*) FROM settlement_due)
                      + (SELECT count(*) FROM deferred_order_events)""")

    for _ in range(int(timeout / 0.2)):
        if await quiet():
            await asyncio.sleep(0.5)
            if await quiet():
                return
        await asyncio.sleep(0.2)
    raise AssertionError("the workers did not catch up" + ("\n" + log.read_text()[-3000:] if log else ""))


async def publish_plan(feed) -> None:
    """Before the workers start: they copy the plans of the log into an empty plan table at start."""
    await feed.send(CommissionPlanPublished(plan_version=1, published_by="test", published_at=now() - timedelta(hours=4),
                                            plan=PLAN))


async def publish_history(feed, ids, rnd: random.Random, n_orders: int) -> None:
    """Promoters, customers bound to them, then orders; a third of the customers are bound only
    just before their first payment (the binding right before the OrderPaid in the log), and
    promoters reach the upper tier mid-stream (orders paid over several 1-second epochs)."""
    t = now() - timedelta(hours=2)
    promoters = [ids(f"p{i}") for i in range(30)]
    referrer: dict[str, str] = {}
    for i, p in enumerate(promoters):
        await feed.send(PromoterEnrolled(promoter_id=p, promoter_code=f"c{i}", enrolled_by="operator", enrolled_at=t),
                        wait=False, occurred_at=t)
        if i:
            referrer[p] = promoters[rnd.randrange(i)]
            await feed.send(ReferralBound(customer_id=p, promoter_id=referrer[p], promoter_code="x", source="link",
                                          mode="first_touch", bound_at=t), wait=False, occurred_at=t)
    customers = [ids(f"c{i}") for i in range(300)]
    late = set(rnd.sample(customers, 100))
    for c in customers:
        referrer[c] = rnd.choice(promoters)
        if c not in late:
            await feed.send(ReferralBound(customer_id=c, promoter_id=referrer[c], promoter_code="x", source="link",
                                          mode="first_touch", bound_at=t), wait=False, occurred_at=t)
    await feed.flush()
    start = now() - timedelta(minutes=30)
    for i in range(n_orders):
        buyer = rnd.choice(customers + promoters[:10])
        paid_at = start + timedelta(milliseconds=25 * i)
        if buyer in late:
            late.discard(buyer)
            await feed.send(ReferralBound(customer_id=buyer, promoter_id=referrer[buyer], promoter_code="x", source="link",
                                          mode="first_touch", bound_at=paid_at - timedelta(milliseconds=5)),
                            occurred_at=paid_at - timedelta(milliseconds=5))
        oid = ids(f"o{i}")
        lines = [(f"l{j}", rnd.randint(1, 3), rnd.randint(1, 30_000)) for j in range(rnd.randint(1, 3))]
        await feed.send(OrderPaid(order_id=oid, buyer_id=buyer, postage_fen=0, total_fen=sum(x[2] for x in lines),
                                  transaction_id=f"tx{i}", paid_at=paid_at,
                                  lines=tuple(OrderLine(line_id=l, product_id="sku", quantity=q, unit_price_fen=fen // q,
                                                        paid_fen=fen) for l, q, fen in lines)), wait=False, occurred_at=paid_at)
        if rnd.random() < 0.2:
            l, _, fen = rnd.choice(lines)
            part = rnd.randint(1, fen)
            await feed.send(OrderRefunded(order_id=oid, out_refund_no="r1", amount_fen=part, refunded_at=paid_at,
                                          lines=(RefundedLine(line_id=l, quantity=1, amount_fen=part),)), wait=False,
                            occurred_at=paid_at)
        if rnd.random() < 0.3:
            await feed.send(OrderCompleted(order_id=oid, reason="after_sale_window_closed", completed_at=paid_at), wait=False,
                            occurred_at=paid_at)
    await feed.flush()


async def outcome(conn: asyncpg.Connection) -> dict:
    return {
        "accruals": sorted(tuple(r) for r in await conn.fetch(
            """SELECT accrual_id, beneficiary_id, tier, amount_fen, reversed_fen, settled_fen, plan_version, event_id::text
               FROM accruals""")),
        "skips": sorted(tuple(r) for r in await conn.fetch(
            "SELECT order_id, coalesce(line_id, '-'), beneficiary_id, level, reason FROM accrual_skips")),
        "tiers": sorted(tuple(r) for r in await conn.fetch(
            "SELECT promoter_id, from_tier, to_tier, rule, effective_at FROM tier_changes")),
        "balances": sorted(tuple(r) for r in await conn.fetch(
            "SELECT promoter_id, frozen_fen, available_fen, reserved_fen, withdrawn_fen, reversed_fen FROM balances")),
        "events": sorted(r[0] for r in await conn.fetch("SELECT event_id::text FROM outbox")),
        "late_bindings": await conn.fetchval("SELECT count(*) FROM late_bindings"),
    }


async def test_two_workers_decide_exactly_what_one_decides(infra, feed, ids, tmp_path):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    one, two = "t_" + uuid.uuid4().hex[:12], "t_" + uuid.uuid4().hex[:12]
    for s in (one, two):
        await start_at_end(infra["db"], infra["kafka"], s)
    log = tmp_path / "workers.log"
    await publish_plan(feed)
    # the two take small batches: what a batch holds back at start is then released in many
    # bounded steps (release_max = PROJECTOR_BATCH_MAX), and must still come out the same
    workers = [Worker(one, log), Worker(two, log, PROJECTOR_BATCH_MAX="60"), Worker(two, log, PROJECTOR_BATCH_MAX="60")]
    conns = [await asyncpg.connect(infra["db"], server_settings={"search_path": s}) for s in (one, two)]
    try:
        await group_settled(workers[:1])
        await group_settled(workers[1:])
        await publish_history(feed, ids, random.Random(seed), 1500)
        orders_end = sum((await end_offsets(infra["kafka"], [ORDER_EVENTS])).values())
        for c in conns:
            await caught_up(c, orders_end, log=log)
        a, b = await outcome(conns[0]), await outcome(conns[1])
        assert len(a["accruals"]) > 1500 and a["tiers"], (len(a["accruals"]), a["tiers"])
        assert a["late_bindings"] == 0
        for k in a:
            assert a[k] == b[k], (k, seed, [x for x in a[k] if x not in b[k]][:5], [x for x in b[k] if x not in a[k]][:5])
    finally:
        for w in workers:
            w.stop()
        for c in conns:
            await c.close()
        for s in (one, two):
            await drop_schema(infra["db"], s)


async def test_one_of_two_workers_killed_mid_batch_the_survivor_takes_over(infra, schema, feed, ids, tmp_path):
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    print("seed", seed)
    log = tmp_path / "workers.log"
    # a one-process reference over the same history, to compare with
    ref_schema = "t_" + uuid.uuid4().hex[:12]
    await start_at_end(infra["db"], infra["kafka"], ref_schema)
    conn = await asyncpg.connect(infra["db"], server_settings={"search_path": schema})
    ref_conn = await asyncpg.connect(infra["db"], server_settings={"search_path": ref_schema})
    await publish_plan(feed)
    workers: list[Worker] = []
    reference = None
    try:
        # a backlog, then two workers: they split it between them
        await publish_history(feed, ids, rnd, 8000)
        orders_end = sum((await end_offsets(infra["kafka"], [ORDER_EVENTS])).values())
        start = await conn.fetchval("SELECT coalesce(sum(next_offset), 0)::bigint FROM projector_offsets WHERE topic = $1", ORDER_EVENTS)
        # the victim starts on the backlog; once it is under way the second worker joins, the
        # group splits the partitions, and the victim is killed (-9) in the middle of its batches
        victim = Worker(schema, log, PROJECTOR_BATCH_MAX="100")
        workers = [victim]
        reference = Worker(ref_schema, log)

        async def progress() -> int:
            return await conn.fetchval("SELECT coalesce(sum(next_offset), 0)::bigint FROM projector_offsets WHERE topic = $1",
                                       ORDER_EVENTS)

        for _ in range(3000):
            if await progress() > start:
                break
            await asyncio.sleep(0.02)
        workers.append(Worker(schema, log, PROJECTOR_BATCH_MAX="500"))
        owned = None
        for _ in range(3000):
            now_owned = await victim.order_partitions()
            owned = now_owned or owned  # what it owned last (a rebalance empties it for a moment)
            both = await workers[1].order_partitions()
            if (now_owned and both) or await progress() > start + 0.7 * (orders_end - start):
                break
            await asyncio.sleep(0.05)
        victim.stop(signal.SIGKILL)
        progressed = await conn.fetchval("SELECT coalesce(sum(next_offset), 0)::bigint FROM projector_offsets WHERE topic = $1", ORDER_EVENTS)
        assert owned and progressed < orders_end, "the worker was not killed mid-history"
        # the survivor takes every partition (after the group's session timeout) and finishes
        await group_settled(workers[1:], timeout=90)
        await caught_up(conn, orders_end, timeout=240, log=log)
        await caught_up(ref_conn, orders_end, timeout=240, log=log)
        a, b = await outcome(ref_conn), await outcome(conn)
        for k in a:
            assert a[k] == b[k], (k, seed, [x for x in a[k] if x not in b[k]][:5], [x for x in b[k] if x not in a[k]][:5])
        replay = subprocess.run([sys.executable, "-m", "services.commission.replay", "--schema", schema],
                                cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING"}, capture_output=True, text=True, timeout=240)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "replay equals live (0 differences)" in replay.stdout
    finally:
        for w in workers + ([reference] if reference else []):
            w.stop()
        await conn.close()
        await ref_conn.close()
        await drop_schema(infra["db"], ref_schema)
