"""Fixtures for the payout integration tests: the app on a fresh schema (one or more
instances), the WeChat transfer stand-in in process (httpx ASGI transports both ways), the
gateway's identity header, and commission events published to the real topic. Each test's
ledger starts at the topics' end (`origin`), as commission's tests do."""
from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from services.payout.main import create_app
from services.payout.replay import end_offsets, start_ledger_at
from services.payout.settings import PayoutSettings
from shared.contracts.commission import CommissionReversed, CommissionSettled
from shared.events import new_event
from shared.outbox import make_producer
from shared.topics import ALL_TOPICS, COMMISSION_EVENTS
from standins.wechat.transfer import TransferStandin, app_for
from tests.conftest import create_topics, eventually, running_app
from tests.identity import who

MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
NOTIFY_URL = "http://127.0.0.1:8104/v1/wechatpay/transfer-notify"


@pytest.fixture(scope="session")
def merchant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest_asyncio.fixture(scope="session")
async def topics(infra) -> None:
    await create_topics(infra["kafka"], list(ALL_TOPICS))


@pytest_asyncio.fixture
async def origin(infra, topics, fresh_schema) -> dict[TopicPartition, int]:
    """Where the test's ledger starts: the current end of the commission and payout topics,
    taken before the test publishes anything (as commission's `start_at_end`). A full run
    shares the topics of one namespace: earlier tests' events are not this ledger's to fold."""
    ends = await end_offsets(infra["kafka"])
    await start_ledger_at(infra["db"], fresh_schema, ends)
    return ends


@pytest_asyncio.fixture
async def standin(merchant_key) -> AsyncIterator[TransferStandin]:
    s = TransferStandin.generate(merchant_serial=MERCHANT_SERIAL, merchant_public_key=merchant_key.public_key())
    yield s
    await s.aclose()


@dataclass
class Svc:
    client: httpx.AsyncClient
    app: FastAPI
    settings: PayoutSettings

    def who(self, user_id: str, *roles: str, **kw) -> dict[str, str]:
        """The gateway's identity for payout: openid `openid-<user>` for the stand-in's appid."""
        return who(user_id, *roles, audience="payout", **{"appid": self.settings.wechat_appid, **kw})

    def admin(self, user_id: str = "operator-1") -> dict[str, str]:
        return self.who(user_id, "finance")

    async def available(self, promoter: str) -> dict:
        r = await self.client.get("/v1/promoters/me/available", headers=self.who(promoter))
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_available(self, promoter: str, fen: int) -> dict:
        async def check():
            a = await self.available(promoter)
            return a if a["available_fen"] == fen else None
        return await eventually(check, timeout=40)

    async def withdrawal(self, promoter: str, wid: str) -> dict:
        r = await self.client.get(f"/v1/withdrawals/{wid}", headers=self.who(promoter))
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_status(self, promoter: str, wid: str, *statuses: str, timeout: float = 30) -> dict:
        async def check():
            w = await self.withdrawal(promoter, wid)
            return w if w["status"] in statuses else None
        return await eventually(check, timeout=timeout)

    async def request(self, promoter: str, amount_fen: int, key: str, openid: str | None = None,
                      real_name: str | None = None) -> httpx.Response:
        """A withdrawal by `promoter`, whose gateway identity carries `openid` (the payee)."""
        openid = openid or f"openid-{promoter}"
        body = {"amount_fen": amount_fen, "idempotency_key": key, "openid": openid}
        if real_name is not None:
            body["real_name"] = real_name
        return await self.client.post("/v1/withdrawals", json=body, headers=self.who(promoter, openid=openid))


def settings_for(standin: TransferStandin, merchant_key: rsa.RSAPrivateKey, **overrides) -> PayoutSettings:
    pem = merchant_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    base = dict(
        wechat_mchid=standin.mchid, wechat_appid=standin.appid, wechat_merchant_serial=MERCHANT_SERIAL,
        wechat_merchant_key=pem, wechat_platform_serial=standin.platform_serial,
        wechat_platform_key=standin.platform_public_pem, wechat_apiv3_key=standin.apiv3_key,
        wechat_notify_url=NOTIFY_URL, wechat_timeout_s=2.0,
        follow_interval_s=0.1, retry_base_s=0.1, retry_max_s=1.0, open_bill_query_s=0.5, lease_s=10.0,
        min_withdrawal_fen=100, max_withdrawal_fen=500_000, fee_bp=0, fee_max_fen=0,
        daily_count_max=50, daily_amount_max_fen=10_000_000, auto_approve_max_fen=10_000,
        dual_approval_above_fen=10_000_000,
    )
    base.update(overrides)
    return PayoutSettings(**base)


