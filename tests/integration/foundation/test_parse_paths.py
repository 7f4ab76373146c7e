"""The projector's two ways of reading a record, on the real broker and database: the one-step
parse (the current version of a wanted type, chosen by the relay's headers or a peek at the
body) and the two-step one for everything else. A header that disagrees with its body never
changes what is applied: the body decides."""
from __future__ import annotations

import json

import pytest
from aiokafka import AIOKafkaProducer

from shared import db
from shared.events import new_event
from shared.outbox import OutboxRecord
from tests.conftest import create_topics
from tests.integration.foundation.tally import MIGRATIONS, TallyAdded, TallyProjection, by_hand, take
from tests.integration.foundation.test_projector import totals

pytestmark = pytest.mark.integration


def _added(amount: int | str, **changes) -> bytes:
    """A TallyAdded as `to_bytes` writes it, with the amount and envelope fields changed as given."""
    env = json.loads(new_event(TallyAdded(counter="h", amount=0)).to_bytes())
    env["payload"]["amount"] = amount
    env.update(changes)
    return json.dumps(env, separators=(",", ":")).encode()


def _claims(event_type: str, version: int = 1) -> list[tuple[str, bytes]]:
    return [("event_type", event_type.encode()), ("event_version", str(version).encode())]


async def test_headers_and_peek_choose_the_parser_and_the_body_decides_what_is_applied(infra, fresh_schema, ids):
    topic, out = ids("parse"), ids("parse-out")
    await create_topics(infra["kafka"], [topic, out, topic + ".dlq"], partitions=1)
    relayed = new_event(TallyAdded(counter="h", amount=1))
    records = [
        (relayed.to_bytes(), [(k, v.encode()) for k, v in OutboxRecord.of(topic, relayed).headers.items()]),  # as the relay writes it
        (_added(2), None),                                                    # no headers: a peek
        (_added(1000, event_type="TallyBonus"), _claims("TallyAdded")),       # an unknown type claiming to be TallyAdded: passed over
        (_added(4), _claims("TallyEchoed")),                                  # a TallyAdded claiming to be another type: applied
        (_added("lots"), _claims("TallyAdded")),                              # breaks its schema: dead-lettered
        (_added(8), [("traceparent", b"\xff\xfe00")]),                         # a header that is not UTF-8: applied all the same
        (_added(50, version=2), _claims("TallyAdded", 1)),                    # a newer TallyAdded claiming v1: halts here
        (_added(600), _claims("TallyAdded")),                                 # waits behind it
    ]
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(topic, value, key=b"h", headers=headers)
    finally:
        await producer.stop()
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    try:
        async with by_hand(infra["kafka"], pool, TallyProjection(topic, out)) as (consumer, projector, tp):
            batch = await projector.handle(await take(consumer, len(records)))
            assert batch is not None
            assert [(a.offset, a.payload.amount) for a in batch.events] == [(0, 1), (1, 2), (3, 4), (5, 8)]
            assert batch.events[0].envelope == relayed and batch.events[0].headers["event_type"] == "TallyAdded"
            assert (await totals(infra["db"], fresh_schema))[:2] == (4, 15)
            assert projector.positions[tp] == 6
            halt = projector.readiness()["halted"][f"{topic}[0]"]
            assert (halt["offset"], halt["event_type"], halt["event_version"]) == (6, "TallyAdded", 2)
            dead = await pool.fetch("SELECT value, headers FROM outbox WHERE topic = $1", topic + ".dlq")
            assert [d["value"] for d in dead] == [records[4][0]]
            reason = json.loads(dead[0]["headers"])["dlq_reason"]
            assert reason.startswith("ValidationError") and "amount" in reason
            # the echoes caused by the applied events carry the causation of the envelopes read in one step
            echoes = await pool.fetch("SELECT value FROM outbox WHERE topic = $1 ORDER BY seq", out)
            assert [json.loads(e["value"])["causation_id"] for e in echoes] == [str(a.envelope.event_id) for a in batch.events]
    finally:
        await pool.close()
