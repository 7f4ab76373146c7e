"""The outbox relay on the real broker and database: an oversized record is parked and blocks
nothing, the partition cache is bounded, published rows and old applied ids are pruned."""
from __future__ import annotations

import json
from contextlib import asynccontextmanager

import pytest

from shared import db
from shared.events import new_event
from shared.outbox import OUTBOX_COLUMNS, OUTBOX_PARKED, OutboxRecord, OutboxRelay, make_producer, pruned_through, record, record_events
from shared.projector import PruneSettings, prune_once
from tests.conftest import create_topics
from tests.integration.foundation.tally import MIGRATIONS, TallyAdded
from tests.integration.foundation.test_projector import read_topic

pytestmark = pytest.mark.integration


@asynccontextmanager
async def outbox_on(infra, schema: str, topic: str, partitions: int = 4, **producer_kw):
    """A topic, the schema's plumbing (the outbox among it), a pool on the schema and a started
    producer: what every relay test stands on."""
    await create_topics(infra["kafka"], [topic], partitions=partitions)
    await db.migrate(infra["db"], schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], schema)
    producer = make_producer(infra["kafka"], **producer_kw)
    await producer.start()
    try:
        yield pool, producer
    finally:
        await producer.stop()
        await pool.close()


async def test_an_oversized_record_is_parked_and_later_rows_are_published(infra, fresh_schema, ids):
    out = ids("parked-out")
    async with outbox_on(infra, fresh_schema, out, partitions=1, max_batch_size=16 * 1024) as (pool, producer):
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


async def test_the_partition_cache_is_bounded(infra, fresh_schema, ids):
    out = ids("lru-out")
    async with outbox_on(infra, fresh_schema, out) as (pool, producer):
        relay = OutboxRelay(pool, producer, "tally", partition_cache=16)
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, [new_event(TallyAdded(counter=f"k{i}", amount=i)) for i in range(200)])
        assert await relay.drain() == 200
        assert len(relay._partition_of) == 16


async def test_published_rows_and_old_applied_ids_are_pruned_keeping_the_rest(infra, fresh_schema, ids):
    out = ids("prune-out")
    async with outbox_on(infra, fresh_schema, out, partitions=1) as (pool, producer):
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
        assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 1  # unpublished kept
        assert await pool.fetchval("SELECT count(*) FROM projector_applied") == 3  # the recent ids kept
        async with pool.acquire() as conn:
            assert await pruned_through(conn) == {(out, 0): 10}  # every pruned row lies below offset 10
        assert await prune_once(pool, PruneSettings()) == (0, 0)