@pytest.fixture
def make_svc(infra, topics, fresh_schema, origin, standin, merchant_key):
    """`async with make_svc(**settings) as svc:` runs the payout app on the test's schema;
    `make_svc(instances=2)` yields a list of instances sharing the schema."""

    @asynccontextmanager
    async def run(instances: int = 1, wechat_transport: httpx.AsyncBaseTransport | None = None,
                  **overrides) -> AsyncIterator[Svc | list[Svc]]:
        settings = settings_for(standin, merchant_key, **overrides)
        transport = wechat_transport or httpx.ASGITransport(app=app_for(standin))
        async with AsyncExitStack() as stack:
            svcs = []
            for _ in range(instances):
                app = create_app(settings, schema=fresh_schema, wechat_transport=transport)
                client = await stack.enter_async_context(running_app(app))
                svcs.append(Svc(client, app, settings))
            standin.notice_transport = httpx.ASGITransport(app=svcs[0].app)  # WeChat calls our notify URL
            yield svcs[0] if instances == 1 else svcs

    return run


@pytest_asyncio.fixture
async def commission(infra, topics) -> AsyncIterator["Commission"]:
    producer = make_producer(infra["kafka"])
    await producer.start()
    yield Commission(producer)
    await producer.stop()


class Commission:
    """Plays the commission service: publishes its events to the real commission topic."""

    def __init__(self, producer) -> None:
        self.producer = producer
        self.n = 0

    async def _send(self, payload) -> None:
        env = new_event(payload)
        await self.producer.send_and_wait(COMMISSION_EVENTS, env.to_bytes(), key=env.key.encode(),
                                          headers=[("event_type", env.event_type.encode())])

    async def settle(self, promoter: str, *amounts: int) -> None:
        for a in amounts:
            self.n += 1
            await self._send(CommissionSettled(accrual_id=f"acc-{promoter}-{self.n}", order_id=f"ord-{self.n}",
                                               beneficiary_id=promoter, amount_fen=a,
                                               settled_at=datetime.now(timezone.utc)))

    async def reverse(self, promoter: str, amount: int, from_status: str) -> None:
        self.n += 1
        await self._send(CommissionReversed(accrual_id=f"acc-{promoter}-{self.n}", order_id=f"ord-{self.n}",
                                            line_id="l1", beneficiary_id=promoter, out_refund_no=f"rf-{self.n}",
                                            amount_fen=amount, from_status=from_status,
                                            reversed_at=datetime.now(timezone.utc)))


@pytest_asyncio.fixture
async def schema_conn(infra, fresh_schema) -> AsyncIterator[asyncpg.Connection]:
    """A connection looking at the test's schema (open it after the app has migrated it)."""
    conn = await asyncpg.connect(infra["db"], server_settings={"search_path": fresh_schema})
    yield conn
    await conn.close()


async def outbox_events(conn: asyncpg.Connection, event_type: str, withdrawal_id: str | None = None) -> list[dict]:
    import json

    rows = await conn.fetch("SELECT value FROM outbox ORDER BY seq")
    out = []
    for r in rows:
        env = json.loads(bytes(r["value"]))
        if env["event_type"] == event_type and (withdrawal_id is None or env["payload"]["withdrawal_id"] == withdrawal_id):
            out.append(env["payload"])
    return out


async def published_end(conn: asyncpg.Connection, kafka: str) -> dict[TopicPartition, int]:
    """Once payout's outbox has published every event: the topics' end offsets (where a rebuild
    from the log stops to compare with the live tables)."""
    async def drained() -> bool:
        return await conn.fetchval("SELECT count(*) FROM outbox_pending") == 0
    await eventually(drained)
    return await end_offsets(kafka)
