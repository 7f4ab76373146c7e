"""The console's end-to-end stack: referral, commission and payout as separate processes (as
deployed) plus the console, on fresh schemas and the test session's topics, seeded with a small
history through the services' own HTTP APIs and contract events on Kafka (orders stood in for by
publishing OrderPaid/Refunded/Completed)."""
from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from shared.contracts import topic_of
from shared.contracts.orders import OrderCompleted, OrderLine, OrderPaid, OrderRefunded, RefundedLine
from shared.events import new_event
from shared.topics import without_namespace
from simulation.cluster import ServiceProcess
from tests.identity import secret, who
from simulation.cluster import free_ports

SECRET = secret()  # the test session's identity key (tests/identity.py)
PASSWORD = "console-pass-1"
ACCOUNTS = {"ops": "operator", "fin": "finance", "plan": "plan_admin", "aud": "auditor", "view": "viewer"}
PLAN_V1 = {"levels": 2, "cap_bp": 3000, "freeze_days": 7,
           "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800},
                     {"name": "partner", "level1_bp": 1500, "level2_bp": 800, "self_purchase_bp": 1000,
                      "upgrade": {"min_settled_sales_fen": 500000, "min_direct_buyers": 10, "min_orders": 20}}],
           "overrides": []}


@dataclass
class Stack:
    procs: dict[str, ServiceProcess]
    schemas: dict[str, str]
    #: the stack's own topics, so that the overview counts exactly what the seed made
    namespace: str
    ids: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.procs[name].url

    @staticmethod
    def who(user: str, *roles: str, audience: str, **kw) -> dict[str, str]:
        return who(user, *roles, audience=audience, **kw)

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()


async def start(log_dir: Path) -> Stack:
    run = uuid.uuid4().hex[:8]
    schemas = {n: f"t_{n[:4]}_{run}" for n in ("referral", "commission", "payout", "console")}
    ports = dict(zip(("referral", "commission", "payout", "console"), free_ports(4)))
    namespace = "console" + run
    common = {"FENXIAO_IDENTITY_SECRET": SECRET, "LOG_LEVEL": "WARNING", "FENXIAO_TOPIC_NAMESPACE": namespace}
    env = {
        "referral": {"REFERRAL_SCHEMA": schemas["referral"]},
        # freeze days pass at once: settlement follows completion immediately
        "commission": {"COMMISSION_SCHEMA": schemas["commission"], "COMMISSION_CLOCK_OFFSET_S": str(30 * 86400),
                       "COMMISSION_SETTLE_POLL_S": "0.2"},
        "payout": {"PAYOUT_SCHEMA": schemas["payout"], "PAYOUT_AUTO_APPROVE_MAX_FEN": "5000"},
        "console": {"CONSOLE_SCHEMA": schemas["console"], "CONSOLE_REFERRAL_URL": f"http://127.0.0.1:{ports['referral']}",
                    "CONSOLE_COMMISSION_URL": f"http://127.0.0.1:{ports['commission']}",
                    "CONSOLE_PAYOUT_URL": f"http://127.0.0.1:{ports['payout']}",
                    "CONSOLE_COMMISSION_SCHEMA": schemas["commission"], "CONSOLE_PAYOUT_SCHEMA": schemas["payout"],
                    "CONSOLE_BOOTSTRAP_OPERATORS": ";".join(f"{u}:{r}:{PASSWORD}" for u, r in ACCOUNTS.items())},
    }
    procs = {n: ServiceProcess(n, ports[n], {**common, **env[n]}, log_dir / f"{n}.log") for n in ports}
    stack = Stack(procs, schemas, namespace)
    try:
        for p in procs.values():
            p.start()
        await asyncio.gather(*(p.wait_ready(timeout=120) for p in procs.values()))
    except BaseException:
        stack.stop()
        raise
    return stack


async def _publish(namespace: str, payloads) -> list:
    p = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"], acks="all", enable_idempotence=True)
    await p.start()
    envs = []
    try:
        for payload in payloads:
            env = new_event(payload)
            topic = f"{namespace}.{without_namespace(topic_of(payload.event_type))}"
            await p.send_and_wait(topic, env.to_bytes(), key=env.key.encode(),
                                  headers=[("event_type", env.event_type.encode())])
            envs.append(env)
    finally:
        await p.stop()
    return envs


