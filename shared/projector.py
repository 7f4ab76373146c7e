"""The exactly-once projector.

Consumes topics in batches and applies the events to PostgreSQL in one transaction together
with the consumed positions, so that a crash, a redelivery or a rebalance never applies an
event twice or skips one:

* Positions live in `projector_offsets` (PostgreSQL is the truth; Kafka commits are unused).
  On assignment the partitions are paused, the stored positions read, the consumer seeked,
  then resumed (aiokafka fetches before the rebalance listener finishes).
* A batch is accepted per partition only if it starts exactly at the stored position;
  records before it are redeliveries and dropped, a gap triggers a re-seek.
* The position update is a compare-and-set: if another consumer moved it, nothing commits.
* Event ids are recorded in `projector_applied`, so an event published twice (an outbox
  resend) is applied once.
* Events the handlers cause, and dead letters, go to the outbox in the same transaction.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from opentelemetry import trace
from pydantic import ValidationError

from shared import topics as topic_names
from shared.events import Envelope, EventPayload, catalog
from shared.events.catalog import UnknownEventError
from shared.outbox import OutboxRecord, OutboxRelay, record as record_outbox
from shared.telemetry import (
    BATCH_SECONDS, CONSUMER_LAG, EVENTS_DEAD_LETTERED, EVENTS_DUPLICATE, EVENTS_HANDLED, HANDLER_ERRORS,
    extract_context, kafka_headers_to_dict, tracer,
)

log = structlog.get_logger(__name__)
_DLQ_NS = uuid.UUID("0b5e7a8e-2d0c-4a43-9f6b-1e5b0c1d7a20")


@dataclass(frozen=True)
class Applied:
    """One event handed to a projection: the envelope, its parsed payload and where it came from."""

    envelope: Envelope
    payload: EventPayload
    topic: str
    partition: int
    offset: int
    headers: dict[str, str]


@dataclass
class Batch:
    events: list[Applied]
    emitted: list[OutboxRecord] = field(default_factory=list)

    def emit(self, topic: str, env: Envelope) -> None:
        """Record an event caused by this batch; it is published after the transaction commits."""
        self.emitted.append(OutboxRecord.of(topic, env))


class Projection(Protocol):
    name: str
    topics: tuple[str, ...]
    #: the event types this projection applies; others on its topics are passed over
    event_types: frozenset[str]

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None: ...


class PositionLostError(RuntimeError):
    """Another consumer moved a partition's stored position: this batch must not commit."""


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


