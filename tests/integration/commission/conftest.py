"""Fixtures for the commission integration tests: a fresh schema whose projection starts at the
current end of the shared topics (earlier tests' events are not ours to replay), a producer that
plays the other services by publishing contract envelopes, and identity headers."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.commission.handlers.projection import CommissionProjection
from services.commission.handlers.reference import ReferenceProjection
from services.commission.main import MIGRATIONS
from services.commission.settings import CommissionSettings
from shared import db
from shared.contracts import topic_of
from shared.events import Envelope, EventPayload, new_event
from tests.identity import who as _who
from shared.topics import ALL_TOPICS
from tests.conftest import create_topics

# what the projection reads, and our own topic (plans are restored from it; the replay reads it)
TOPICS = list(ALL_TOPICS)


def now() -> datetime:
    return datetime.now(timezone.utc)


def next_boundary(epoch_s: int, ahead_s: float = 2.0) -> datetime:
    """A tier-epoch boundary at least `ahead_s` from now (orders are paid around it)."""
    t = now().timestamp() + ahead_s
    return datetime.fromtimestamp((int(t) // epoch_s + 1) * epoch_s, timezone.utc)


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or await _parts(c, t))]
        return await c.end_offsets(tps)
    finally:
        await c.stop()


async def _parts(c: AIOKafkaConsumer, topic: str) -> set[int]:
    await c._client.force_metadata_update()  # noqa: SLF001 - topics created a moment ago
    return c.partitions_for_topic(topic) or set()


async def start_at_end(dsn: str, bootstrap: str, schema: str) -> dict[TopicPartition, int]:
    """Migrate `schema` and make its projection (and its audit replay) start at the topics' current end."""
    await create_topics(bootstrap, TOPICS)
    await db.migrate(dsn, schema, MIGRATIONS)
    ends = await end_offsets(bootstrap, TOPICS)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        args = ([tp.topic for tp in ends], [tp.partition for tp in ends], list(ends.values()))
        for proj in (CommissionProjection, ReferenceProjection):
            await conn.execute("""INSERT INTO projector_offsets (projection, topic, partition, next_offset)
                                  SELECT $5, * FROM unnest($1::text[], $2::int[], $3::bigint[]) AS u(t, p, o)
                                  WHERE t = ANY($4::text[])""", *args, list(proj.topics), proj.name)
        await conn.execute("INSERT INTO replay_origin SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])", *args)
    finally:
        await conn.close()
    return ends


@pytest_asyncio.fixture
async def schema(infra, fresh_schema) -> str:
    await start_at_end(infra["db"], infra["kafka"], fresh_schema)
    return fresh_schema


@pytest_asyncio.fixture
async def dbc(infra, schema):
    conn = await asyncpg.connect(infra["db"], server_settings={"search_path": schema})
    yield conn
    await conn.close()


class Feed:
    """Plays the other services: publishes contract events on their real topics."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, payload: EventPayload, *, wait: bool = True, event_id=None, occurred_at=None) -> Envelope:
        """`occurred_at`: stamp a back-dated history as its producer would have, at the time it
        happened (the ordering guard's watermarks are event times)."""
        env = new_event(payload, event_id=event_id, occurred_at=occurred_at)
        fut = await self.producer.send(topic_of(payload.event_type), env.to_bytes(), key=env.key.encode(),
                                       headers=[("event_type", env.event_type.encode())])
        if wait:
            await fut
        return env

    async def flush(self) -> None:
        await self.producer.flush()


@pytest_asyncio.fixture
async def feed(infra):
    p = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all", enable_idempotence=True, linger_ms=5)
    await p.start()
    yield Feed(p)
    await p.stop()


def settings(**kw: Any) -> CommissionSettings:
    return CommissionSettings(settle_poll_s=0.2, **kw)


def who(user: str, *roles: str, **kw) -> dict[str, str]:
    return _who(user, *roles, audience="commission", **kw)


PLAN = {"levels": 2, "cap_bp": 3000, "freeze_days": 0,
        "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800},
                  {"name": "partner", "level1_bp": 2000, "level2_bp": 500, "self_purchase_bp": 1000,
                   "upgrade": {"min_orders": 3}}],
        "overrides": [{"product_id": "fixed-sku", "mode": "fixed", "level1": 150, "level2": 50, "min_unit_paid_fen": 1000}]}