async def _until(check, timeout: float = 60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = await check()
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {v!r}")
        await asyncio.sleep(0.2)


async def seed(stack: Stack) -> dict[str, str]:
    """Promoters A (top) and B (under A), customer C under B, an application pending, plan v1,
    order 1 (paid, completed: settled) and order 2 (paid, partly refunded: frozen), and two
    withdrawals waiting for review (B 150.00 yuan, A 80.00 yuan)."""
    run = uuid.uuid4().hex[:6]
    a, b, c, d = f"pa-{run}", f"pb-{run}", f"cust-{run}", f"appl-{run}"
    o1, o2 = f"o1-{run}", f"o2-{run}"
    admin = lambda service: stack.who("seed", "plan_admin", audience=service)  # noqa: E731
    async with httpx.AsyncClient(timeout=10) as h:
        ref, com, pay = stack.url("referral"), stack.url("commission"), stack.url("payout")
        r = await h.put(f"{com}/v1/admin/plan", json=PLAN_V1, headers=admin("commission"))
        assert r.status_code == 201, r.text
        code_a = (await h.post(f"{ref}/v1/promoters", json={"nickname": "王小明"}, headers=stack.who(a, audience="referral"))).json()["code"]
        code_b = (await h.post(f"{ref}/v1/promoters", json={"nickname": "李小红"}, headers=stack.who(b, audience="referral"))).json()["code"]
        for cust, code in ((b, code_a), (c, code_b)):
            r = await h.post(f"{ref}/v1/bindings", json={"promoter_code": code, "source": "poster"}, headers=stack.who(cust, audience="referral"))
            assert r.status_code == 200, r.text
        r = await h.put(f"{ref}/v1/admin/settings", json={"enrolment_mode": "application"}, headers=admin("referral"))
        assert r.status_code == 200, r.text
        r = await h.post(f"{ref}/v1/promoters/applications", json={"note": "我开了一家茶馆，想推广", "nickname": "赵六"},
                         headers=stack.who(d, audience="referral"))
        assert r.status_code == 201, r.text

        now = datetime.now(timezone.utc)
        line = lambda lid, fen: OrderLine(line_id=lid, product_id="tea-01", quantity=1, unit_price_fen=fen, paid_fen=fen)  # noqa: E731
        paid1 = OrderPaid(order_id=o1, buyer_id=c, lines=(line("l1", 200000),), postage_fen=0, total_fen=200000,
                          transaction_id="tx" + o1, paid_at=now)
        paid2 = OrderPaid(order_id=o2, buyer_id=c, lines=(line("l1", 49900),), postage_fen=0, total_fen=49900,
                          transaction_id="tx" + o2, paid_at=now + timedelta(seconds=1))
        envs = await _publish(stack.namespace, [paid1, paid2,
                               OrderCompleted(order_id=o1, reason="receipt_confirmed", completed_at=now + timedelta(seconds=2)),
                               OrderRefunded(order_id=o2, out_refund_no="rf-" + o2, amount_fen=10000, refunded_at=now + timedelta(seconds=3),
                                             lines=(RefundedLine(line_id="l1", quantity=0, amount_fen=10000),))])

        async def available(pid: str, fen: int):
            r = await h.get(f"{pay}/v1/admin/promoters/{pid}/available", headers=admin("payout"))
            return r.status_code == 200 and r.json()["available_fen"] >= fen

        await _until(lambda: available(b, 20000))
        await _until(lambda: available(a, 10000))
        wd = {}
        for who_, fen in ((b, 15000), (a, 8000)):
            r = await h.post(f"{pay}/v1/withdrawals", json={"amount_fen": fen, "openid": "oid-" + who_,
                                                            "idempotency_key": "k-" + who_},
                          headers=stack.who(who_, audience="payout", openid="oid-" + who_))
            assert r.status_code == 201 and r.json()["status"] == "pending_review", r.text
            wd[who_] = r.json()["withdrawal_id"]

        async def refunded():
            r = await h.get(f"{com}/v1/admin/explain/orders/{o2}", headers=admin("commission"))
            return r.status_code == 200 and r.json()["totals"]["reversed_fen"] > 0
        await _until(refunded)
    stack.ids = {"a": a, "b": b, "c": c, "applicant": d, "o1": o1, "o2": o2, "wd_b": wd[b], "wd_a": wd[a],
                 "order_paid_1": str(envs[0].event_id)}
    return stack.ids
