"""Transactional outbox: events a transaction causes are written in it and published after
it, so a crash between commit and send loses nothing (the relay resends on restart, and the
deterministic event ids let consumers drop the repeat)."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from prometheus_client import Counter

from shared.chain import Linker
from shared.kafka_security import kafka_options
from shared.events import Envelope
from shared.telemetry import OUTBOX_PUBLISHED, inject_headers

log = structlog.get_logger(__name__)

OUTBOX_PARKED = Counter("fenxiao_outbox_parked_total", "Outbox rows parked: they can never be sent (alert on any)",
                        ["service", "topic"])
OUTBOX_PRUNED = Counter("fenxiao_outbox_pruned_total", "Published outbox rows deleted by age", ["service"])


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
        **{**kafka_options(), **kw},  # TLS / SASL from the environment (shared.kafka_security)
    )


class OutboxRelay:
    """Publishes unpublished outbox rows in order. One relay at a time per schema publishes
    (an advisory lock), so two service instances never interleave one key's events."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, service: str, *, batch: int = 2000, idle_s: float = 1.0,
                 partition_cache: int = 50_000, max_record_bytes: int = 1_000_000):
        self.pool, self.producer, self.service = pool, producer, service
        self.batch, self.idle_s = batch, idle_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        #: least recently used (topic, key) -> partition, at most `partition_cache` entries
        self._partition_of: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self.partition_cache = partition_cache
        #: larger records are parked (Kafka's default message.max.bytes / max.request.size is ~1 MB)
        self.max_record_bytes = max_record_bytes

    async def _partition(self, topic: str, key: bytes) -> int:
        """The partition the producer's own default partitioner would pick (an LRU cache: keys
        repeat in bursts, and the pure-Python murmur2 is not free; bounded, so memory does not
        grow with the number of orders ever seen)."""
        k = (topic, key)
        p = self._partition_of.get(k)
        if p is not None:
            self._partition_of.move_to_end(k)
            return p
        parts = self._partitions.get(topic)
        if parts is None:
            parts = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        p = self._partition_of[k] = self._partitioner(key, parts, parts)
        if len(self._partition_of) > self.partition_cache:
            self._partition_of.popitem(last=False)
        return p

    def kick(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows went out (0 when none or another relay holds the lock)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox'))"):
                return 0
            rows = await conn.fetch(
                "SELECT seq, event_id, topic, key, value, headers FROM outbox WHERE published_at IS NULL AND parked_at IS NULL"
                " ORDER BY seq LIMIT $1",
                self.batch,
            )
            if not rows:
                return 0
            # One record batch per partition rather than one send() per row: a send() costs
            # about as much Python as the projection's own work per event. Rows stay in seq
            # order within each partition, and send_batch keeps a partition's batches in order.
            batches: dict[tuple[str, int], list[tuple[Any, list[asyncpg.Record]]]] = {}
            parked: list[tuple[asyncpg.Record, str]] = []
            links = await Linker.load(conn)  # tamper evidence: a hash chain per partition (shared/chain.py)
            for r in rows:
                key = r["key"].encode()
                headers = json.loads(r["headers"]) if isinstance(r["headers"], str) else (r["headers"] or {})
                hdrs = [(k, str(v).encode()) for k, v in headers.items()]
                size = len(key) + len(r["value"]) + sum(len(k) + len(v) for k, v in hdrs)
                if size > self.max_record_bytes:
                    # It can never be sent: park it rather than block every later row behind it.
                    parked.append((r, f"record of {size} bytes is larger than the {self.max_record_bytes} bytes Kafka accepts"))
                    continue
                part = await self._partition(r["topic"], key)
                hdrs += links.headers(r["topic"], part, key, r["value"], seq=r["seq"])
                chain = batches.setdefault((r["topic"], part), [])
                if not chain or chain[-1][0].append(key=key, value=r["value"], timestamp=None, headers=hdrs) is None:
                    b = self.producer.create_batch()  # takes one record of any size when empty
                    b.append(key=key, value=r["value"], timestamp=None, headers=hdrs)
                    chain.append((b, []))
                chain[-1][1].append(r)
            futures = []
            for (topic, part), chain in batches.items():
                for b, members in chain:
                    b.close()
                    futures.append((await self.producer.send_batch(b, topic, partition=part), members))
            done = await asyncio.gather(*(f for f, _ in futures), return_exceptions=True)
            sent: list[int] = []
            ends: dict[tuple[str, int], int] = {}
            for md, (_, members) in zip(done, futures):
                if isinstance(md, MessageSizeTooLargeError) and len(members) == 1:
                    parked.append((members[0], f"the broker refused the record as too large: {md}"))
                    continue
                if isinstance(md, BaseException):
                    raise md
                sent += [r["seq"] for r in members]
                ends[(md.topic, md.partition)] = max(ends.get((md.topic, md.partition), 0), md.offset + len(members))
            await conn.execute("UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])", sent)
            if ends:
                await conn.execute(
                    """INSERT INTO outbox_published_marks (topic, partition, next_offset)
                       SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
                       ON CONFLICT (topic, partition) DO UPDATE
                       SET next_offset = GREATEST(outbox_published_marks.next_offset, EXCLUDED.next_offset)""",
                    [t for t, _ in ends], [p for _, p in ends], list(ends.values()))
            # a record chained but refused by the broker: its link is recorded so that verify can step over it
            await links.save(conn, skipped=[r["seq"] for r, _ in parked])
            if parked:
                await conn.execute(
                    "UPDATE outbox SET parked_at = now(), parked_reason = u.reason FROM unnest($1::bigint[], $2::text[]) AS u(seq, reason)"
                    " WHERE outbox.seq = u.seq", [r["seq"] for r, _ in parked], [why for _, why in parked])
        for r, why in parked:
            OUTBOX_PARKED.labels(self.service, r["topic"]).inc()
            log.error("outbox_record_parked", seq=r["seq"], event_id=str(r["event_id"]), topic=r["topic"], key=r["key"],
                      reason=why)
        OUTBOX_PUBLISHED.labels(self.service).inc(len(sent))
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


async def prune_published(conn: asyncpg.Connection, keep_s: float, limit: int = 20_000) -> int:
    """Delete up to `limit` published outbox rows created more than `keep_s` seconds ago (never
    an unpublished or a parked one), in the caller's transaction, first moving each partition's
    `pruned_through` to how far it is published: a pruned row lies below it in the log."""
    await conn.execute("UPDATE outbox_published_marks SET pruned_through = next_offset WHERE pruned_through < next_offset")
    return int((await conn.execute(
        """DELETE FROM outbox WHERE seq IN (
               SELECT seq FROM outbox WHERE created_at < now() - make_interval(secs => $1)
                 AND published_at IS NOT NULL AND parked_at IS NULL LIMIT $2)""", float(keep_s), limit)).split()[-1])


async def pruned_through(conn: asyncpg.Connection) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the log offset below which published rows may have been pruned."""
    return {(r["topic"], r["partition"]): r["pruned_through"]
            for r in await conn.fetch("SELECT topic, partition, pruned_through FROM outbox_published_marks")}
