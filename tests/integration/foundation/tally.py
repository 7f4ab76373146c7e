"""A minimal service used to prove the plumbing: it tallies `TallyAdded` events and, for
each, emits a `TallyEchoed` caused event. The tally table deliberately has no uniqueness
guard of its own, so any double application shows up as a wrong count."""
from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, ClassVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import EventPayload, derive_event_id, new_event, register
from shared.events.catalog import catalog
from shared.projector import Batch, Projector
from shared.service import ServiceSpec, create_app
from shared.settings import CommonSettings

MIGRATIONS = Path(__file__).parent / "migrations"


if not catalog.knows("TallyAdded"):
    @register
    class TallyAdded(EventPayload):
        event_type: ClassVar[str] = "TallyAdded"
        key_field: ClassVar[str] = "counter"
        counter: str
        amount: int

    @register
    class TallyEchoed(EventPayload):
        event_type: ClassVar[str] = "TallyEchoed"
        key_field: ClassVar[str] = "counter"
        counter: str
        source_event_id: str
else:  # pragma: no cover - re-import under another module name
    TallyAdded = catalog.types()["TallyAdded"]
    TallyEchoed = catalog.types()["TallyEchoed"]


class TallyProjection:
    name = "tally"
    event_types = frozenset({"TallyAdded"})

    def __init__(self, topic: str, out_topic: str, delay_s: float = 0.0, crash_after_commit: bool = False):
        self.topics = (topic,)
        self.out_topic = out_topic
        self.delay_s = delay_s

    async def apply(self, conn, batch: Batch) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # widens the window in which a kill lands mid-batch
        await conn.executemany(
            "INSERT INTO tally_seen (event_id, counter, amount) VALUES ($1, $2, $3)",
            [(a.envelope.event_id, a.payload.counter, a.payload.amount) for a in batch.events],
        )
        await conn.execute(
            "INSERT INTO tally_totals (id, n, total) VALUES (1, $1, $2) "
            "ON CONFLICT (id) DO UPDATE SET n = tally_totals.n + $1, total = tally_totals.total + $2",
            len(batch.events), sum(a.payload.amount for a in batch.events),
        )
        for a in batch.events:
            echo = TallyEchoed(counter=a.payload.counter, source_event_id=str(a.envelope.event_id))
            batch.emit(self.out_topic, new_event(echo, event_id=derive_event_id(a.envelope.event_id, "echo"), cause=a.envelope))


@asynccontextmanager
async def by_hand(bootstrap: str, pool, projection: TallyProjection, *,
                  assign: bool = True) -> AsyncIterator[tuple[AIOKafkaConsumer, Projector, TopicPartition]]:
    """A tally projector driven by hand on partition 0 of the projection's topic, with its own
    consumer (assigned there, and the projector too unless `assign=False`). On exit: a position
    retry still pending is cancelled and the consumer stopped (the caller closes the pool)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(projection.topics[0], 0)
    consumer.assign([tp])
    projector = Projector(projection, pool, service="tally")
    projector.bind_consumer(lambda: consumer)
    try:
        if assign:
            await projector.assign([tp])
        yield consumer, projector, tp
    finally:
        if projector._position_retry:  # noqa: SLF001
            projector._position_retry.cancel()  # noqa: SLF001
        await consumer.stop()


async def take(consumer: AIOKafkaConsumer, n: int, timeout_ms: int = 2000) -> list:
    """At least `n` records from the hand-driven consumer, in partition order."""
    records: list = []
    while len(records) < n:
        got = await consumer.getmany(timeout_ms=timeout_ms)
        records += [r for rs in got.values() for r in rs]
    return records


def make_app():
    """Built from the environment so tests can run it as a separate process."""
    topic, out = os.environ["TALLY_TOPIC"], os.environ["TALLY_OUT_TOPIC"]
    delay = float(os.environ.get("TALLY_DELAY_S", "0"))
    crash = os.environ.get("TALLY_CRASH_AFTER_COMMIT") == "1"
    settings = CommonSettings()

    async def arm_crash(rt) -> None:
        # Die right after the first commit that caused events, before the relay can publish them.
        for p in rt.projectors:
            p.on_committed = lambda b: os._exit(9) if b.emitted else None

    spec = ServiceSpec(service="tally", migrations=MIGRATIONS, projections=[lambda rt: TallyProjection(topic, out, delay)],
                       background=[arm_crash] if crash else [], schema=os.environ["TALLY_SCHEMA"])
    return create_app(spec, settings)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(make_app(), host="127.0.0.1", port=int(os.environ.get("TALLY_PORT", "0")), log_config=None)
