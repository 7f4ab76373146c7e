"""The exactly-once projector on the real broker and database: kills, redeliveries,
rebalances, a crash between commit and publish, poison messages, migrations."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import db
from shared.events import new_event
from shared.projector import Projector
from tests.conftest import create_topics, eventually
from tests.integration.foundation.tally import MIGRATIONS, TallyAdded, TallyProjection, by_hand, take
from simulation.cluster import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


async def publish_tallies(bootstrap: str, topic: str, n: int, *, counters: int = 8, start: int = 0) -> int:
    """Publish n TallyAdded events (amount = index+1); returns the sum of amounts."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    total = 0
    try:
        futs = []
        for i in range(start, start + n):
            env = new_event(TallyAdded(counter=f"c{i % counters}", amount=i + 1))
            total += i + 1
            futs.append(await producer.send(topic, env.to_bytes(), key=env.key.encode()))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return total


async def totals(dsn: str, schema: str) -> tuple[int, int, int, int]:
    """(n, total, rows seen, distinct event ids seen) of the tally projection."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass($1)", f"{schema}.tally_totals"):
            return (0, 0, 0, 0)
        row = await conn.fetchrow(f"SELECT n, total FROM {schema}.tally_totals WHERE id = 1")
        seen = await conn.fetchrow(f"SELECT count(*) AS c, count(DISTINCT event_id) AS d FROM {schema}.tally_seen")
        return (row["n"] if row else 0, row["total"] if row else 0, seen["c"], seen["d"])
    finally:
        await conn.close()


class TallyProcess:
    """The tally service as a separate OS process (so it can be SIGKILLed)."""

    def __init__(self, infra, schema, topic, out, **env):
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra["kafka"], "DATABASE_URL": infra["db"],
                    "TALLY_SCHEMA": schema, "TALLY_TOPIC": topic, "TALLY_OUT_TOPIC": out,
                    "TALLY_PORT": str(free_port()), "LOG_LEVEL": "WARNING", "PROJECTOR_BATCH_MAX": "200",
                    "LOG_JSON": "true", **{k: str(v) for k, v in env.items()}}
        self.proc: subprocess.Popen | None = None

    async def start(self) -> "TallyProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.integration.foundation.tally"], cwd=ROOT, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import httpx

        async def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"tally exited {self.proc.returncode}: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(f"http://127.0.0.1:{self.env['TALLY_PORT']}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=60)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def exited(self, timeout=60) -> int:
        async def done():
            return self.proc.poll() is not None
        await eventually(done, timeout=timeout)
        return self.proc.returncode


async def read_topic(bootstrap: str, topic: str, *, min_count: int, timeout: float = 60) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    out = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < min_count and asyncio.get_running_loop().time() < deadline:
            got = await consumer.getmany(timeout_ms=500)
            for recs in got.values():
                out.extend(recs)
        # a little more, to catch anything beyond what was expected
        got = await consumer.getmany(timeout_ms=1000)
        for recs in got.values():
            out.extend(recs)
    finally:
        await consumer.stop()
    return out


@pytest.fixture
def topics(ids):
    return ids("tally-in"), ids("tally-out")


async def test_sigkill_mid_batch_applies_every_event_exactly_once(infra, fresh_schema, topics):
    topic, out = topics
    await create_topics(infra["kafka"], [topic, out])
    n = 3000
    expected_total = await publish_tallies(infra["kafka"], topic, n)
    slow = dict(TALLY_DELAY_S="0.15", PROJECTOR_BATCH_MAX="100")  # ~30 batches, each inside a slow transaction
    svc = await TallyProcess(infra, fresh_schema, topic, out, **slow).start()
    progress_at_kill = []
    for k in range(3):  # kill it three times while it is working through the backlog
        before = (await totals(infra["db"], fresh_schema))[0]
        await eventually(lambda: _progressed(infra, fresh_schema, before + 1), timeout=60)
        await asyncio.sleep(0.1)
        svc.kill()
        progress_at_kill.append((await totals(infra["db"], fresh_schema))[0])
        svc = await TallyProcess(infra, fresh_schema, topic, out, **slow).start()
    try:
        await eventually(lambda: _done(infra, fresh_schema, n), timeout=120)
        n_applied, total, rows, distinct = await totals(infra["db"], fresh_schema)
        assert (n_applied, total, rows, distinct) == (n, expected_total, n, n)
        # every caused event reached the output topic (at least once; ids let consumers dedupe)
        echoed = await read_topic(infra["kafka"], out, min_count=n)
        assert len({r.key for r in echoed}) == 8
        assert len({uuid.UUID(_envelope_id(r.value)) for r in echoed}) == n
    finally:
        svc.kill()
    assert all(0 < p < n for p in progress_at_kill), progress_at_kill  # each kill really landed mid-stream


async def _progressed(infra, schema, at_least):
    return (await totals(infra["db"], schema))[0] >= at_least


async def _done(infra, schema, n):
    return (await totals(infra["db"], schema))[0] >= n


def _envelope_id(raw: bytes) -> str:
    import json
    return json.loads(raw)["event_id"]


async def test_second_consumer_joining_mid_stream_applies_each_event_once(infra, fresh_schema, topics):
    topic, out = topics
    await create_topics(infra["kafka"], [topic, out])
    first = await TallyProcess(infra, fresh_schema, topic, out, TALLY_DELAY_S="0.02").start()
    second = None
    try:
        t1 = await publish_tallies(infra["kafka"], topic, 1500)
        await eventually(lambda: _progressed(infra, fresh_schema, 100), timeout=60)
        second = await TallyProcess(infra, fresh_schema, topic, out, TALLY_DELAY_S="0.02").start()  # rebalance
        t2 = await publish_tallies(infra["kafka"], topic, 1500, start=1500)
        await eventually(lambda: _done(infra, fresh_schema, 3000), timeout=120)
        await asyncio.sleep(1.0)  # nothing more may arrive
        assert await totals(infra["db"], fresh_schema) == (3000, t1 + t2, 3000, 3000)
    finally:
        first.kill()
        if second:
            second.kill()


async def test_crash_between_commit_and_publish_loses_no_caused_event(infra, fresh_schema, topics):
    topic, out = topics
    await create_topics(infra["kafka"], [topic, out])
    svc = await TallyProcess(infra, fresh_schema, topic, out, TALLY_CRASH_AFTER_COMMIT="1").start()
    await publish_tallies(infra["kafka"], topic, 50)
    assert await svc.exited() == 9  # died right after committing, before publishing
    applied = (await totals(infra["db"], fresh_schema))[0]
    assert applied > 0
    conn = await asyncpg.connect(infra["db"])
    unpublished = await conn.fetchval(f"SELECT count(*) FROM {fresh_schema}.outbox_pending")
    await conn.close()
    assert unpublished == applied  # the caused events are safe in the outbox, not yet on Kafka
    svc = await TallyProcess(infra, fresh_schema, topic, out).start()  # restart without the crash
    try:
        await eventually(lambda: _done(infra, fresh_schema, 50), timeout=60)
        echoed = await read_topic(infra["kafka"], out, min_count=50)
        assert len({_envelope_id(r.value) for r in echoed}) == 50
    finally:
        svc.kill()


async def test_poison_message_goes_to_dead_letter_and_stream_goes_on(infra, fresh_schema, topics):
    topic, out = topics
    dlq = topic + ".dlq"
    await create_topics(infra["kafka"], [topic, out, dlq])
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], enable_idempotence=True, acks="all")
    await producer.start()
    good = [new_event(TallyAdded(counter="p", amount=i)) for i in (1, 2, 3)]
    bad_payload = new_event(TallyAdded(counter="p", amount=9)).model_dump(mode="json")
    bad_payload["payload"]["amount"] = "not a number"
    import json
    try:
        # all on one partition (same key) so "after" means after
        await producer.send_and_wait(topic, good[0].to_bytes(), key=b"p")
        await producer.send_and_wait(topic, b"\x00not json at all", key=b"p")
        await producer.send_and_wait(topic, json.dumps(bad_payload).encode(), key=b"p")
        await producer.send_and_wait(topic, good[1].to_bytes(), key=b"p")
        await producer.send_and_wait(topic, good[2].to_bytes(), key=b"p")
    finally:
        await producer.stop()
    svc = await TallyProcess(infra, fresh_schema, topic, out).start()
    try:
        await eventually(lambda: _done(infra, fresh_schema, 3), timeout=60)
        assert (await totals(infra["db"], fresh_schema))[:2] == (3, 6)
        parked = await read_topic(infra["kafka"], dlq, min_count=2)
        reasons = sorted(dict((k, v.decode()) for k, v in r.headers)["dlq_reason"].split(":")[0] for r in parked)
        assert reasons == ["ValidationError", "ValidationError"]
        assert {r.value for r in parked} == {b"\x00not json at all", json.dumps(bad_payload).encode()}
    finally:
        svc.kill()


async def test_redelivered_and_duplicate_records_are_applied_once(infra, fresh_schema, topics):
    """In-process: hand the projector the same records twice (a Kafka redelivery) and the same
    event at a later offset (an outbox resend)."""
    topic, out = topics
    await create_topics(infra["kafka"], [topic, out], partitions=1)
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    env = new_event(TallyAdded(counter="r", amount=5))
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"])
    await producer.start()
    for _ in range(2):  # the same event published twice: offsets 0 and 1
        await producer.send_and_wait(topic, env.to_bytes(), key=b"r")
    await producer.stop()
    try:
        async with by_hand(infra["kafka"], pool, TallyProjection(topic, out)) as (consumer, projector, tp):
            records = await take(consumer, 2)
            await projector.handle(records[:1])
            await projector.handle(records[:1])   # redelivery of offset 0: dropped by position
            await projector.handle(records)        # offset 0 again + offset 1 (same event id): applied nothing new
            assert await totals(infra["db"], fresh_schema) == (1, 5, 1, 1)
            stored = await pool.fetchval("SELECT next_offset FROM projector_offsets WHERE projection='tally' AND topic=$1", topic)
            assert stored == 2
            # a second projector instance that still believes the old position cannot commit (compare-and-set)
            stale = Projector(TallyProjection(topic, out), pool, service="tally")
            stale.bind_consumer(lambda: consumer)
            stale.positions[tp] = 1
            assert await stale.handle(records[1:]) is None
            assert stale.positions[tp] == 2  # re-read from the store
            assert await totals(infra["db"], fresh_schema) == (1, 5, 1, 1)
    finally:
        await pool.close()


async def test_migrations_apply_to_empty_schema_and_again_as_no_op(infra, fresh_schema):
    first = await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    assert first == ["0000_projector_and_outbox", "0001_outbox_parking_and_pruning", "0002_outbox_chain", "0003_outbox_pending",
                     "0004_outbox_insert_only", "0005_outbox_small_analyze_sample",
                     "0001_create_tally"]
    assert await db.migrate(infra["db"], fresh_schema, MIGRATIONS) == []
    conn = await asyncpg.connect(infra["db"])
    try:
        tables = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", fresh_schema)}
    finally:
        await conn.close()
    assert {"projector_offsets", "projector_applied", "outbox", "tally_seen", "tally_totals"} <= tables


async def test_trace_context_follows_an_event_into_the_events_it_causes(infra, fresh_schema, topics):
    topic, out = topics
    await create_topics(infra["kafka"], [topic, out], partitions=1)
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    trace_id = uuid.uuid4().hex
    env = new_event(TallyAdded(counter="t", amount=1))
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"])
    await producer.start()
    await producer.send_and_wait(topic, env.to_bytes(), key=b"t",
                                 headers=[("traceparent", f"00-{trace_id}-{'1' * 16}-01".encode())])
    await producer.stop()
    try:
        async with by_hand(infra["kafka"], pool, TallyProjection(topic, out)) as (consumer, projector, tp):
            got = await consumer.getmany(timeout_ms=5000)
            batch = await projector.handle([r for rs in got.values() for r in rs])
            assert batch is not None and len(batch.emitted) == 1
            assert batch.emitted[0].headers["traceparent"].split("-")[1] == trace_id
            row = await pool.fetchrow("SELECT headers FROM outbox WHERE event_id = $1", batch.emitted[0].event_id)
            assert trace_id in row["headers"]
    finally:
        await pool.close()


async def test_relay_batches_land_on_the_partition_a_plain_send_would_choose_in_order(infra, fresh_schema, topics):
    """The relay builds record batches per partition itself: a key must still land where the
    producer's own partitioner puts it (consumers rely on key -> partition for ordering)."""
    from shared.outbox import OutboxRelay, make_producer, record_events

    topic, out = topics
    await create_topics(infra["kafka"], [topic, out])
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    producer = make_producer(infra["kafka"])
    await producer.start()
    try:
        events = [new_event(TallyAdded(counter=f"k{i % 20}", amount=i)) for i in range(200)]
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, events)
        assert await OutboxRelay(pool, producer, "tally").drain() == 200
        expected = {}
        for i in range(20):  # where a plain send() puts each key
            md = await producer.send_and_wait(topic, b"probe", key=f"k{i}".encode())
            expected[f"k{i}"] = md.partition
        got = await read_topic(infra["kafka"], out, min_count=200)
        assert len(got) == 200
        assert all(r.partition == expected[r.key.decode()] for r in got)
        by_key = {}
        for r in sorted(got, key=lambda r: (r.partition, r.offset)):
            by_key.setdefault(r.key.decode(), []).append(json.loads(r.value)["payload"]["amount"])
        assert all(v == sorted(v) for v in by_key.values())  # per key, in the order written
        assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0
    finally:
        await producer.stop()
        await pool.close()