async def test_record_ignores_repeated_ids_and_the_relay_sends_values_and_headers_as_written(infra, fresh_schema, ids):
    """record() in one statement: an id repeated within one call or across calls is stored once
    (the first), values and headers are stored as given (shared dicts, distinct ones, empty, not
    ASCII); the relay sends each with its own headers plus the chain links, the chain verifies,
    and the published marks and chain heads match the log."""
    from shared import chain

    out = ids("record-out")
    async with outbox_on(infra, fresh_schema, out, partitions=3) as (pool, producer):
        async with pool.acquire() as conn:
            cols = await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = 'outbox'::regclass AND attnum > 0"
                                    " AND NOT attisdropped ORDER BY attnum")
        assert tuple(c["attname"] for c in cols) == OUTBOX_COLUMNS
        shared_a = {"event_type": "TallyAdded", "event_version": "1", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
        shared_b = {"event_type": "TallyEchoed", "event_version": "1"}
        envs = [new_event(TallyAdded(counter=f"k{i % 7}", amount=i)) for i in range(40)]
        recs = []
        for i, e in enumerate(envs):
            h = shared_a if i % 3 == 0 else shared_b if i % 3 == 1 else {"event_type": "TallyAdded", "n": str(i), "名": "分销"}
            recs.append(OutboxRecord(e.event_id, out, e.key, e.to_bytes(), {} if i == 5 else h))
        first = OutboxRecord(envs[0].event_id, out, "other", b"not this one", {"x": "y"})
        async with pool.acquire() as conn, conn.transaction():
            await record(conn, recs[:20] + [recs[3]])  # a repeat inside one call
        async with pool.acquire() as conn, conn.transaction():
            await record(conn, [first] + recs[10:])  # repeats across calls: the stored rows win
        rows = await pool.fetch("SELECT event_id, key, value, headers FROM outbox ORDER BY seq")
        assert [r["event_id"] for r in rows] == [r.event_id for r in recs]
        assert [(r["key"], bytes(r["value"])) for r in rows] == [(r.key, r.value) for r in recs]
        assert [json.loads(r["headers"]) for r in rows] == [r.headers for r in recs]

        relay = OutboxRelay(pool, producer, "tally-record", batch=16)
        assert await relay.drain() == 40
        got = await read_topic(infra["kafka"], out, min_count=40)
        assert sorted(r.value for r in got) == sorted(r.value for r in recs)
        by_value = {r.value: r for r in recs}
        for m in got:
            sent = dict(m.headers)
            assert set(sent) == set(by_value[m.value].headers) | {chain.PREV, chain.HASH}
            assert {k: v.decode() for k, v in sent.items() if k not in (chain.PREV, chain.HASH)} == by_value[m.value].headers
            assert m.key == by_value[m.value].key.encode()
        # per partition: the log's order is the outbox's order (seq), and the chain holds
        seq_of = {r.value: i for i, r in enumerate(recs)}
        for p in {m.partition for m in got}:
            in_p = sorted((m for m in got if m.partition == p), key=lambda m: m.offset)
            assert [seq_of[m.value] for m in in_p] == sorted(seq_of[m.value] for m in in_p)
        heads = await chain.stored_heads(infra["db"], fresh_schema)
        verdict = await chain.verify(infra["kafka"], [out], expected=heads)
        assert verdict.ok, [str(p) for p in verdict.problems]
        assert sum(w.records for w in verdict.walks) == 40
        marks = {(r["topic"], r["partition"]): r["next_offset"]
                 for r in await pool.fetch("SELECT topic, partition, next_offset FROM outbox_published_marks")}
        counts: dict = {}
        for m in got:
            counts[(out, m.partition)] = counts.get((out, m.partition), 0) + 1
        assert marks == counts
        assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0


async def test_the_running_relay_publishes_full_batches_back_to_back_and_wakes_on_a_kick(infra, fresh_schema, ids):
    """run(): after a kick it publishes batch after batch while they come back full, and a kick
    after a later commit wakes it again; with an idle timer far beyond the test's wait, only the
    kicks can have published the rows."""
    import asyncio

    out = ids("run-out")

    async def unpublished_soon(pool) -> int:
        for _ in range(100):
            left = await pool.fetchval("SELECT count(*) FROM outbox_pending")
            if not left:
                return 0
            await asyncio.sleep(0.1)
        return left

    async with outbox_on(infra, fresh_schema, out, partitions=2) as (pool, producer):
        relay = OutboxRelay(pool, producer, "tally-run", batch=5, idle_s=600)
        try:
            relay.start()
            async with pool.acquire() as conn, conn.transaction():
                await record_events(conn, out, [new_event(TallyAdded(counter=f"r{i}", amount=i)) for i in range(12)])
            relay.kick()
            assert await unpublished_soon(pool) == 0  # 5 + 5 + 2 in one wake-up
            async with pool.acquire() as conn, conn.transaction():
                await record_events(conn, out, [new_event(TallyAdded(counter="r", amount=99))])
            relay.kick()
            assert await unpublished_soon(pool) == 0
            assert len(await read_topic(infra["kafka"], out, min_count=13)) == 13
        finally:
            await relay.stop()


async def test_a_relay_that_finds_the_lock_held_looks_again_without_waiting_for_a_kick(infra, fresh_schema, ids):
    """Another replica's relay holds the schema's relay lock: it may have read its rows before this
    replica's writer committed, and the writer's one kick has been spent on the busy lock. The
    relay must look again by itself (its idle timer is far beyond the test's wait)."""
    import asyncio

    import asyncpg

    out = ids("busy-out")
    async with outbox_on(infra, fresh_schema, out, partitions=1) as (pool, producer):
        relay = OutboxRelay(pool, producer, "tally-busy", idle_s=600, busy_retry_s=0.05)
        other = await asyncpg.connect(infra["db"], server_settings={"search_path": fresh_schema})
        try:
            relay.start()
            holder = other.transaction()
            await holder.start()  # the other replica's relay, mid-cycle
            assert await other.fetchval("SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox'))")
            async with pool.acquire() as conn, conn.transaction():
                await record_events(conn, out, [new_event(TallyAdded(counter=f"b{i}", amount=i)) for i in range(3)])
            relay.kick()
            for _ in range(100):
                if relay.lock_busy:
                    break
                await asyncio.sleep(0.02)
            assert relay.lock_busy  # the kick found the lock held
            await holder.commit()  # the other relay's cycle ends (without these rows)
            for _ in range(100):
                if not await pool.fetchval("SELECT count(*) FROM outbox_pending"):
                    break
                await asyncio.sleep(0.1)
            assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0
            assert len(await read_topic(infra["kafka"], out, min_count=3)) == 3
        finally:
            await relay.stop()
            await other.close()


async def test_pending_rows_track_what_is_left_and_publishing_never_rewrites_a_row(infra, fresh_schema, ids):
    """What is left to publish is `outbox_pending`: written with the row, gone when it is sent or
    parked; the outbox itself is insert-only (migration 0004: no second row version, no dead tuple
    per published event)."""
    out = ids("pending-out")
    async with outbox_on(infra, fresh_schema, out, partitions=2) as (pool, producer):
        events = [new_event(TallyAdded(counter=f"c{i % 7}", amount=i)) for i in range(300)]
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, events)
            await record_events(conn, out, events[:5])  # the same ids again: neither row nor pending twice
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 300
        assert await pool.fetchval("SELECT count(*) FROM outbox_pending p JOIN outbox o USING (seq)") == 300
        relay = OutboxRelay(pool, producer, "tally-pending", batch=120)
        assert await relay.publish_pending() == 120
        seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM outbox ORDER BY seq")]
        left = [r["seq"] for r in await pool.fetch("SELECT seq FROM outbox_pending ORDER BY seq")]
        assert left == seqs[120:]  # the oldest went first
        assert await relay.drain() == 180
        assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0
        assert len(await read_topic(infra["kafka"], out, min_count=300)) == 300
        # every row is still the version the recording transaction wrote (an update, HOT or
        # not, makes a new version stamped with the relay's transaction)
        assert await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM outbox") == 1
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == 0


