"""The event log is the truth: topics keep every event, a stored position below the log start
is refused, readers are tolerant, a newer version halts its partition instead of being
skipped, dead letters can be re-driven, position loading survives a database error."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.admin.records_to_delete import RecordsToDelete

from shared import db
from shared.events import new_event
from shared.projector import PARTITION_HALTED, LogHoleError, check_positions
from shared.telemetry import CONSUMER_LAG
from shared.topics import LogRetentionError, TopicSettings, ensure_topics
from tests.conftest import create_topics, eventually
from tests.integration.foundation.tally import MIGRATIONS, TallyAdded, TallyProjection, by_hand, take
from tests.integration.foundation.test_projector import ROOT, totals

pytestmark = pytest.mark.integration


async def _configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, None)])
        return {e[0]: e[1] for e in resp.resources[0][4]}
    finally:
        await admin.close()


async def _plain_topic(bootstrap: str, topic: str, partitions: int = 1, **configs: str) -> None:
    """A topic as a broker's auto-creation or an old deployment would leave it (finite retention)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"retention.ms": "604800000", **configs})])
    finally:
        await admin.close()


async def _send(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"k", headers=None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_topics_are_created_with_unlimited_retention_and_the_configured_min_isr(infra, ids):
    read = ids("ledger")
    await ensure_topics(infra["kafka"], [read], settings=TopicSettings(FENXIAO_TOPIC_MIN_INSYNC_REPLICAS=1))
    cfg = await _configs(infra["kafka"], read)
    assert (cfg["retention.ms"], cfg["retention.bytes"], cfg["min.insync.replicas"]) == ("-1", "-1", "1")


async def test_a_read_topic_with_finite_retention_is_refused_when_topics_are_not_ours(infra, ids):
    topic = ids("finite")
    await _plain_topic(infra["kafka"], topic)
    with pytest.raises(LogRetentionError, match=rf"{topic} does not keep every event \(retention.ms=604800000\)"):
        await ensure_topics(infra["kafka"], [topic], settings=TopicSettings(FENXIAO_CREATE_TOPICS=False))
    with pytest.raises(LogRetentionError, match="does not exist"):
        await ensure_topics(infra["kafka"], [ids("absent")], settings=TopicSettings(FENXIAO_CREATE_TOPICS=False))


async def test_where_the_service_owns_topics_a_finite_one_is_made_unlimited(infra, ids):
    topic = ids("autocreated")
    await _plain_topic(infra["kafka"], topic, **{"min.insync.replicas": "1"})
    await ensure_topics(infra["kafka"], [topic])
    cfg = await _configs(infra["kafka"], topic)
    assert (cfg["retention.ms"], cfg["retention.bytes"], cfg["min.insync.replicas"]) == ("-1", "-1", "1")


async def _truncate(bootstrap: str, topic: str, before: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before)})
    finally:
        await admin.close()


async def test_a_stored_position_below_the_log_start_refuses_the_start_and_halts_the_partition(infra, fresh_schema, ids):
    topic, out = ids("holed"), ids("holed-out")
    await create_topics(infra["kafka"], [topic, out], partitions=1)
    await _send(infra["kafka"], topic, [new_event(TallyAdded(counter="k", amount=i)).to_bytes() for i in range(5)])
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    projection = TallyProjection(topic, out)
    try:
        await check_positions(pool, [projection], infra["kafka"])  # a fresh projection on a whole log: fine
        await _truncate(infra["kafka"], topic, 3)  # events 0..2 are gone
        with pytest.raises(LogHoleError, match=rf"tally: {topic}\[0\] position 0 < log start 3"):
            await check_positions(pool, [projection], infra["kafka"])
        # at run time (a rebalance) the partition is halted, not seeked back and forth
        async with by_hand(infra["kafka"], pool, projection) as (consumer, projector, tp):
            state = projector.readiness()
            assert state["ready"] is False
            assert "below the log start 3" in state["halted"][f"{topic}[0]"]["reason"]
            assert await consumer.getmany(timeout_ms=1000) == {}  # paused: nothing is read past the hole
            assert (await totals(infra["db"], fresh_schema))[0] == 0
    finally:
        await pool.close()


