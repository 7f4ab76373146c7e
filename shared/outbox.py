"""Transactional outbox: events a transaction causes are written in it and published after
it, so a crash between commit and send loses nothing (the relay resends on restart, and the
deterministic event ids let consumers drop the repeat)."""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from shared.events import Envelope
from shared.telemetry import OUTBOX_PUBLISHED, inject_headers

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OutboxRecord:
    event_id: uuid.UUID
    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, topic: str, env: Envelope, headers: dict[str, str] | None = None) -> "OutboxRecord":
        hdrs = {"event_type": env.event_type, "event_version": str(env.version), **inject_headers(), **(headers or {})}
        return cls(env.event_id, topic, env.key, env.to_bytes(), hdrs)


async def record(conn: asyncpg.Connection, records: Sequence[OutboxRecord]) -> None:
    """Insert into the outbox inside the caller's transaction; an id already there is ignored."""
    if not records:
        return
    await conn.execute(
        """INSERT INTO outbox (event_id, topic, key, value, headers)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[])
           ON CONFLICT (event_id) DO NOTHING""",
        [r.event_id for r in records],
        [r.topic for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [json.dumps(r.headers) for r in records],
    )


async def record_events(conn: asyncpg.Connection, topic: str, envelopes: Iterable[Envelope]) -> None:
    await record(conn, [OutboxRecord.of(topic, e) for e in envelopes])


def make_producer(bootstrap: str, **kw) -> AIOKafkaProducer:
    """Idempotent, acks=all: a retried send never duplicates or reorders within a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=kw.pop("linger_ms", 2),
        max_batch_size=kw.pop("max_batch_size", 256 * 1024),
        **kw,
    )


class OutboxRelay:
    """Publishes unpublished outbox rows in order. One relay at a time per schema publishes
    (an advisory lock), so two service instances never interleave one key's events."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, service: str, *, batch: int = 2000, idle_s: float = 1.0):
        self.pool, self.producer, self.service = pool, producer, service
        self.batch, self.idle_s = batch, idle_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}

    async def _partition(self, topic: str, key: bytes) -> int:
        """The partition the producer's own default partitioner would pick (cached: keys repeat,
        and the pure-Python murmur2 is not free)."""
        p = self._partition_of.get((topic, key))
        if p is None:
            parts = self._partitions.get(topic)
            if parts is None:
                parts = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
            p = self._partition_of[(topic, key)] = self._partitioner(key, parts, parts)
        return p

    def kick(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows went out (0 when none or another relay holds the lock)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox'))"):
                return 0
            rows = await conn.fetch(
                "SELECT seq, topic, key, value, headers FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
                self.batch,
            )
            if not rows:
                return 0
            # One record batch per partition rather than one send() per row: a send() costs
            # about as much Python as the projection's own work per event. Rows stay in seq
            # order within each partition, and send_batch keeps a partition's batches in order.
            batches: dict[tuple[str, int], list] = {}
            for r in rows:
                key = r["key"].encode()
                part = await self._partition(r["topic"], key)
                headers = json.loads(r["headers"]) if isinstance(r["headers"], str) else (r["headers"] or {})
                hdrs = [(k, str(v).encode()) for k, v in headers.items()]
                chain = batches.setdefault((r["topic"], part), [])
                if not chain or chain[-1].append(key=key, value=r["value"], timestamp=None, headers=hdrs) is None:
                    b = self.producer.create_batch()
                    if b.append(key=key, value=r["value"], timestamp=None, headers=hdrs) is None:
                        raise ValueError(f"outbox record {r['seq']} is larger than a producer batch")
                    chain.append(b)
            futures = []
            for (topic, part), chain in batches.items():
                for b in chain:
                    b.close()
                    futures.append(await self.producer.send_batch(b, topic, partition=part))
            await asyncio.gather(*futures)
            await conn.execute("UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
        OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def drain(self) -> int:
        total = 0
        while (n := await self.publish_pending()) > 0:
            total += n
        return total

    async def run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands
            # as the event is set (a kick() just before stop()), and stop() then waits forever.
            try:
                async with asyncio.timeout(self.idle_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_publish_failed")
                await asyncio.sleep(0.5)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