async def test_a_lingering_relay_serves_the_kicks_of_its_wait_in_one_cycle(infra, fresh_schema, ids):
    """linger_s: after a cycle that published, the relay waits before the next; commits and kicks
    that come meanwhile are published together once the wait ends (fewer, larger cycles under
    load), and none of them is left behind."""
    import asyncio

    out = ids("linger-out")
    async with outbox_on(infra, fresh_schema, out, partitions=2) as (pool, producer):
        relay = OutboxRelay(pool, producer, "tally-linger", idle_s=600, linger_s=0.5)
        cycles: list[int] = []
        publish = relay.publish_pending

        async def counted() -> int:
            n = await publish()
            if n:
                cycles.append(n)
            return n
        relay.publish_pending = counted  # type: ignore[method-assign]
        try:
            relay.start()
            async with pool.acquire() as conn, conn.transaction():
                await record_events(conn, out, [new_event(TallyAdded(counter="l0", amount=0))])
            relay.kick()
            for _ in range(100):
                if cycles:
                    break
                await asyncio.sleep(0.01)
            assert cycles == [1]
            for i in range(1, 6):  # five writers' commits within the relay's wait
                async with pool.acquire() as conn, conn.transaction():
                    await record_events(conn, out, [new_event(TallyAdded(counter=f"l{i}", amount=i))])
                relay.kick()
                await asyncio.sleep(0.02)
            for _ in range(200):
                if not await pool.fetchval("SELECT count(*) FROM outbox_pending"):
                    break
                await asyncio.sleep(0.02)
            assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0
            assert cycles == [1, 5]
            assert len(await read_topic(infra["kafka"], out, min_count=6)) == 6
        finally:
            await relay.stop()


async def test_finish_publishes_what_was_committed_before_it_even_mid_wait(infra, fresh_schema, ids):
    """finish() while the relay lingers after a cycle: the relay still runs one more cycle, read
    after finish() was asked, so a row committed before finish() is on the log when it returns."""
    import asyncio

    out = ids("finish-out")
    async with outbox_on(infra, fresh_schema, out, partitions=1) as (pool, producer):
        relay = OutboxRelay(pool, producer, "tally-finish", idle_s=600, linger_s=5.0)
        relay.start()
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, [new_event(TallyAdded(counter="f0", amount=0))])
        relay.kick()
        for _ in range(100):
            if not await pool.fetchval("SELECT count(*) FROM outbox_pending"):
                break
            await asyncio.sleep(0.02)
        # the relay now lingers for 5 s; a row committed without a kick, then finish()
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, out, [new_event(TallyAdded(counter="f1", amount=1))])
        await asyncio.wait_for(relay.finish(), 10)
        assert await pool.fetchval("SELECT count(*) FROM outbox_pending") == 0
        assert len(await read_topic(infra["kafka"], out, min_count=2)) == 2