async def test_batches_start_at_least_the_minimum_interval_apart_and_apply_everything_once(infra, fresh_schema, topics):
    """PROJECTOR_BATCH_MIN_INTERVAL_MS: what arrives while a projector waits joins its next batch;
    nothing is lost or applied twice, and no two batches start closer than the interval."""
    topic, out = topics
    await create_topics(infra["kafka"], [topic, out])
    n, interval_s = 1200, 0.5
    svc = await TallyProcess(infra, fresh_schema, topic, out, PROJECTOR_BATCH_MIN_INTERVAL_MS=int(interval_s * 1000),
                             PROJECTOR_BATCH_MAX="200").start()
    try:
        t0 = time.monotonic()
        expected_total = await publish_tallies(infra["kafka"], topic, n)
        await eventually(lambda: _done(infra, fresh_schema, n), timeout=60)
        elapsed = time.monotonic() - t0
        assert await totals(infra["db"], fresh_schema) == (n, expected_total, n, n)
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(f"http://127.0.0.1:{svc.env['TALLY_PORT']}/metrics")).text
        batches = sum(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("fenxiao_batch_seconds_count{"))
    finally:
        svc.kill()
    # at most 200 records a batch, so at least six; their starts at least the interval apart (without it the
    # backlog goes through in well under a second)
    assert batches >= n / 200
    assert elapsed >= (batches - 1) * interval_s, (elapsed, batches)
