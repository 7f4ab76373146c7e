"""Rebuild the available-balance ledger from the event log alone and compare it with live.

The live ledger is folded from commission events and moved directly by this service's
withdrawals; the rebuild folds both streams (commission + payout) into a fresh schema with the
same algebra, up to the current end of both topics. They must agree to the fen.

    python -m services.payout.replay            # rebuild into a fresh schema, compare with `payout`

(The full audit across services, balances of the commission service included, is the
commission service's replay; this one checks payout's own projection.)"""
from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.payout.handlers.ledger import LedgerProjection
from services.payout.main import MIGRATIONS
from services.payout.settings import PayoutSettings
from services.payout.store import ledger as ledger_store
from shared.kafka_security import kafka_options
from shared import db
from shared.projector import Projector, run_until
from shared.topics import COMMISSION_EVENTS, PAYOUT_EVENTS


@dataclass(frozen=True)
class Difference:
    promoter_id: str
    live: tuple[int, int, int] | None      # (available, reserved, withdrawn)
    replayed: tuple[int, int, int] | None


async def end_offsets(bootstrap: str, topics: tuple[str, ...] = (COMMISSION_EVENTS, PAYOUT_EVENTS)) -> dict[TopicPartition, int]:
    """The current end (next offset) of every partition of `topics`."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options())  # partitions_for waits for the metadata
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_options())
    await producer.start()
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(await producer.partitions_for(t))]
        return await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
        await producer.stop()


async def start_ledger_at(dsn: str, schema: str, positions: dict[TopicPartition, int],
                          projection: LedgerProjection | None = None) -> None:
    """Migrate `schema` and store `positions` as where its ledger projection starts reading
    (the partitions of the projection's topics only). Production reads the log from its
    beginning; tests start a schema at the current end of the session's shared topics, so that
    events earlier tests published are not folded into their ledgers."""
    await db.migrate(dsn, schema, MIGRATIONS)
    projection = projection or LedgerProjection()
    rows = [(projection.name, tp.topic, tp.partition, offset) for tp, offset in positions.items()
            if tp.topic in projection.topics]
    conn = await asyncpg.connect(dsn, server_settings={"search_path": db.check_schema(schema)})
    try:
        await conn.executemany("INSERT INTO projector_offsets (projection, topic, partition, next_offset) "
                               "VALUES ($1, $2, $3, $4)", rows)
    finally:
        await conn.close()


async def rebuild(dsn: str, bootstrap: str, schema: str, stop_at: dict[TopicPartition, int] | None = None,
                  *, start_at: dict[TopicPartition, int] | None = None) -> int:
    """Fold commission and payout events into `schema` (migrated here) from `start_at` (default:
    the beginning of the log) up to `stop_at` (default: the end of both topics now). Returns the
    number of records read."""
    if start_at:
        await start_ledger_at(dsn, schema, start_at, LedgerProjection(include_withdrawals=True))
    else:
        await db.migrate(dsn, schema, MIGRATIONS)
    stop_at = stop_at if stop_at is not None else await end_offsets(bootstrap)
    pool = await db.create_pool(dsn, schema)
    try:
        projector = Projector(LedgerProjection(include_withdrawals=True), pool, service="payout")
        return await run_until(projector, bootstrap, stop_at)
    finally:
        await pool.close()


async def compare(dsn: str, live_schema: str, replay_schema: str,
                  promoter_ids: list[str] | None = None) -> list[Difference]:
    """Promoters whose (available, reserved, withdrawn) differ between the two schemas."""
    figures = []
    for schema in (live_schema, replay_schema):
        pool = await db.create_pool(dsn, schema, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                figures.append(await ledger_store.all_balances(conn, promoter_ids))
        finally:
            await pool.close()
    live, replayed = figures
    zero = (0, 0, 0)
    return [Difference(p, live.get(p), replayed.get(p)) for p in sorted(set(live) | set(replayed))
            if live.get(p, zero) != replayed.get(p, zero)]


async def unpublished(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": db.check_schema(schema)})
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox_pending")
    finally:
        await conn.close()


async def main() -> int:  # pragma: no cover - the operator's command
    s = PayoutSettings()
    live = os.environ.get("PAYOUT_SCHEMA", "payout")  # the demo and tests run under their own schema
    if n := await unpublished(s.database_url, live):
        print(f"{n} payout events are not yet published; run again when the outbox is drained")
        return 2
    replay_schema = "payout_replay_" + uuid.uuid4().hex[:8]
    read = await rebuild(s.database_url, s.kafka_bootstrap_servers, replay_schema)
    diffs = await compare(s.database_url, live, replay_schema)
    print(f"read {read} records into {replay_schema}; {len(diffs)} promoter(s) differ")
    for d in diffs[:50]:
        print(f"  {d.promoter_id}: live={d.live} replayed={d.replayed}")
    await db.drop_schema(s.database_url, replay_schema)
    return 1 if diffs else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(asyncio.run(main()))
