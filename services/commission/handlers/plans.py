"""Plans published before this schema existed (a fresh schema over an existing log): copied from
CommissionPlanPublished events on our own topic at start-up, when the plan table is empty. Later
plans are written to the table by the API in the transaction that records their event."""
from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.commission.store import state as store
from shared.kafka_security import kafka_options
from shared.contracts.commission import CommissionPlanPublished
from shared.events import Envelope, catalog
from shared.topics import COMMISSION_EVENTS

log = structlog.get_logger(__name__)


async def restore_plans(pool: asyncpg.Pool, bootstrap: str) -> int:
    """Copy every plan version in the log into an empty plan table. Returns how many."""
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM plans)"):
            return 0
        origin = {(r["topic"], r["partition"]): r["from_offset"] for r in await conn.fetch("SELECT * FROM replay_origin")}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                **kafka_options())
    await consumer.start()
    await asyncio.sleep(0)  # let the consumer's own task start, or stopping it at once raises CancelledError
    found = []
    try:
        # an unsubscribed consumer knows no topic yet: ask the cluster
        parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(COMMISSION_EVENTS)  # noqa: SLF001
        if not parts:
            return 0
        tps = [TopicPartition(COMMISSION_EVENTS, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > origin.get((tp.topic, tp.partition), 0)}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, origin.get((tp.topic, tp.partition), 0))
        while todo:
            got = await consumer.getmany(*todo, timeout_ms=500, max_records=10_000)
            for tp, recs in got.items():
                for r in recs:
                    if r.offset >= ends[tp]:
                        break
                    etype = next((v.decode() for k, v in (r.headers or ()) if k == "event_type" and v), None)
                    if etype not in (None, "CommissionPlanPublished"):
                        continue
                    env = Envelope.from_bytes(r.value)
                    if env.event_type == "CommissionPlanPublished":
                        found.append((env, catalog.payload(env)))
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    n = 0
    async with pool.acquire() as conn, conn.transaction():
        for env, p in found:
            assert isinstance(p, CommissionPlanPublished)
            n += await store.insert_plan(conn, p.plan_version, p.plan, p.published_by, p.published_at, env.event_id)
    if n:
        log.info("plans_restored_from_log", versions=n)
    return n