def _envelope(amount: int, **changes) -> bytes:
    env = new_event(TallyAdded(counter="v", amount=amount)).model_dump(mode="json")
    for k, v in changes.items():
        if k == "payload_extra":
            env["payload"].update(v)
        else:
            env[k] = v
    return json.dumps(env).encode()


async def test_a_newer_version_halts_its_partition_and_unknown_fields_and_types_pass(infra, fresh_schema, ids):
    topic, out = ids("versions"), ids("versions-out")
    await create_topics(infra["kafka"], [topic, out, topic + ".dlq"], partitions=1)
    await _send(infra["kafka"], topic, [
        _envelope(1, payload_extra={"coupon": "x"}, schema_hint="added later"),  # unknown fields: applied
        _envelope(0, event_type="SomethingNew"),                                 # a type this projection does not need
        _envelope(2),
        _envelope(40, version=2),                                                # a newer TallyAdded: halt here
        _envelope(300),                                                          # must wait behind it
    ])
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    try:
        async with by_hand(infra["kafka"], pool, TallyProjection(topic, out)) as (consumer, projector, tp):
            records = await take(consumer, 5)
            await projector.handle(records)
            assert (await totals(infra["db"], fresh_schema))[:2] == (2, 3)  # amounts 1 and 2; not 40, not 300
            assert projector.positions[tp] == 3  # stopped at the newer event, not past it
            state = projector.readiness()
            assert state["ready"] is False
            halt = state["halted"][f"{topic}[0]"]
            assert (halt["offset"], halt["event_type"], halt["event_version"]) == (3, "TallyAdded", 2)
            assert PARTITION_HALTED.labels("tally", "tally", topic, "0", "TallyAdded", "2")._value.get() == 1
            await projector.handle(records)  # the same records again (a redelivery): nothing moves
            assert (await totals(infra["db"], fresh_schema))[:2] == (2, 3)
            assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic + ".dlq") == 0  # nothing dead-lettered
            # the lag covers the halted partition too
            await projector.refresh_lag()
            assert CONSUMER_LAG.labels("tally", "tally", topic, "0")._value.get() == 2
            # a restart with code that reads it (here: the same code, re-assigned) picks up exactly there
            projector.revoke([tp])
            assert projector.readiness()["ready"] is True
    finally:
        await pool.close()


async def test_position_loading_is_retried_and_readiness_waits_for_it(infra, fresh_schema, ids):
    topic, out = ids("retry"), ids("retry-out")
    await create_topics(infra["kafka"], [topic, out], partitions=1)
    await _send(infra["kafka"], topic, [new_event(TallyAdded(counter="r", amount=7)).to_bytes()])
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)
    try:
        async with by_hand(infra["kafka"], pool, TallyProjection(topic, out), assign=False) as (consumer, projector, tp):
            await pool.execute("ALTER TABLE projector_offsets RENAME TO projector_offsets_away")  # a real database error
            await projector.assign([tp])  # gives up inline after a few tries, keeps retrying in the background
            state = projector.readiness()
            assert state["ready"] is False and state["waiting_for_position"] == [f"{topic}[0]"]
            assert await consumer.getmany(timeout_ms=500) == {}  # still paused: nothing read from an unknown position
            await pool.execute("ALTER TABLE projector_offsets_away RENAME TO projector_offsets")
            await eventually(lambda: _ready(projector), timeout=30)
            got = await consumer.getmany(timeout_ms=5000)
            await projector.handle([r for rs in got.values() for r in rs])
            assert (await totals(infra["db"], fresh_schema))[:2] == (1, 7)
    finally:
        await pool.close()


async def _ready(projector) -> bool:
    return projector.readiness()["ready"]