class Projector:
    def __init__(
        self,
        projection: Projection,
        pool: asyncpg.Pool,
        *,
        service: str,
        relay: OutboxRelay | None = None,
        synchronous_commit: bool = True,
        retry_backoff_s: float = 0.5,
        on_committed: Callable[[Batch], Awaitable[None] | None] | None = None,
    ) -> None:
        self.projection, self.pool, self.service, self.relay = projection, pool, service, relay
        self.synchronous_commit = synchronous_commit
        self.retry_backoff_s = retry_backoff_s
        self.on_committed = on_committed
        self.positions: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._consumer_of: Callable[[], AIOKafkaConsumer | None] = lambda: self.consumer
        self.listener = _PositionListener(self)
        self._labels = (service, projection.name)

    # -- positions ---------------------------------------------------------------------------
    def bind_consumer(self, consumer_of: Callable[[], AIOKafkaConsumer | None]) -> None:
        """Tell the projector how to reach its consumer (FastStream creates it at start)."""
        self._consumer_of = consumer_of

    def _consumer(self) -> AIOKafkaConsumer:
        c = self._consumer_of()
        if c is None:
            raise RuntimeError("projector has no consumer")
        return c

    async def load_positions(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Read (creating at 0) the stored positions of these partitions."""
        tps = list(tps)
        if not tps:
            return {}
        name = self.projection.name
        async with self.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO projector_offsets (projection, topic, partition, next_offset)
                   SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS u(t, p)
                   ON CONFLICT DO NOTHING""",
                name, [tp.topic for tp in tps], [tp.partition for tp in tps],
            )
            rows = await conn.fetch(
                """SELECT topic, partition, next_offset FROM projector_offsets
                   WHERE projection = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))""",
                name, [tp.topic for tp in tps], [tp.partition for tp in tps],
            )
        return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def assign(self, tps: Sequence[TopicPartition]) -> None:
        consumer = self._consumer()
        if tps:
            consumer.pause(*tps)  # synchronously, before any await: nothing is fetched from a wrong position
        stored = await self.load_positions(tps)
        for tp, off in stored.items():
            consumer.seek(tp, off)
            self.positions[tp] = off
        if tps:
            consumer.resume(*tps)
        log.info("partitions_assigned", projection=self.projection.name,
                 positions={f"{tp.topic}[{tp.partition}]": o for tp, o in stored.items()})

    def revoke(self, tps: Sequence[TopicPartition]) -> None:
        for tp in tps:
            self.positions.pop(tp, None)

    async def _reseek_from_store(self, tps: Iterable[TopicPartition]) -> None:
        tps = [tp for tp in tps if tp in self.positions]
        stored = await self.load_positions(tps)
        consumer = self._consumer()
        for tp, off in stored.items():
            if tp in self.positions:
                self.positions[tp] = off
                consumer.seek(tp, off)

    # -- one batch ---------------------------------------------------------------------------
    def _accept(self, records: Sequence[Any]) -> dict[TopicPartition, list[Any]]:
        """Keep, per owned partition, the records that continue exactly from the stored position."""
        by_tp: dict[TopicPartition, list[Any]] = {}
        for r in records:
            by_tp.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        accepted: dict[TopicPartition, list[Any]] = {}
        for tp, recs in by_tp.items():
            nxt = self.positions.get(tp)
            if nxt is None:
                continue  # revoked meanwhile
            recs = [r for r in recs if r.offset >= nxt]  # below: a redelivery, already applied
            if not recs:
                continue
            if recs[0].offset != nxt:
                # A gap: the fetch started from a position we did not seek to. Go back.
                log.warning("position_gap", topic=tp.topic, partition=tp.partition, expected=nxt, got=recs[0].offset)
                self._consumer().seek(tp, nxt)
                continue
            accepted[tp] = recs
        return accepted

    def _parse(self, accepted: dict[TopicPartition, list[Any]]) -> tuple[list[Applied], list[DeadLetter]]:
        wanted = self.projection.event_types
        events: list[Applied] = []
        dead: list[DeadLetter] = []
        seen: set[uuid.UUID] = set()
        for recs in accepted.values():
            for r in recs:
                try:
                    if r.value is None:
                        raise ValueError("empty record value")
                    env = Envelope.from_bytes(r.value)
                    if env.event_type not in wanted:
                        if not catalog.knows(env.event_type):
                            raise UnknownEventError(f"unknown event type {env.event_type!r}")
                        continue
                    payload = catalog.payload(env)
                except (ValidationError, UnknownEventError, ValueError) as exc:
                    dead.append(DeadLetter(r.topic, r.partition, r.offset, r.key, r.value, f"{type(exc).__name__}: {exc}"[:2000]))
                    continue
                if env.event_id in seen:
                    continue
                seen.add(env.event_id)
                events.append(Applied(env, payload, r.topic, r.partition, r.offset, kafka_headers_to_dict(r.headers)))
        return events, dead

    def _dead_letter_record(self, d: DeadLetter) -> OutboxRecord:
        eid = uuid.uuid5(_DLQ_NS, f"{self.projection.name}:{d.topic}:{d.partition}:{d.offset}")
        return OutboxRecord(
            event_id=eid,
            topic=topic_names.dead_letter(d.topic),
            key=(d.key or b"").decode(errors="replace") or "-",
            value=d.value or b"",
            headers={
                "dlq_reason": d.reason, "dlq_source_topic": d.topic, "dlq_source_partition": str(d.partition),
                "dlq_source_offset": str(d.offset), "dlq_projection": self.projection.name, "dlq_service": self.service,
            },
        )

    async def _commit(self, accepted: dict[TopicPartition, list[Any]], events: list[Applied], dead: list[DeadLetter]) -> Batch:
        name = self.projection.name
        tps = list(accepted)
        firsts = [accepted[tp][0].offset for tp in tps]
        nexts = [accepted[tp][-1].offset + 1 for tp in tps]
        batch = Batch(events=[])
        async with self.pool.acquire() as conn, conn.transaction():
            if not self.synchronous_commit:
                await conn.execute("SET LOCAL synchronous_commit = off")
            moved = await conn.fetch(
                """UPDATE projector_offsets o SET next_offset = u.nxt, updated_at = now()
                   FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS u(topic, part, first, nxt)
                   WHERE o.projection = $1 AND o.topic = u.topic AND o.partition = u.part AND o.next_offset = u.first
                   RETURNING o.topic""",
                name, [tp.topic for tp in tps], [tp.partition for tp in tps], firsts, nexts,
            )
            if len(moved) != len(tps):
                raise PositionLostError(f"{len(tps) - len(moved)} partition(s) moved by another consumer")
            if events:
                fresh = {
                    r["event_id"]
                    for r in await conn.fetch(
                        """INSERT INTO projector_applied (projection, event_id) SELECT $1, unnest($2::uuid[])
                           ON CONFLICT DO NOTHING RETURNING event_id""",
                        name, [a.envelope.event_id for a in events],
                    )
                }
                if len(fresh) != len(events):
                    EVENTS_DUPLICATE.labels(*self._labels).inc(len(events) - len(fresh))
                    events = [a for a in events if a.envelope.event_id in fresh]
                batch.events = events
                if events:
                    await self.projection.apply(conn, batch)
            out = list(batch.emitted)
            if dead:
                out.extend(self._dead_letter_record(d) for d in dead)
            await record_outbox(conn, out)
        for tp, nxt in zip(tps, nexts):
            if tp in self.positions:
                self.positions[tp] = nxt
        return batch

    async def handle(self, records: Sequence[Any]) -> Batch | None:
        """Apply one fetched batch exactly once. Raises after re-seeking on failure, so the
        same records come again."""
        accepted = self._accept(records)
        if not accepted:
            return None
        started = time.perf_counter()
        events, dead = self._parse(accepted)
        links = []
        parent = None
        for a in events[:16]:
            sc = trace.get_current_span(extract_context(a.headers)).get_span_context()
            if sc.is_valid:
                links.append(trace.Link(sc))
        if len(events) == 1 and links:
            parent = extract_context(events[0].headers)
        with tracer().start_as_current_span(f"project {self.projection.name}", context=parent, links=links) as span:
            span.set_attribute("messaging.batch.message_count", len(events))
            try:
                batch = await self._commit(accepted, events, dead)
            except PositionLostError as exc:
                log.warning("position_lost", projection=self.projection.name, error=str(exc))
                await self._reseek_from_store(accepted)
                return None
            except asyncio.CancelledError:
                raise
            except Exception:
                HANDLER_ERRORS.labels(*self._labels).inc()
                log.exception("batch_failed", projection=self.projection.name, records=len(records))
                consumer = self._consumer()
                for tp in accepted:
                    if tp in self.positions:
                        consumer.seek(tp, self.positions[tp])
                await asyncio.sleep(self.retry_backoff_s)
                raise
        for a in batch.events:
            EVENTS_HANDLED.labels(self.service, self.projection.name, a.envelope.event_type).inc()
        if dead:
            EVENTS_DEAD_LETTERED.labels(*self._labels).inc(len(dead))
            for d in dead:
                log.warning("dead_lettered", topic=d.topic, partition=d.partition, offset=d.offset, reason=d.reason)
        BATCH_SECONDS.labels(*self._labels).observe(time.perf_counter() - started)
        self._update_lag()
        if self.relay is not None and (batch.emitted or dead):
            self.relay.kick()
        if self.on_committed is not None:
            res = self.on_committed(batch)
            if asyncio.iscoroutine(res):
                await res
        return batch

    def _update_lag(self) -> None:
        try:
            consumer = self._consumer()
            for tp, pos in self.positions.items():
                hw = consumer.highwater(tp)
                if hw is not None:
                    CONSUMER_LAG.labels(self.service, self.projection.name, tp.topic, str(tp.partition)).set(max(hw - pos, 0))
        except Exception:  # lag is a dashboard figure; never fail a batch for it
            pass


