"""Tamper evidence on the real broker: the outbox relay chains each partition's records; `verify`
passes on the log as published (a relay resend after a crash included) and, on copies of the
topic, finds an edited record, a dropped record, an inserted record (plain, or with a forged but
self-consistent link) and a dropped tail, each at its partition and offset."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from shared import chain, db
from shared.events import new_event
from shared.outbox import OutboxRelay, make_producer, record_events
from tests.conftest import create_topics
from tests.integration.foundation.tally import MIGRATIONS, TallyAdded

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


async def read_all(bootstrap: str, topic: str) -> list:
    from aiokafka import TopicPartition

    from shared import logread

    parts = (await logread.partitions_of(bootstrap, [topic]))[topic]
    tps = [TopicPartition(topic, p) for p in parts]
    begin, end = await logread.offsets(bootstrap, tps)
    got: list = []
    await logread.read(bootstrap, {tp: (begin[tp], end[tp]) for tp in tps}, lambda tp, r: got.append(r))
    return sorted(got, key=lambda r: (r.partition, r.offset))


async def copy(bootstrap: str, records: list, to: str, *, edit=None, drop=None, insert_after=None, forge=False) -> None:
    """Copy records (partition by partition) to topic `to`, changing one thing."""
    await create_topics(bootstrap, [to], partitions=2)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await p.start()
    try:
        for r in records:
            where = (r.partition, r.offset)
            if where == drop:
                continue
            value = r.value.replace(b'"amount":', b'"amount":1') if where == edit else r.value
            await p.send_and_wait(to, value, key=r.key, partition=r.partition, headers=list(r.headers))
            if where == insert_after:
                fake = new_event(TallyAdded(counter=r.key.decode(), amount=1000)).to_bytes()
                headers = []
                if forge:  # a link computed as the relay would: self-consistent, linked to the record before it
                    prev = dict(r.headers)[chain.HASH].decode()
                    headers = [(chain.PREV, prev.encode()), (chain.HASH, chain.link(prev, r.key, fake).encode())]
                await p.send_and_wait(to, fake, key=r.key, partition=r.partition, headers=headers)
    finally:
        await p.stop()


async def test_verify_passes_as_published_and_catches_edit_drop_insert_and_tail(infra, fresh_schema, ids):
    bootstrap = infra["kafka"]
    topic = ids("chained")
    await create_topics(bootstrap, [topic], partitions=2)
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        relay = OutboxRelay(pool, producer, "tally", batch=10)
        async with pool.acquire() as conn, conn.transaction():
            await record_events(conn, topic, [new_event(TallyAdded(counter=f"k{i % 10}", amount=i)) for i in range(30)])
        # a crash after sending a batch and before its commit: the next relay resends it, same links
        heads_before = await pool.fetch("SELECT * FROM outbox_chain_heads")
        assert await relay.publish_pending() == 10
        assert heads_before == [] and len(await pool.fetch("SELECT * FROM outbox_chain_heads")) >= 1
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox_chain_heads")
            await conn.execute("UPDATE outbox SET published_at = NULL")
            await conn.execute("INSERT INTO outbox_pending (seq) SELECT seq FROM outbox ON CONFLICT DO NOTHING")
        assert await relay.drain() == 30
        heads = await chain.stored_heads(infra["db"], fresh_schema)
    finally:
        await producer.stop()
        await pool.close()

    v = await chain.verify(bootstrap, [topic], expected=heads)
    assert v.ok, [str(p) for p in v.problems]
    assert sum(w.records for w in v.walks) == 40 and sum(w.resends for w in v.walks) == 10
    assert {int(p): h for p, h in v.heads()[topic].items()} == heads[topic]

    records = await read_all(bootstrap, topic)
    # pick a record in the middle of partition 0 (after the resent ones) and the last one of partition 1
    p0 = [r for r in records if r.partition == 0]
    p1 = [r for r in records if r.partition == 1]
    mid, mid_next = p0[-4], p0[-3]
    last1 = p1[-1]

    def expect_for(copy_topic: str) -> dict:
        return {copy_topic: heads[topic]}

    async def check(name: str, **change) -> list[tuple[int, int | None, str]]:
        to = ids(name)
        await copy(bootstrap, records, to, **change)
        verdict = await chain.verify(bootstrap, [to], expected=expect_for(to))
        return [(p.partition, p.offset, p.what.split(":")[0]) for p in verdict.problems]

    # the copy unchanged is intact
    assert await check("same") == []
    # an edited record: its content no longer hashes to its link
    assert await check("edit", edit=(0, mid.offset)) == [(0, mid.offset, "content changed")]
    # a dropped record: the next one links to a record that is not there (offsets shift by one in the copy)
    assert await check("drop", drop=(0, mid.offset)) == [(0, mid.offset, "chain broken")]
    # an inserted record without a link, and one with a forged link: the record after it breaks
    assert await check("insert", insert_after=(0, mid.offset)) == [
        (0, mid.offset + 1, "record without a chain link")]
    assert await check("forge", insert_after=(0, mid.offset), forge=True) == [(0, mid_next.offset + 1, "chain broken")]
    # the last record of a partition dropped: only the relay's head shows it
    assert await check("tail", drop=(1, last1.offset)) == [(1, None, "the expected head " + heads[topic][1][:16] + "… is not in the log")]

    # the CLI against the relay's schema: exit 0
    done = subprocess.run([sys.executable, "-m", "shared.chain", "verify", "--topic", topic, "--schema", fresh_schema, "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "chains intact" in done.stdout, done.stdout + done.stderr

