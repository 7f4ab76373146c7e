"""Transactional outbox: events a transaction causes are written in it and published after
it, so a crash between commit and send loses nothing (the relay resends on restart, and the
deterministic event ids let consumers drop the repeat)."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from prometheus_client import Counter

from shared.chain import HASH, PREV, SAVE_HEADS, Linker, save_skipped
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


#: The outbox table's columns in order: `record` passes one array of the table's own row type
#: (`outbox[]`), which asyncpg encodes per row as one composite (its array encoder type-checks
#: every element: one array of rows beats five parallel arrays); the columns the insert does not
#: set are None. A migration that changes the table's columns must change this tuple
#: (asyncpg refuses a row of the wrong length; tests/integration/foundation/test_outbox.py checks).
OUTBOX_COLUMNS = ("seq", "event_id", "topic", "key", "value", "headers", "created_at", "published_at", "parked_at",
                  "parked_reason")

#: whether the outbox row `outbox` has been published, as a column of a query over the outbox:
#: its seq gone from `outbox_pending` and not parked (the outbox is insert-only since migration
#: 0004; `published_at` is not maintained)
PUBLISHED = "(outbox.parked_at IS NULL AND NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.seq = outbox.seq))"

#: the rows and their place in `outbox_pending` (what the relay has still to publish), one statement
_INSERT = """WITH written AS (
                 INSERT INTO outbox (event_id, topic, key, value, headers)
                 SELECT r.event_id, r.topic, r.key, r.value, r.headers FROM unnest($1::outbox[]) AS r
                 ON CONFLICT (event_id) DO NOTHING RETURNING seq)
             INSERT INTO outbox_pending (seq) SELECT seq FROM written"""


async def record(conn: asyncpg.Connection, records: Sequence[OutboxRecord]) -> None:
    """Insert into the outbox inside the caller's transaction, in one statement; an id already
    there (or earlier in `records`) is ignored."""
    if not records:
        return
    # headers repeat (callers share one dict per event type and trace): each distinct dict is
    # serialised once per call (by identity: every dict stays alive for the call)
    dumped: dict[int, str] = {}
    rows = []
    for r in records:
        h = r.headers
        j = dumped.get(id(h))
        if j is None:
            j = dumped[id(h)] = json.dumps(h)
        rows.append((None, r.event_id, r.topic, r.key, r.value, j, None, None, None, None))
    await conn.execute(_INSERT, rows)


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


_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox'))"
#: the next unpublished rows in seq order, and the chain heads (rows with a NULL seq). Each outbox
#: row is read by its key (a lateral subquery fenced with OFFSET 0: no plan can scan the table):
#: as a plain join, the plan cached while the tables were empty was a hash join over a scan of the
#: whole outbox, run on every cycle until an ANALYZE replaced it (the likely cause of one bench run's
#: 40 s of PostgreSQL at 80-100 % of a core; tests/integration/foundation/test_outbox_plans.py)
_PENDING = """
    SELECT o.seq, o.topic, o.key, o.value, o.headers::text AS headers, NULL::integer AS partition
    FROM (SELECT seq FROM outbox_pending ORDER BY seq LIMIT $1) AS p
    CROSS JOIN LATERAL (SELECT seq, topic, key, value, headers FROM outbox WHERE outbox.seq = p.seq OFFSET 0) AS o
    UNION ALL
    SELECT NULL, topic, NULL, NULL, hash, partition FROM outbox_chain_heads"""
#: rows published (gone from the pending rows: the outbox row itself is never updated, see
#: migration 0004), how far each partition is published, the chain heads: one statement
_PUBLISHED = """
    WITH sent AS (DELETE FROM outbox_pending WHERE seq = ANY($1::bigint[])),
    marks AS (INSERT INTO outbox_published_marks (topic, partition, next_offset)
              SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[])
              ON CONFLICT (topic, partition) DO UPDATE
              SET next_offset = GREATEST(outbox_published_marks.next_offset, EXCLUDED.next_offset))
    """ + SAVE_HEADS.format(topics="$5", partitions="$6", hashes="$7")
#: rows that can never be sent, by key (`seq = ANY`: a join with the reasons' unnest was planned as a
#: scan of the whole outbox), each with its reason
_PARK = """WITH off AS (DELETE FROM outbox_pending WHERE seq = ANY($1::bigint[]))
           UPDATE outbox SET parked_at = now(), parked_reason = ($2::text[])[array_position($1::bigint[], outbox.seq)]
           WHERE outbox.seq = ANY($1::bigint[])
           RETURNING outbox.seq, outbox.event_id, outbox.topic, outbox.key, outbox.parked_reason AS reason"""


class OutboxRelay:
    """Publishes unpublished outbox rows in order. One relay at a time per schema publishes
    (an advisory lock), so two service instances never interleave one key's events."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, service: str, *, batch: int = 2000, idle_s: float = 1.0,
                 busy_retry_s: float = 0.05, linger_s: float = 0.0,
                 partition_cache: int = 50_000, max_record_bytes: int = 1_000_000):
        self.pool, self.producer, self.service = pool, producer, service
        self.batch, self.idle_s = batch, idle_s
        #: after a cycle that published, wait this long before the next (FENXIAO_OUTBOX_LINGER_MS):
        #: under steady load the writer kicks after every commit, and a cycle per commit pays the
        #: cycle's fixed cost (five round trips, a produce request) for a few rows each time; a
        #: kick that comes meanwhile is kept and served when the wait ends
        self.linger_s = linger_s
        #: after finding the lock held (another replica's relay mid-cycle), look again this soon: that
        #: cycle may have read its rows before this replica's writer committed, and nothing else would
        #: wake this relay before idle_s
        self.busy_retry_s = busy_retry_s
        #: the last publish_pending found another relay holding the lock
        self.lock_busy = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        #: least recently used (topic, key) -> partition, at most `partition_cache` entries
        self._partition_of: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self.partition_cache = partition_cache
        #: larger records are parked (Kafka's default message.max.bytes / max.request.size is ~1 MB)
        self.max_record_bytes = max_record_bytes
        #: called after a batch with (rows published, {topic: rows parked}), e.g. by a relay in its own
        #: process (shared.relay_process) to carry its counts to the service's /metrics
        self.on_counts: Callable[[int, dict[str, int]], None] | None = None
        self._closing = False

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
        """Publish one batch; returns how many rows went out (0 when none or another relay holds the lock).
        Five round trips whatever the batch: BEGIN, the lock, the pending rows with the chain heads,
        one statement marking rows published with the partitions' marks and the new heads, COMMIT
        (parking adds two)."""
        async with self.pool.acquire() as conn, conn.transaction():
            # its own statement: the rows must be read in a snapshot taken after the lock is held
            self.lock_busy = not await conn.fetchval(_LOCK)
            if self.lock_busy:
                return 0
            heads: dict[tuple[str, int], str] = {}
            pending: list[asyncpg.Record] = []
            last, unordered = -1, False
            for r in await conn.fetch(_PENDING, self.batch):
                seq = r[0]
                if seq is None:
                    heads[(r[1], r[5])] = r[4]  # a chain head (shared/chain.py)
                    continue
                unordered |= seq < last
                last = seq
                pending.append(r)
            if not pending:
                return 0
            if unordered:  # UNION ALL keeps the branch's order in practice; never rely on it
                pending.sort(key=lambda r: r[0])
            links = Linker(heads)  # tamper evidence: a hash chain per partition
            # One record batch per partition rather than one send() per row: a send() costs
            # about as much Python as the projection's own work per event. Rows stay in seq
            # order within each partition, and send_batch keeps a partition's batches in order.
            batches: dict[tuple[str, int], list[tuple[Any, list[int]]]] = {}
            parked: list[tuple[int, str]] = []  # (seq, why)
            # headers repeat (one value per event type and trace): each distinct one parsed once
            parsed: dict[str, tuple[list[tuple[str, bytes]], int]] = {}
            cache, limit, create_batch = self._partition_of, self.max_record_bytes, self.producer.create_batch
            for seq, topic, key_s, value, hjson, _ in pending:
                hp = parsed.get(hjson)
                if hp is None:
                    hl = [(k, str(v).encode()) for k, v in (json.loads(hjson) or {}).items()]
                    hp = parsed[hjson] = (hl, sum(len(k) + len(v) for k, v in hl))
                key = key_s.encode()
                size = len(key) + len(value) + hp[1]
                if size > limit:
                    # It can never be sent: park it rather than block every later row behind it.
                    parked.append((seq, f"record of {size} bytes is larger than the {limit} bytes Kafka accepts"))
                    continue
                ck = (topic, key)
                part = cache.get(ck)
                if part is None:
                    part = await self._partition(topic, key)
                else:
                    cache.move_to_end(ck)
                prev, h = links.next(topic, part, key, value, seq)
                hdrs = [*hp[0], (PREV, prev), (HASH, h)]
                chain = batches.get((topic, part))
                if chain is None:
                    chain = batches[(topic, part)] = []
                if not chain or chain[-1][0].append(key=key, value=value, timestamp=None, headers=hdrs) is None:
                    b = create_batch()  # takes one record of any size when empty
                    b.append(key=key, value=value, timestamp=None, headers=hdrs)
                    chain.append((b, []))
                chain[-1][1].append(seq)
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
                sent += members
                ends[(md.topic, md.partition)] = max(ends.get((md.topic, md.partition), 0), md.offset + len(members))
            topics, partitions, hashes = links.changed_heads()
            if sent or topics:
                await conn.execute(_PUBLISHED, sent, [t for t, _ in ends], [p for _, p in ends], list(ends.values()),
                                   topics, partitions, hashes)
            gone = []
            if parked:
                # a record chained but refused by the broker: its link is recorded so that verify can step over it
                await save_skipped(conn, links.skipped_links(seq for seq, _ in parked))
                gone = await conn.fetch(_PARK, [seq for seq, _ in parked], [why for _, why in parked])
        for r in gone:
            OUTBOX_PARKED.labels(self.service, r["topic"]).inc()
            log.error("outbox_record_parked", seq=r["seq"], event_id=str(r["event_id"]), topic=r["topic"], key=r["key"],
                      reason=r["reason"])
        OUTBOX_PUBLISHED.labels(self.service).inc(len(sent))
        if self.on_counts is not None and (sent or gone):
            by_topic: dict[str, int] = {}
            for r in gone:
                by_topic[r["topic"]] = by_topic.get(r["topic"], 0) + 1
            self.on_counts(len(sent), by_topic)
        return len(pending)

    async def drain(self) -> int:
        total = 0
        while (n := await self.publish_pending()) > 0:
            total += n
        return total

    async def run(self) -> None:
        while True:
            # a stop asked before this cycle began (finish()): this cycle is the last, and it reads
            # after the request, so it publishes everything committed before it
            last = self._closing
            if not last:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands
                # as the event is set (a kick() just before stop()), and stop() then waits forever.
                try:
                    async with asyncio.timeout(self.idle_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            try:
                # Batch after batch while they come back full. A batch that was not full took
                # everything committed before this cycle began; a writer that commits later kicks
                # again, so the wait above returns at once: no extra empty cycle per wake-up (a
                # writer in another process that does not kick is picked up within idle_s).
                while (n := await self.publish_pending()) >= self.batch:
                    pass
                if self.lock_busy and not last:
                    await asyncio.sleep(self.busy_retry_s)
                    self._wake.set()
                elif n and self.linger_s and not self._closing:
                    await asyncio.sleep(self.linger_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_publish_failed")
                if not last:
                    await asyncio.sleep(0.5)
            if last:
                return

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self.service}")

    @property
    def ready(self) -> bool:
        """Publishing: started and its task not ended (a service's /readyz asks)."""
        return self._task is not None and not self._task.done()

    async def finish(self) -> None:
        """Stop after one more cycle (which publishes everything committed before it began),
        never cancelling a cycle half-way (its records would be sent again by the next relay)."""
        if self._task:
            self._closing = True
            self.kick()
            try:
                await self._task
            finally:
                self._task = None

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
    `pruned_through` to how far it is published: a pruned row lies below it in the log.
    Published means gone from `outbox_pending` and not parked (`published_at` is only set on rows
    published before migration 0004)."""
    await conn.execute("UPDATE outbox_published_marks SET pruned_through = next_offset WHERE pruned_through < next_offset")
    return int((await conn.execute(
        f"""DELETE FROM outbox WHERE seq IN (
               SELECT seq FROM outbox WHERE created_at < now() - make_interval(secs => $1) AND {PUBLISHED} LIMIT $2)""",
        float(keep_s), limit)).split()[-1])


async def pruned_through(conn: asyncpg.Connection) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the log offset below which published rows may have been pruned."""
    return {(r["topic"], r["partition"]): r["pruned_through"]
            for r in await conn.fetch("SELECT topic, partition, pruned_through FROM outbox_published_marks")}
