"""The console service in-process on the real Kafka and PostgreSQL: login with scrypt-hashed
passwords, server-side sessions that expire, CSRF on every form, roles enforced before any
backend call, every action (refusals and failed logins too) recorded as OperatorActionRecorded
and published on the console topic; the overview projection folds the events it reads."""
from __future__ import annotations

import json
import random
import re
import uuid
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.console.main import create_app
from services.console.settings import ConsoleSettings
from shared.contracts import topic_of
from shared.contracts.commission import CommissionAccrued
from shared.contracts.orders import OrderLine, OrderPaid
from shared.contracts.referral import PromoterEnrolled
from shared.events import new_event
from shared.outbox import PUBLISHED
from shared.topics import ALL_TOPICS
from tests.conftest import create_topics, eventually, running_app

pytestmark = pytest.mark.integration
PW = "pass-word-1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def settings() -> ConsoleSettings:
    nowhere = "http://127.0.0.1:9"  # no backend: pages render with the error, writes never reach one
    return ConsoleSettings(bootstrap_operators=f"fin:finance:{PW};view:viewer:{PW}", referral_url=nowhere,
                           commission_url=nowhere, payout_url=nowhere, backend_timeout_s=2)


async def login(client, user: str, password: str = PW):
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return await client.post("/login", data={"username": user, "password": password, "csrf_token": token, "next": "/withdrawals"})


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def actions(dsn: str, schema: str) -> list[dict]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'SET search_path = "{schema}"')
        rows = await conn.fetch(f'SELECT value, {PUBLISHED} AS published FROM outbox ORDER BY seq')
    finally:
        await conn.close()
    return [{**json.loads(bytes(r["value"]))["payload"], "published": r["published"]} for r in rows]


async def test_login_sessions_csrf_roles_and_every_action_is_an_event(infra, fresh_schema):
    await create_topics(infra["kafka"], list(ALL_TOPICS))
    clock = Clock()
    async with running_app(create_app(settings(), schema=fresh_schema, clock=clock)) as client:
        r = await client.get("/overview")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/overview")

        r = await login(client, "fin", "wrong-password")
        assert r.status_code == 303 and "error=" in r.headers["location"]
        page = await client.get("/login")
        r = await client.post("/login", data={"username": "fin", "password": PW, "csrf_token": "forged"})
        assert r.status_code == 303 and "error=" in r.headers["location"]  # login form without its CSRF token

        r = await login(client, "fin")
        assert r.status_code == 303 and r.headers["location"] == "/withdrawals"
        cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("fx_console="))
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        page = await client.get("/withdrawals")
        assert page.status_code == 200 and "提现审核" in page.text and "backend_unreachable" in page.text
        wid = uuid.uuid4()
        r = await client.post(f"/withdrawals/{wid}/decision", data={"decision": "approve"})
        assert r.status_code == 403 and "CSRF" in r.text  # no token
        r = await client.post(f"/withdrawals/{wid}/decision", data={"decision": "approve", "csrf_token": "x" * 43})
        assert r.status_code == 403
        r = await client.post(f"/withdrawals/{wid}/decision", data={"decision": "approve", "csrf_token": csrf_of(page.text)})
        assert r.status_code == 303 and "error=" in r.headers["location"]  # allowed; the backend is unreachable

        clock.now += timedelta(minutes=29)
        assert (await client.get("/overview")).status_code == 200  # still within the idle timeout (and slides it)
        clock.now += timedelta(minutes=31)
        r = await client.get("/overview")
        assert r.status_code == 303 and "expired=1" in r.headers["location"]

        client.cookies.clear()
        await login(client, "view")
        page = await client.get("/withdrawals")
        r = await client.post(f"/withdrawals/{wid}/decision", data={"decision": "approve", "csrf_token": csrf_of(page.text)})
        assert r.status_code == 403 and "无权操作" in r.text
        r = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 303 and (await client.get("/overview")).status_code == 303
        got = await eventually(lambda: _all_published(infra["db"], fresh_schema))  # the relay published them all

    seen = [(a["operator"], a["action"], a["outcome"]) for a in got]
    assert seen == [("fin", "login", "failed"), ("fin", "login", "ok"), ("fin", "withdrawal.decide", "refused"),
                    ("view", "login", "ok"), ("view", "withdrawal.decide", "refused"), ("view", "logout", "ok")], seen
    assert got[2]["detail"]["code"] == "backend_unreachable" and got[4]["detail"]["why"] == "role_not_allowed"
    assert got[4]["target"] == str(wid) and got[4]["role"] == "viewer"


async def _all_published(dsn: str, schema: str):
    got = await actions(dsn, schema)
    return got if len(got) >= 6 and all(a["published"] for a in got) else None


async def test_overview_projection_folds_orders_commission_and_enrolments(infra, fresh_schema):
    await create_topics(infra["kafka"], list(ALL_TOPICS))
    day = date(2001, 1, 1) + timedelta(days=random.randrange(7000))
    at = datetime(day.year, day.month, day.day, 4, 0, tzinfo=timezone.utc)  # noon in Shanghai
    oid = "ov-" + uuid.uuid4().hex[:8]
    line = OrderLine(line_id="l1", product_id="p", quantity=1, unit_price_fen=8000, paid_fen=8000)
    events = [OrderPaid(order_id=oid, buyer_id="b", lines=(line,), postage_fen=0, total_fen=8000, transaction_id="t", paid_at=at),
              CommissionAccrued(accrual_id=f"{oid}:l1:level1", order_id=oid, line_id="l1", beneficiary_id="p1", buyer_id="b",
                                level="level1", base_fen=8000, quantity=1, rate_bp=1000, amount_fen=800, plan_version=1,
                                tier="sharer", unfreeze="order_completed+7d", paid_at=at),
              PromoterEnrolled(promoter_id="p-" + oid, promoter_code="c" + oid[-8:], enrolled_by="everyone", enrolled_at=at)]
    async with running_app(create_app(settings(), schema=fresh_schema)):
        producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for e in events:
                env = new_event(e)
                for _ in range(2):  # delivered twice: counted once
                    await producer.send_and_wait(topic_of(e.event_type), env.to_bytes(), key=env.key.encode())
        finally:
            await producer.stop()

        async def row():
            conn = await asyncpg.connect(infra["db"])
            try:
                r = await conn.fetchrow(f'SELECT * FROM "{fresh_schema}".daily_figures WHERE day = $1', day)
            finally:
                await conn.close()
            return r if r and r["orders"] and r["commission_fen"] and r["new_promoters"] else None

        r = await eventually(row)
        assert (r["orders"], r["sales_fen"], r["distribution_sales_fen"], r["commission_fen"], r["new_promoters"]) == \
            (1, 8000, 8000, 800, 1)
