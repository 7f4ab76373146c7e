"""Fixtures for the engagement integration tests: the app served by a real uvicorn on a free
port (streams need a real HTTP server; httpx's ASGI transport buffers whole responses), one
or more instances on a fresh schema, the WeChat mini-program stand-in in process, the
gateway's identity, and other services' events published to the real topics."""
from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from services.engagement.handlers.activity import ActivityProjection
from services.engagement.main import MIGRATIONS, create_app
from services.engagement.settings import EngagementSettings
from shared import db
from shared.contracts import topic_of
from shared.contracts.commission import CommissionAccrued, CommissionSettled
from shared.events import Envelope, new_event
from tests.identity import who
from shared.outbox import make_producer
from shared.topics import ALL_TOPICS
from standins.wechat.miniprogram import MiniProgramState, make_router
from tests.conftest import create_topics
from simulation.cluster import free_port

TEMPLATE = "tmplCommission000001"


@pytest_asyncio.fixture(scope="session")
async def topics(infra) -> None:
    await create_topics(infra["kafka"], list(ALL_TOPICS))


@pytest.fixture
def wechat() -> MiniProgramState:
    state = MiniProgramState(appid="wxengage0000000001", secret="engage-secret")
    state.add_template(TEMPLATE, "thing1", "amount2", "time3", "phrase4")
    return state


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` (with its lifespan) on 127.0.0.1:<free port>; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        await c._client.force_metadata_update()  # noqa: SLF001 - topics created a moment ago
        return await c.end_offsets([TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())])
    finally:
        await c.stop()


async def start_at(dsn: str, schema: str, offsets: dict[TopicPartition, int]) -> None:
    """Migrate `schema` and make its projection start at `offsets`: the session's topics carry
    every earlier test's events (other services' too), which are not this test's to read."""
    await db.migrate(dsn, schema, MIGRATIONS)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute("""INSERT INTO projector_offsets (projection, topic, partition, next_offset)
                              SELECT $4, * FROM unnest($1::text[], $2::int[], $3::bigint[]) ON CONFLICT DO NOTHING""",
                           [tp.topic for tp in offsets], [tp.partition for tp in offsets], list(offsets.values()),
                           ActivityProjection.name)
    finally:
        await conn.close()


@dataclass
class Svc:
    client: httpx.AsyncClient
    app: FastAPI
    settings: EngagementSettings
    base_url: str
    #: where this schema's projection started (a rebuild into another schema starts there too)
    origin: dict[TopicPartition, int] = field(default_factory=dict)

    def who(self, user_id: str, *roles: str, **kw) -> dict[str, str]:
        return who(user_id, *roles, audience="engagement", **kw)

    def admin(self) -> dict[str, str]:
        return self.who("operator-1", "operator")

    @property
    def pool(self):
        return self.app.state.runtime.pool


@pytest.fixture
def make_svc(infra, topics, fresh_schema, wechat):
    """`async with make_svc() as svc:` serves engagement on the test's schema;
    `make_svc(instances=2)` yields replicas sharing the schema (and the consumer group)."""

    @asynccontextmanager
    async def run(instances: int = 1, schema: str | None = None, origin: dict[TopicPartition, int] | None = None,
                  **overrides) -> AsyncIterator[Svc | list[Svc]]:
        standin = FastAPI()
        standin.include_router(make_router(wechat))
        base = dict(wechat_appid=wechat.appid, wechat_secret=wechat.secret, wechat_api_base="http://wechat.standin",
                    send_interval_s=0.2, stream_heartbeat_s=1.0, send_stale_s=30.0)
        base.update(overrides)
        settings = EngagementSettings(**base)
        origin = origin if origin is not None else await end_offsets(infra["kafka"], list(ActivityProjection.topics))
        await start_at(infra["db"], schema or fresh_schema, origin)
        async with AsyncExitStack() as stack:
            svcs = []
            for _ in range(instances):
                app = create_app(settings, schema=schema or fresh_schema,
                                 wechat_transport=httpx.ASGITransport(app=standin))
                url = await stack.enter_async_context(serve(app))
                client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
                svcs.append(Svc(client, app, settings, url, origin))
            yield svcs[0] if instances == 1 else svcs

    return run


class Events:
    """Plays the other services: publishes their events to the real topics."""

    def __init__(self, producer) -> None:
        self.producer = producer
        self.n = 0

    async def send(self, payload=None, *, env: Envelope | None = None) -> Envelope:
        env = env or new_event(payload)
        await self.producer.send_and_wait(topic_of(env.event_type), env.to_bytes(), key=env.key.encode(),
                                          headers=[("event_type", env.event_type.encode())])
        return env

    def _next(self) -> int:
        self.n += 1
        return self.n

    async def accrue(self, promoter: str, amount_fen: int, *, buyer: str | None = None, level: str = "level1",
                     at: datetime | None = None, order_id: str | None = None, line_id: str = "l1") -> Envelope:
        n = self._next()
        return await self.send(CommissionAccrued(
            accrual_id=f"acc-{promoter}-{n}", order_id=order_id or f"ord-{promoter}-{n}", line_id=line_id,
            beneficiary_id=promoter, buyer_id=buyer or f"buyer-{promoter}-{n}", level=level, base_fen=amount_fen * 10,
            quantity=1, rate_bp=1000, amount_fen=amount_fen, plan_version=1, tier="分享家", unfreeze="order_completed+7d",
            paid_at=at or datetime.now(timezone.utc)))

    async def settle(self, promoter: str, amount_fen: int, *, at: datetime | None = None, order_id: str | None = None) -> Envelope:
        n = self._next()
        return await self.send(CommissionSettled(accrual_id=f"acc-{promoter}-s{n}", order_id=order_id or f"ord-{promoter}-s{n}",
                                                 beneficiary_id=promoter, amount_fen=amount_fen,
                                                 settled_at=at or datetime.now(timezone.utc)))


@pytest_asyncio.fixture
async def events(infra, topics) -> AsyncIterator[Events]:
    producer = make_producer(infra["kafka"])
    await producer.start()
    yield Events(producer)
    await producer.stop()


@dataclass
class Stream:
    """A connected notice stream (Server-Sent Events), read line by line."""

    response: httpx.Response
    lines: AsyncIterator[str]
    ready_after: int | None = None
    ids: list[int] = field(default_factory=list)

    async def next_notice(self, timeout: float) -> dict:
        """The next `notice` event (its data, with `id`), or TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            event: dict = {}
            async for line in self.lines:
                if line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and "data" in event:
                    self.ids.append(event["id"])
                    return {**event["data"], "id": event["id"]}
        raise AssertionError("stream ended")


@asynccontextmanager
async def open_stream(svc: Svc, promoter: str, last_event_id: int | None = None) -> AsyncIterator[Stream]:
    headers = svc.who(promoter)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with httpx.AsyncClient(base_url=svc.base_url, timeout=httpx.Timeout(30, read=None)) as client:
        async with client.stream("GET", "/v1/me/notices/stream", headers=headers) as resp:
            assert resp.status_code == 200, await resp.aread()
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.aiter_lines()
            s = Stream(resp, lines)
            async for line in lines:  # the stream is registered once it said ready
                if line.startswith(": ready"):
                    s.ready_after = int(line.split()[-1])
                    break
            yield s


async def outbox_events(svc: Svc, event_type: str) -> list[dict]:
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT value FROM outbox ORDER BY seq")
    out = [json.loads(bytes(r["value"])) for r in rows]
    return [e for e in out if e["event_type"] == event_type]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