class _PositionListener(ConsumerRebalanceListener):
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked):  # type: ignore[override]
        self.projector.revoke(list(revoked))

    async def on_partitions_assigned(self, assigned):  # type: ignore[override]
        await self.projector.assign(list(assigned))


# -- drivers ---------------------------------------------------------------------------------
def subscribe(broker: Any, projector: Projector, *, group_id: str, max_records: int = 2000, batch_timeout_ms: int = 20):
    """Run the projector as a FastStream batch subscriber. Offsets live in PostgreSQL, so the
    ack policy is MANUAL and nothing is ever committed to Kafka (FastStream's default,
    ACK_FIRST, would acknowledge before handling: at-most-once)."""
    from faststream import AckPolicy

    async def raw_decoder(msg: Any) -> Any:
        # The aiokafka records themselves: skips FastStream's per-record JSON decode, and the
        # projector needs their partitions and offsets anyway.
        return msg.raw_message

    sub = broker.subscriber(
        *projector.projection.topics,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        group_id=group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        listener=projector.listener,
        decoder=raw_decoder,
    )
    projector.bind_consumer(lambda: sub.consumer)

    @sub
    async def _project(records: Any) -> None:
        await projector.handle(records)

    return sub


async def run_until(
    projector: Projector,
    bootstrap: str,
    stop_at: dict[TopicPartition, int],
    *,
    max_records: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Drive a projector without a group from its stored positions (0 for a fresh schema) up to
    `stop_at` (exclusive end offsets per partition): the audit replay. Returns records read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        tps = list(stop_at)
        consumer.assign(tps)
        projector.consumer = consumer
        projector.bind_consumer(lambda: consumer)
        await projector.assign(tps)
        total_target = sum(max(stop_at[tp] - projector.positions.get(tp, 0), 0) for tp in tps)
        done = 0
        while any(projector.positions.get(tp, 0) < stop_at[tp] for tp in tps):
            got = await consumer.getmany(timeout_ms=500, max_records=max_records)
            records = [r for recs in got.values() for r in recs if r.offset < stop_at[TopicPartition(r.topic, r.partition)]]
            for tp in tps:
                if projector.positions.get(tp, 0) >= stop_at[tp]:
                    consumer.pause(tp)
            if not records:
                continue
            await projector.handle(records)
            done += len(records)
            if progress:
                progress(done, total_target)
        return done
    finally:
        await consumer.stop()