async def test_redrive_republishes_selected_dead_letters_once_and_they_are_applied(infra, fresh_schema, ids):
    topic, out = ids("redrive"), ids("redrive-out")
    dlq = topic + ".dlq"
    await create_topics(infra["kafka"], [topic, out, dlq], partitions=1)
    # What an older deployment parked: two valid events (it refused a newer version or an unknown
    # field) and one unparseable record; each parked by two projections.
    first, second = new_event(TallyAdded(counter="d", amount=10)), new_event(TallyAdded(counter="d", amount=32))
    parked = [(first.to_bytes(), 4), (second.to_bytes(), 9), (b"\x00garbage", 11)]
    for value, off in parked:
        for projection in ("tally", "other"):
            await _send(infra["kafka"], dlq, [value], key=b"d", headers=[
                ("dlq_source_topic", topic.encode()), ("dlq_source_partition", b"0"),
                ("dlq_source_offset", str(off).encode()), ("dlq_reason", b"UnknownEventError: old code"),
                ("dlq_projection", projection.encode())])

    def redrive(*args):
        return subprocess.run([sys.executable, "-m", "shared.redrive", "--topic", topic, *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    r = redrive("--partition", "0", "--offset", "4")
    assert r.returncode == 0, r.stderr
    assert "re-drove 1 record(s)" in r.stdout
    await db.migrate(infra["db"], fresh_schema, MIGRATIONS)
    pool = await db.create_pool(infra["db"], fresh_schema)

    async def drain(consumer, projector, expect_records: int):
        seen = 0
        while seen < expect_records:
            got = await consumer.getmany(timeout_ms=3000)
            recs = [r for rs in got.values() for r in rs]
            assert recs, f"expected {expect_records} records, got {seen}"
            seen += len(recs)
            await projector.handle(recs)

    try:
        async with by_hand(infra["kafka"], pool, TallyProjection(topic, out)) as (consumer, projector, _):
            await drain(consumer, projector, 1)
            assert (await totals(infra["db"], fresh_schema))[:2] == (1, 10)
            r = redrive("--all")  # the first one again (deduped by its event id), the second, and the garbage
            assert r.returncode == 0, r.stderr
            assert "re-drove 3 record(s)" in r.stdout
            await drain(consumer, projector, 3)
            assert (await totals(infra["db"], fresh_schema))[:2] == (2, 42)
            # the unparseable one was parked again (by this projection), the valid ones were not
            dead = await pool.fetch("SELECT value FROM outbox WHERE topic = $1", dlq)
            assert [d["value"] for d in dead] == [b"\x00garbage"]
    finally:
        await pool.close()


async def test_a_service_reports_a_halted_partition_on_readyz_and_refuses_a_finite_topic(infra, fresh_schema, ids, monkeypatch):
    """Through the service runtime: /readyz is 503 naming the event that halted a partition; with
    topics left to the platform, a read topic with finite retention stops the start."""
    from tests.conftest import running_app
    from tests.integration.foundation.tally import make_app

    topic, out = ids("svc-versions"), ids("svc-versions-out")
    await create_topics(infra["kafka"], [topic, out], partitions=1)
    await _send(infra["kafka"], topic, [_envelope(1), _envelope(2, version=9), _envelope(3)])
    monkeypatch.setenv("TALLY_TOPIC", topic)
    monkeypatch.setenv("TALLY_OUT_TOPIC", out)
    monkeypatch.setenv("TALLY_SCHEMA", fresh_schema)
    async with running_app(make_app()) as client:
        async def halted():
            r = await client.get("/readyz")
            return r if r.status_code == 503 and "halted" in r.json().get("not_ready", {}).get("tally", {}) else None

        r = await eventually(halted, timeout=60)
        halt = r.json()["not_ready"]["tally"]["halted"][f"{topic}[0]"]
        assert (halt["event_type"], halt["event_version"], halt["offset"]) == ("TallyAdded", 9, 1)
        assert "newer than this code" in halt["reason"]
        assert (await totals(infra["db"], fresh_schema))[:2] == (1, 1)
        metrics = (await client.get("/metrics")).text
        assert f'fenxiao_partition_halted{{event_type="TallyAdded",event_version="9"' in metrics

    finite = ids("svc-finite")
    await _plain_topic(infra["kafka"], finite)
    monkeypatch.setenv("TALLY_TOPIC", finite)
    monkeypatch.setenv("FENXIAO_CREATE_TOPICS", "false")
    with pytest.raises(LogRetentionError, match=f"{finite} does not keep every event"):
        async with running_app(make_app()):
            pass
