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
* Tolerant reading: unknown fields and event types a projection does not need are passed over;
  only records that cannot be parsed at all (not an envelope, or a payload that breaks its own
  version's schema) are dead-lettered. An event the projection needs in a version newer than
  this code halts that partition (paused, readiness false, `fenxiao_partition_halted` names the
  event) until code that reads it is deployed: it is never skipped.
* A stored position below the log start (events deleted) halts the partition too, instead of
  seeking back and forth; the service start refuses it (`check_positions`).
* Positions are loaded in the rebalance listener with retries and backoff; readiness is false
  while an assigned partition has no position yet.
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
from prometheus_client import Counter, Gauge
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka_security import kafka_options
from shared import topics as topic_names
from shared.events import Envelope, EventPayload, catalog
from shared.events.catalog import NewerVersionError
from shared.events.envelope import peek_type
from shared.outbox import OutboxRecord, OutboxRelay, record as record_outbox
from shared.telemetry import (
    BATCH_SECONDS, CONSUMER_LAG, EVENTS_DEAD_LETTERED, EVENTS_DUPLICATE, EVENTS_HANDLED, HANDLER_ERRORS,
    extract_context, kafka_headers_to_dict, tracer,
)

log = structlog.get_logger(__name__)

PARTITION_HALTED = Gauge(
    "fenxiao_partition_halted", "1 while a partition waits: an event this code cannot read yet, or a position below "
    "the log start", ["service", "projection", "topic", "partition", "event_type", "event_version"])
POSITION_LOAD_FAILURES = Counter("fenxiao_position_load_failures_total",
                                 "Failed attempts to load stored positions on assignment (retried)", ["service", "projection"])
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


class LogHoleError(RuntimeError):
    """A stored position is below the first offset the log still has: events were deleted."""


@dataclass(frozen=True)
class Halt:
    """Why a partition stopped: the record at `offset` cannot be applied by this code."""

    offset: int
    reason: str
    event_type: str = ""
    event_version: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


def _event_hint(r: Any) -> tuple[str, int | None] | None:
    """The (type, version) a record says it carries: the relay's headers, else a peek at the
    body (records produced without them). Only chooses the parser; the body is checked."""
    event_type = version = None
    for k, v in r.headers or ():
        if k == "event_type":
            event_type = v
        elif k == "event_version":
            version = v
    if event_type is None:
        return peek_type(r.value)
    try:
        return event_type.decode(), int(version) if version else None
    except (UnicodeDecodeError, ValueError):
        return None  # not the relay's: the two-step path reads it


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
        #: partitions this consumer owns now (with or without a loaded position)
        self.assigned: set[TopicPartition] = set()
        self.halted: dict[TopicPartition, Halt] = {}
        self.position_retry_max_s = 5.0
        self._position_retry: asyncio.Task | None = None
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
        """Take over partitions: pause them (synchronously, before any await: nothing is fetched
        from a wrong position), load the stored positions and seek, then resume. Loading is
        retried with backoff; while it fails the partitions stay paused and readiness is false."""
        consumer = self._consumer()
        tps = list(tps)
        if not tps:
            return
        consumer.pause(*tps)
        self.assigned.update(tps)
        for tp in tps:
            self._unhalt(tp)
        delay = 0.1
        for attempt in range(4):  # a short blip is absorbed here, inside the rebalance
            try:
                await self._load_and_seek(tps)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                POSITION_LOAD_FAILURES.labels(*self._labels).inc()
                log.warning("position_load_failed", projection=self.projection.name, attempt=attempt + 1, error=repr(exc))
                await asyncio.sleep(delay)
                delay *= 2
        # a longer outage: keep trying in the background (the listener must not hold the rebalance)
        if self._position_retry is not None and not self._position_retry.done():
            self._position_retry.cancel()
        self._position_retry = asyncio.create_task(self._retry_positions(delay), name=f"positions-{self.projection.name}")

    async def _retry_positions(self, delay: float) -> None:
        while True:
            todo = [tp for tp in self.assigned if tp not in self.positions]
            if not todo:
                return
            try:
                await self._load_and_seek(todo)
                log.info("positions_loaded_after_retry", projection=self.projection.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                POSITION_LOAD_FAILURES.labels(*self._labels).inc()
                log.warning("position_load_failed", projection=self.projection.name, retry_in_s=delay, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.position_retry_max_s)

    async def _load_and_seek(self, tps: Sequence[TopicPartition]) -> None:
        consumer = self._consumer()
        stored = await self.load_positions(tps)
        starts = await consumer.beginning_offsets(list(stored))
        owned = consumer.assignment()
        for tp, off in stored.items():
            if tp not in self.assigned or tp not in owned:
                continue  # revoked while we were loading
            self.positions[tp] = off
            start = starts.get(tp, 0)
            if off < start:
                self._halt(tp, Halt(off, f"stored position {off} is below the log start {start}: events were deleted "
                                         f"(the topic must have unlimited retention)"))
                continue
            consumer.seek(tp, off)
            consumer.resume(tp)
        log.info("partitions_assigned", projection=self.projection.name,
                 positions={f"{tp.topic}[{tp.partition}]": o for tp, o in stored.items()})

    def revoke(self, tps: Sequence[TopicPartition]) -> None:
        for tp in tps:
            self.positions.pop(tp, None)
            self.assigned.discard(tp)
            self._unhalt(tp)
            try:
                CONSUMER_LAG.remove(self.service, self.projection.name, tp.topic, str(tp.partition))
            except KeyError:
                pass

    # -- halting -----------------------------------------------------------------------------
    def _halt(self, tp: TopicPartition, why: Halt) -> None:
        try:
            self._consumer().pause(tp)
        except Exception:  # not assigned any more: nothing to pause
            pass
        self.halted[tp] = why
        PARTITION_HALTED.labels(self.service, self.projection.name, tp.topic, str(tp.partition), why.event_type,
                                str(why.event_version or "")).set(1)
        log.error("partition_halted", projection=self.projection.name, topic=tp.topic, partition=tp.partition,
                  offset=why.offset, event_type=why.event_type or None, event_version=why.event_version, reason=why.reason)

    def _unhalt(self, tp: TopicPartition) -> None:
        why = self.halted.pop(tp, None)
        if why is not None:
            try:
                PARTITION_HALTED.remove(self.service, self.projection.name, tp.topic, str(tp.partition), why.event_type,
                                        str(why.event_version or ""))
            except KeyError:
                pass

    def readiness(self) -> dict[str, Any]:
        """`ready` is false while a partition this consumer owns has no position yet or is halted."""
        waiting = sorted(f"{tp.topic}[{tp.partition}]" for tp in self.assigned if tp not in self.positions)
        halted = {f"{tp.topic}[{tp.partition}]": {"offset": h.offset, "reason": h.reason, "event_type": h.event_type,
                                                   "event_version": h.event_version} for tp, h in self.halted.items()}
        return {"ready": not waiting and not halted,
                "positions": {f"{tp.topic}[{tp.partition}]": o for tp, o in self.positions.items()},
                **({"waiting_for_position": waiting} if waiting else {}), **({"halted": halted} if halted else {})}

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
            if nxt is None or tp in self.halted:
                continue  # revoked meanwhile, or waiting for code that can read its next event
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

    def _parse(self, accepted: dict[TopicPartition, list[Any]]) -> tuple[list[Applied], list[DeadLetter], dict[TopicPartition, Halt]]:
        """Parse the accepted records. A partition whose next needed event this code cannot read
        yet is cut just before it (what came before is applied) and returned in the halts."""
        wanted = self.projection.event_types
        events: list[Applied] = []
        dead: list[DeadLetter] = []
        halts: dict[TopicPartition, Halt] = {}
        seen: set[uuid.UUID] = set()
        for tp in list(accepted):
            recs = accepted[tp]
            for i, r in enumerate(recs):
                try:
                    if r.value is None:
                        raise ValueError("empty record value")
                    # The current version of a wanted type: one validation (a hint that the body
                    # contradicts yields None). Anything else: envelope first, then its payload.
                    hint = _event_hint(r)
                    one = catalog.parse_current(r.value, *hint) if hint is not None and hint[0] in wanted else None
                    if one is not None:
                        env, payload = one
                    else:
                        env = Envelope.from_bytes(r.value)
                        if env.event_type not in wanted:
                            continue  # not this projection's (an unknown type included): tolerant reader
                        payload = catalog.payload(env)
                except NewerVersionError as exc:
                    halts[tp] = Halt(r.offset, str(exc), env.event_type, env.version)
                    if i:
                        accepted[tp] = recs[:i]
                    else:
                        del accepted[tp]
                    break
                except (ValidationError, ValueError) as exc:
                    dead.append(DeadLetter(r.topic, r.partition, r.offset, r.key, r.value, f"{type(exc).__name__}: {exc}"[:2000]))
                    continue
                if env.event_id in seen:
                    continue
                seen.add(env.event_id)
                events.append(Applied(env, payload, r.topic, r.partition, r.offset, kafka_headers_to_dict(r.headers)))
        return events, dead, halts

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
            # The positions' compare-and-set and the applied ids in one round trip; the ids are
            # inserted only once every position moved (else the batch rolls back anyway).
            row = await conn.fetchrow(
                """WITH moved AS (
                       UPDATE projector_offsets o SET next_offset = u.nxt, updated_at = now()
                       FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS u(topic, part, first, nxt)
                       WHERE o.projection = $1 AND o.topic = u.topic AND o.partition = u.part AND o.next_offset = u.first
                       RETURNING 1
                   ), fresh AS (
                       INSERT INTO projector_applied (projection, event_id)
                       SELECT $1, e FROM unnest($6::uuid[]) AS e WHERE (SELECT count(*) FROM moved) = $7
                       ON CONFLICT DO NOTHING RETURNING event_id
                   )
                   SELECT (SELECT count(*) FROM moved) AS moved, (SELECT array_agg(event_id) FROM fresh) AS fresh""",
                name, [tp.topic for tp in tps], [tp.partition for tp in tps], firsts, nexts,
                [a.envelope.event_id for a in events], len(tps),
            )
            moved = row["moved"]
            if moved != len(tps):
                raise PositionLostError(f"{len(tps) - moved} partition(s) moved by another consumer")
            if events:
                fresh = set(row["fresh"] or ())
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
        events, dead, halts = self._parse(accepted)
        if not accepted:
            for tp, why in halts.items():
                self._halt(tp, why)
            return None
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
        for tp, why in halts.items():  # after the commit: what came before the halting event is applied
            self._halt(tp, why)
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

    async def refresh_lag(self) -> None:
        """Set the lag of every assigned partition from the broker's end offsets, also of those
        paused, halted or still without a position (counted from the log start then)."""
        tps = list(self.assigned)
        if not tps:
            return
        consumer = self._consumer()
        ends = await consumer.end_offsets(tps)
        missing = [tp for tp in tps if tp not in self.positions]
        starts = await consumer.beginning_offsets(missing) if missing else {}
        for tp in tps:
            if tp not in self.assigned:
                continue
            pos = self.positions.get(tp, starts.get(tp, 0))
            CONSUMER_LAG.labels(self.service, self.projection.name, tp.topic, str(tp.partition)).set(max(ends.get(tp, 0) - pos, 0))

    async def watch(self, interval_s: float = 5.0) -> None:
        """Background: refresh the lag of every assigned partition (a batch only updates those it saw)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh_lag()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dashboard figure: log and go on
                log.debug("lag_refresh_failed", projection=self.projection.name, error=repr(exc))


class _PositionListener(ConsumerRebalanceListener):
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked):  # type: ignore[override]
        self.projector.revoke(list(revoked))

    async def on_partitions_assigned(self, assigned):  # type: ignore[override]
        await self.projector.assign(list(assigned))


# -- drivers ---------------------------------------------------------------------------------
def subscribe(broker: Any, projector: Projector, *, group_id: str, max_records: int = 2000, batch_timeout_ms: int = 20,
              fetch_max_wait_ms: int = 50, min_interval_ms: int = 0):
    """Run the projector as a FastStream batch subscriber. Offsets live in PostgreSQL, so the
    ack policy is MANUAL and nothing is ever committed to Kafka (FastStream's default,
    ACK_FIRST, would acknowledge before handling: at-most-once).

    `fetch_max_wait_ms` is short (Kafka's default is 500) because of how aiokafka fetches: one
    fetch in flight per broker, and partitions with records still buffered are left out of it.
    When a batch runs longer than aiokafka's prefetch backoff (100 ms), the next fetch asks for
    only the other partitions, often idle ones (commission's withdrawal topic), and the broker
    holds it for the whole wait; the busy partitions cannot be fetched until it returns. At 500 ms
    that stall made the next batch large enough to run long again: the bench's latency phase
    kept a saw-tooth of 0.3-1 s from one slow batch to its end (docs/benchmarks.md)."""
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
        fetch_max_wait_ms=fetch_max_wait_ms,
        listener=projector.listener,
        decoder=raw_decoder,
    )
    projector.bind_consumer(lambda: sub.consumer)

    min_interval_s = min_interval_ms / 1000

    @sub
    async def _project(records: Any) -> None:
        started = time.monotonic()
        await projector.handle(records)
        if min_interval_s:
            # batches start at least this far apart: what arrives meanwhile waits in the consumer's
            # buffer and joins the next batch, instead of a batch per fetch, each paying the whole
            # per-batch cost (its transaction, the relay's cycle) for a few records
            rest = started + min_interval_s - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)

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
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
                                **kafka_options())
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
            if projector.halted:
                raise LogHoleError("replay cannot go on: " + "; ".join(
                    f"{tp.topic}[{tp.partition}] at {h.offset}: {h.reason}" for tp, h in projector.halted.items()))
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


async def check_positions(pool: asyncpg.Pool, projections: Sequence[Projection], bootstrap: str, **consumer_kw: Any) -> None:
    """Start-up check: every partition of every topic a projection reads still holds the event
    at the projection's stored position (0 for a partition it has not read yet). Raises
    LogHoleError naming the partition when the log starts later: events were deleted, and
    rebuilding or continuing would silently miss them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_options(), **consumer_kw)
    await consumer.start()
    try:
        holes = []
        for projection in projections:
            tps = []
            for topic in projection.topics:
                parts = consumer.partitions_for_topic(topic) or (
                    (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)) or set()  # noqa: SLF001
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                continue
            starts = await consumer.beginning_offsets(tps)
            rows = await pool.fetch("SELECT topic, partition, next_offset FROM projector_offsets WHERE projection = $1",
                                    projection.name)
            stored = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}
            for tp in tps:
                if stored.get(tp, 0) < starts.get(tp, 0):
                    holes.append(f"{projection.name}: {tp.topic}[{tp.partition}] position {stored.get(tp, 0)} "
                                 f"< log start {starts[tp]}")
        if holes:
            raise LogHoleError("events this service has not applied were deleted from the log (the topics must have "
                               "unlimited retention); refusing to start: " + "; ".join(holes))
    finally:
        await consumer.stop()


# -- pruning ----------------------------------------------------------------------------------
class PruneSettings(BaseSettings):
    """How long plumbing rows are kept (docs/reliability.md). Applied event ids dedupe what
    arrives twice: an outbox resend after a crash (seconds to minutes after the first) and a
    re-driven dead letter (hours to days); 30 days covers both with a wide margin. Published
    outbox rows are only needed until they are on Kafka; one hour keeps them for inspection."""

    model_config = SettingsConfigDict(extra="ignore")

    applied_keep_s: float = Field(30 * 86400, ge=0, validation_alias="FENXIAO_APPLIED_KEEP_S")
    outbox_keep_s: float = Field(3600, ge=0, validation_alias="FENXIAO_OUTBOX_KEEP_S")
    interval_s: float = Field(60, gt=0, validation_alias="FENXIAO_PRUNE_INTERVAL_S")
    batch: int = Field(20_000, ge=1, validation_alias="FENXIAO_PRUNE_BATCH")


PRUNED = Counter("fenxiao_pruned_rows_total", "Plumbing rows deleted by age", ["service", "table"])


async def prune_applied(conn: asyncpg.Connection, keep_s: float, limit: int = 20_000) -> int:
    """Delete up to `limit` applied-event ids older than `keep_s` seconds."""
    return int((await conn.execute(
        """DELETE FROM projector_applied WHERE (projection, event_id) IN (
               SELECT projection, event_id FROM projector_applied
               WHERE applied_at < now() - make_interval(secs => $1) LIMIT $2)""", float(keep_s), limit)).split()[-1])


async def prune_once(pool: asyncpg.Pool, settings: PruneSettings, service: str = "") -> tuple[int, int]:
    """One pruning pass (each table until nothing old is left). Returns (outbox rows, applied ids) deleted."""
    from shared.outbox import prune_published

    totals = [0, 0]
    for i, fn, keep in ((0, prune_published, settings.outbox_keep_s), (1, prune_applied, settings.applied_keep_s)):
        while True:
            async with pool.acquire() as conn, conn.transaction():
                n = await fn(conn, keep, settings.batch)
            totals[i] += n
            if n < settings.batch:
                break
    if any(totals):
        PRUNED.labels(service, "outbox").inc(totals[0])
        PRUNED.labels(service, "projector_applied").inc(totals[1])
        log.info("pruned", outbox=totals[0], projector_applied=totals[1])
    return totals[0], totals[1]


async def prune_forever(pool: asyncpg.Pool, service: str, settings: PruneSettings | None = None) -> None:
    """Background task: prune published outbox rows and old applied ids every interval."""
    settings = settings or PruneSettings()
    while True:
        await asyncio.sleep(settings.interval_s)
        try:
            await prune_once(pool, settings, service)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("prune_failed")
