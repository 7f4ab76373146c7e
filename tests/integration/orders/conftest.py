"""Orders integration fixtures: the service served over real HTTP (uvicorn on a free
loopback port, so the WeChat stand-in delivers notices as WeChat does), a WeChat Pay
stand-in with fresh keys, a movable clock, and a reader of the real order-events topic."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import asyncpg
import httpx
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.orders.clock import FakeClock
from services.orders.main import create_app
from services.orders.settings import OrdersSettings
from shared.events import Envelope
from shared.topics import ORDER_EVENTS, PARTITIONS, REFERRAL_EVENTS
from standins.wechat.pay import WeChatPayStandin, make_router
from tests.conftest import create_topics
from tests.identity import who
from simulation.cluster import free_port


class OrderEvents:
    """Reads the real order-events topic from where it ended when the test began."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.by_key: dict[str, list[Envelope]] = {}
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self.consumer.start()
        tps = [TopicPartition(ORDER_EVENTS, p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        for tp, end in (await self.consumer.end_offsets(tps)).items():
            self.consumer.seek(tp, end)

    async def stop(self) -> None:
        if self.consumer:
            await self.consumer.stop()

    async def until(self, order_id: str, done: Callable[[list[Envelope]], bool], timeout: float = 30.0) -> list[Envelope]:
        """This order's events (in topic order) once `done(events)` holds."""
        assert self.consumer is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(self.by_key.get(order_id, [])):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"events of {order_id} so far: {[e.event_type for e in self.by_key.get(order_id, [])]}")
            for recs in (await self.consumer.getmany(timeout_ms=200)).values():
                for r in recs:
                    env = Envelope.from_bytes(r.value)
                    self.by_key.setdefault(env.key, []).append(env)
        return self.by_key[order_id]

    async def until_type(self, order_id: str, event_type: str, timeout: float = 30.0) -> list[Envelope]:
        return await self.until(order_id, lambda evs: any(e.event_type == event_type for e in evs), timeout)


@dataclass
class Orders:
    """A running orders service and what drives it."""

    base_url: str
    http: httpx.AsyncClient
    pay: WeChatPayStandin
    clock: FakeClock
    settings: OrdersSettings
    schema: str
    events: OrderEvents
    standin_url: str = ""

    @property
    def notify_url(self) -> str:
        return f"{self.base_url}/v1/wechatpay/notify"

    def who(self, user_id: str, *roles: str, openid: str | None = None, **kw) -> dict[str, str]:
        """The gateway's identity for orders; the buyer's openid claim only when given."""
        return who(user_id, *roles, audience="orders", openid=openid, **kw)

    async def place(self, buyer: str, out_trade_no: str, *, lines=None, postage_fen: int = 500,
                    promoter_code: str | None = None, openid: str | None = None) -> dict:
        lines = lines or [{"product_id": "p-tea", "category_id": "tea", "sku": "tea-250g", "quantity": 2,
                           "unit_price_fen": 5000, "paid_fen": 9000},
                          {"product_id": "p-cup", "quantity": 1, "unit_price_fen": 3000, "paid_fen": 3000}]
        body = {"out_trade_no": out_trade_no, "lines": lines, "postage_fen": postage_fen,
                "total_fen": sum(ln["paid_fen"] for ln in lines) + postage_fen, "promoter_code": promoter_code}
        r = await self.http.post("/v1/orders", json=body, headers=self.who(buyer, openid=openid))
        assert r.status_code == 201, r.text
        return r.json()

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.settings.database_url, server_settings={"search_path": self.schema})


@pytest_asyncio.fixture(scope="session")
async def order_topics(infra) -> None:
    await create_topics(infra["kafka"], [ORDER_EVENTS, REFERRAL_EVENTS], PARTITIONS)


async def serve(app, port: int = 0) -> tuple[uvicorn.Server, asyncio.Task, int]:
    """Serve an ASGI app on a loopback port with uvicorn (real HTTP)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None,
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    return server, task, server.servers[0].sockets[0].getsockname()[1]


@asynccontextmanager
async def orders_service(infra, schema: str, **settings_kw) -> AsyncIterator[Orders]:
    pay = settings_kw.pop("pay", None) or WeChatPayStandin(mchid="1900000109", appid="wx5f1e6d0000000001")
    if len(pay.keys) == 1:
        pay.add_platform_key("public_key")  # certificate key active, public key configured: a switch in progress
    port = settings_kw.pop("port", 0)
    settings = OrdersSettings(**{**pay.notifier_settings(), "sweep_interval_s": 0.1, "unpaid_timeout_minutes": 30,
                                 "auto_complete_days": 7, **settings_kw},
                              kafka_bootstrap_servers=infra["kafka"], database_url=infra["db"])
    clock = FakeClock()
    app = create_app(settings, schema=schema, clock=clock)
    server, task, port = await serve(app, port)
    base = f"http://127.0.0.1:{port}"
    events = OrderEvents(infra["kafka"])
    await events.start()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
            yield Orders(base, http, pay, clock, settings, schema, events)
    finally:
        await events.stop()
        server.should_exit = True
        await task


@pytest_asyncio.fixture
async def orders(infra, order_topics, fresh_schema) -> AsyncIterator[Orders]:
    async with orders_service(infra, fresh_schema) as o:
        yield o


@pytest_asyncio.fixture
async def paying(infra, order_topics, fresh_schema) -> AsyncIterator[Orders]:
    """Orders with its outgoing WeChat Pay calls (prepay, close, query, refunds, bills) going to
    the WeChat Pay stand-in served over real HTTP; the stand-in notifies orders over HTTP too."""
    pay = WeChatPayStandin(mchid="1900000109", appid="wx5f1e6d0000000001")
    pay.add_platform_key("public_key")
    standin = FastAPI()
    standin.include_router(make_router(pay))
    st_server, st_task, st_port = await serve(standin)
    port = free_port()
    env = pay.client_env(f"http://127.0.0.1:{st_port}", f"http://127.0.0.1:{port}/v1/wechatpay/notify")
    kw = {k.removeprefix("ORDERS_").lower(): v for k, v in env.items()}
    try:
        async with orders_service(infra, fresh_schema, pay=pay, port=port, **kw, wechatpay_timeout_s=1.0,
                                  payment_query_after_s=60, refund_query_after_s=60,
                                  wechatpay_follow_interval_s=0.1, wechatpay_lease_s=30, reconcile_at="") as o:
            o.standin_url = f"http://127.0.0.1:{st_port}"
            yield o
    finally:
        st_server.should_exit = True
        await st_task
