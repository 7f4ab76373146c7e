"""The outbox relay on the real broker and database: an oversized record is parked and blocks
nothing, the partition cache is bounded, published rows and old applied ids are pruned."""
from __future__ import annotations

import pytest

from shared import db
from shared.events import new_event
from shared.outbox import OUTBOX_PARKED, OutboxRecord, OutboxRelay, make_producer, pruned_through, record, record_events
from shared.projector import PruneSettings, prune_once
from tests.conftest import create_topics
from tests.integration.foundation.tally import MIGRATIONS, TallyAdded
from tests.integration.foundation.test_projector import read_topic

pytestmark = pytest.mark.integration


async def test_an_oversized_record_is_parked_and_later_rows_are_published(infra, fresh_schema, ids):
    out = ids("parked-out")
    await create_topics(infra["kafka"], [out], partitions=1)
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    producer = make_producer(infra["kafka"], max_batch_size=16 * 1024)
    await producer.start()
    try:
        before = new_event(TallyAdded(counter="o", amount=1))
        huge = OutboxRecord.of(out, new_event(TallyAdded(counter="o" * 1_100_000, amount=2)))  # above Kafka's ~1 MB
        after = [new_event(TallyAdded(counter="o", amount=i)) for i in (3, 4)]
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, [before])
            await record(conn, [huge])
            await record_events(conn, out, after)
        relay = OutboxRelay(pool, producer, "tally-parking")
        await relay.drain()
        got = await read_topic(infra["kafka"], out, min_count=3)
        assert sorted(int(r.value.split(b'"amount":')[1].split(b"}")[0]) for r in got) == [1, 3, 4]
        row = await pool.fetchrow("SELECT published_at, parked_at, parked_reason FROM outbox WHERE event_id = $1", huge.event_id)
        assert row["published_at"] is None and row["parked_at"] is not None
        assert "larger than the 1000000 bytes Kafka accepts" in row["parked_reason"]
        assert OUTBOX_PARKED.labels("tally-parking", out)._value.get() == 1
        assert await relay.drain() == 0  # parked: not retried, nothing left pending
        # one the relay lets through but the broker refuses is parked too
        relay.max_record_bytes = 2_000_000
        huge2 = OutboxRecord.of(out, new_event(TallyAdded(counter="q" * 1_100_000, amount=5)))
        async with pool.acquire() as conn, conn.transaction():
            await record(conn, [huge2])
            await record_events(conn, out, [new_event(TallyAdded(counter="o", amount=6))])
        await relay.drain()
        assert await pool.fetchval("SELECT parked_reason FROM outbox WHERE event_id = $1", huge2.event_id) is not None
        assert len(await read_topic(infra["kafka"], out, min_count=4)) == 4
    finally:
        await producer.stop()
        await pool.close()


async def test_the_partition_cache_is_bounded(infra, fresh_schema, ids):
    out = ids("lru-out")
    await create_topics(infra["kafka"], [out])
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    producer = make_producer(infra["kafka"])
    await producer.start()
    try:
        relay = OutboxRelay(pool, producer, "tally", partition_cache=16)
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, [new_event(TallyAdded(counter=f"k{i}", amount=i)) for i in range(200)])
        assert await relay.drain() == 200
        assert len(relay._partition_of) == 16
    finally:
        await producer.stop()
        await pool.close()


async def test_published_rows_and_old_applied_ids_are_pruned_keeping_the_rest(infra, fresh_schema, ids):
    out = ids("prune-out")
    await create_topics(infra["kafka"], [out], partitions=1)
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    producer = make_producer(infra["kafka"])
    await producer.start()
    try:
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, [new_event(TallyAdded(counter="p", amount=i)) for i in range(10)])
        await OutboxRelay(pool, producer, "tally").drain()
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, [new_event(TallyAdded(counter="p", amount=99))])  # not published yet
            await conn.execute("UPDATE outbox SET created_at = now() - interval '2 hours'")
            await conn.execute("INSERT INTO projector_applied (projection, event_id, applied_at) "
                               "SELECT 'tally', gen_random_uuid(), now() - interval '40 days' FROM generate_series(1, 5)")
            await conn.execute("INSERT INTO projector_applied (projection, event_id) "
                               "SELECT 'tally', gen_random_uuid() FROM generate_series(1, 3)")
        got = await prune_once(pool, PruneSettings(FENXIAO_OUTBOX_KEEP_S=3600, FENXIAO_PRUNE_BATCH=4))
        assert got == (10, 5)
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1  # unpublished kept
        assert await pool.fetchval("SELECT count(*) FROM projector_applied") == 3  # the recent ids kept
        async with pool.acquire() as conn:
            assert await pruned_through(conn) == {(out, 0): 10}  # every pruned row lies below offset 10
        assert await prune_once(pool, PruneSettings()) == (0, 0)
    finally:
        await producer.stop()
        await pool.close()
