"""The bench's tick sender (bench/sender.py) on the real broker: every record lands in the
partition the producer's own partitioner gives its key, in the order added, and `ends()` says
where each partition's records end, also when a tick's batch for a partition fills up."""
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.sender import TickSender
from shared.outbox import make_producer
from tests.conftest import create_topics

pytestmark = pytest.mark.integration


async def test_records_keep_their_key_partition_and_order_and_the_ends_are_right(infra):
    topic = f"bench-sender-{uuid.uuid4().hex[:8]}"
    await create_topics(infra["kafka"], [topic], partitions=4)
    # a small batch size, so that some ticks fill a partition's batch and start another
    producer = make_producer(infra["kafka"], linger_ms=0, max_batch_size=4096)
    await producer.start()
    try:
        sender = TickSender(producer, topic, sorted(await producer.partitions_for(topic)))
        sent: dict[int, list[bytes]] = {}
        for tick in range(20):
            for i in range(25):
                key, value = f"order-{tick}-{i}".encode(), f"{tick}:{i}:".encode() + b"x" * (300 * (i % 7))
                p = sender.partition(key)
                await sender.add(key, value) if i % 2 else await sender.add(key, value, partition=p)
                sent.setdefault(p, []).append(value)
            await sender.flush()
        ends = await sender.ends()
    finally:
        await producer.stop()
    assert sender.batches > 20 * 4  # at least one batch filled within a tick
    assert ends == {p: len(v) for p, v in sent.items()}
    assert len(ends) == 4  # 500 keys spread over every partition

    # the producer's own partitioner would have put each key in the same partition
    check = make_producer(infra["kafka"])
    await check.start()
    try:
        md = await (await check.send(topic, b"probe", key=b"order-3-5"))
    finally:
        await check.stop()
    assert md.partition == sender.partition(b"order-3-5")

    consumer = AIOKafkaConsumer(bootstrap_servers=infra["kafka"], enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[int, list[bytes]] = {}
        while sum(len(v) for v in got.values()) < 500:
            for tp, recs in (await consumer.getmany(timeout_ms=1000)).items():
                got.setdefault(tp.partition, []).extend(r.value for r in recs if r.key != b"order-3-5" or r.value != b"probe")
    finally:
        await consumer.stop()
    assert got == sent
