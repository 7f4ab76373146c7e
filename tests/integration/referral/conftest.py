"""Fixtures for the referral integration tests: the app on a fresh schema with a clock the
test moves, the gateway's identity header, and the WeChat stand-in served over real HTTP on a
random loopback port (it also serves generated product images)."""
from __future__ import annotations

import asyncio
import io
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from PIL import Image

from services.referral.main import create_app
from services.referral.settings import ReferralSettings
from shared.topics import ALL_TOPICS
from standins.wechat.miniprogram import MiniProgramState, make_router
from tests.conftest import create_topics, running_app
from tests.identity import who
from simulation.cluster import free_port


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> datetime:
        self.now += timedelta(**kw)
        return self.now


def product_png(color=(200, 60, 40), size=(640, 480)) -> bytes:
    img = Image.new("RGB", size, color)
    for x in range(0, size[0], 40):  # some structure, so it is not a flat colour
        for y in range(0, size[1], 40):
            if (x + y) // 40 % 2:
                img.paste((255, 255, 255), (x, y, x + 20, y + 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Svc:
    client: object
    app: FastAPI
    clock: FakeClock
    secret: str

    def who(self, user_id: str, *roles: str, **kw) -> dict[str, str]:
        return who(user_id, *roles, audience="referral", **kw)

    def admin(self) -> dict[str, str]:
        """An operator who also holds plan_admin (settings, products)."""
        return self.who("operator-1", "operator", "plan_admin")


@pytest_asyncio.fixture(scope="session")
async def topics(infra) -> None:
    await create_topics(infra["kafka"], list(ALL_TOPICS))


@pytest.fixture
def make_svc(infra, topics, fresh_schema):
    """`async with make_svc(**settings) as svc:` runs the referral app on the test's schema."""

    @asynccontextmanager
    async def run(clock: FakeClock | None = None, **overrides) -> AsyncIterator[Svc]:
        settings = ReferralSettings(**overrides)
        clock = clock or FakeClock()
        app = create_app(settings, schema=fresh_schema, clock=clock)
        async with running_app(app) as client:
            yield Svc(client, app, clock, settings.identity_secret)

    return run


@dataclass
class Standin:
    state: MiniProgramState
    base: str
    images: dict[str, bytes]

    def image_url(self, name: str) -> str:
        return f"{self.base}/images/{name}"

    @property
    def host(self) -> str:
        return self.base.removeprefix("http://")


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[Standin]:
    state = MiniProgramState(appid="wxtestappid00000001", secret="test-secret-" + os.urandom(4).hex())
    images: dict[str, bytes] = {}
    app = FastAPI()
    app.include_router(make_router(state))

    @app.get("/images/{name}")
    async def image(name: str) -> Response:
        if name not in images:
            return Response(status_code=404)
        return Response(images[name], media_type="image/png")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield Standin(state, f"http://127.0.0.1:{port}", images)
    finally:
        server.should_exit = True
        await task


# -- helpers shared by the test modules ----------------------------------------------------------
async def enrol(svc: Svc, user_id: str, nickname: str | None = None) -> str:
    """Make `user_id` a promoter (mode everyone) and return the promoter code."""
    r = await svc.client.post("/v1/promoters", json={"nickname": nickname} if nickname else {}, headers=svc.who(user_id))
    assert r.status_code == 200, r.text
    return r.json()["code"]


async def designate(svc: Svc, user_id: str, nickname: str | None = None) -> str:
    r = await svc.client.post(f"/v1/admin/promoters/{user_id}/designate", json={"nickname": nickname} if nickname else {},
                              headers=svc.admin())
    assert r.status_code == 201, r.text
    return r.json()["code"]


async def bind(svc: Svc, customer: str, code: str, source: str = "link", **extra):
    return await svc.client.post("/v1/bindings", json={"promoter_code": code, "source": source, **extra},
                                 headers=svc.who(customer))


async def outbox_events(conn, schema: str, event_type: str | None = None) -> list[dict]:
    """The events this service wrote to its outbox, oldest first (payload + envelope fields)."""
    import json

    rows = await conn.fetch(f'SELECT value FROM "{schema}".outbox ORDER BY seq')
    out = [json.loads(bytes(r["value"])) for r in rows]
    return [e for e in out if event_type is None or e["event_type"] == event_type]


async def publish(bootstrap: str, topic: str, payload, **kw) -> None:
    """Publish one event the way its owning service would (envelope, key = aggregate id)."""
    from aiokafka import AIOKafkaProducer

    from shared.events import new_event

    env = new_event(payload, **kw)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, env.to_bytes(), key=env.key.encode())
    finally:
        await producer.stop()
