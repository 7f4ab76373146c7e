"""Raw aiokafka ceilings on the same broker, measured in the same run as the service
figures (these machines are shared and noisy: only ratios mean anything)."""
from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Idempotent, acks=all producer; returns messages/s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        t0 = time.perf_counter()
        futs = [await producer.send(topic, v, key=k) for k, v in messages]
        await asyncio.gather(*futs)
        return len(messages) / (time.perf_counter() - t0)
    finally:
        await producer.stop()


async def partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions (a producer's `partitions_for` waits for the metadata; a consumer's
    `partitions_for_topic` answers None until it has some)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
    finally:
        await producer.stop()


def _reader(bootstrap: str) -> AIOKafkaConsumer:
    """A group-less consumer with large fetches, as every ceiling here reads."""
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                            max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20)


async def _from_start(consumer: AIOKafkaConsumer, bootstrap: str, topic: str) -> None:
    """Assign every partition of `topic` and go back to offset 0."""
    ends = await consumer.end_offsets(await partitions(bootstrap, topic))
    consumer.assign(list(ends))
    await consumer.seek_to_beginning(*ends)


async def consume(bootstrap: str, topic: str, expect: int) -> float:
    """Read the whole topic from offset 0; returns messages/s."""
    consumer = _reader(bootstrap)
    await consumer.start()
    try:
        await _from_start(consumer, bootstrap, topic)
        n = 0
        t0 = time.perf_counter()
        while n < expect:
            got = await consumer.getmany(timeout_ms=1000, max_records=5000)
            n += sum(len(v) for v in got.values())
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def consume_produce(bootstrap: str, topic: str, out_topic: str, expect: int) -> float:
    """Consume every message and produce one per input (one send() each, idempotent, acks=all):
    the ceiling a projector that emits events is compared with. Returns input messages/s."""
    consumer = _reader(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        await _from_start(consumer, bootstrap, topic)
        n = 0
        t0 = time.perf_counter()
        while n < expect:
            got = await consumer.getmany(timeout_ms=1000, max_records=2000)
            futs = []
            for recs in got.values():
                for r in recs:
                    futs.append(await producer.send(out_topic, r.value, key=r.key))
                n += len(recs)
            await asyncio.gather(*futs)
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets(await partitions(bootstrap, topic))
    finally:
        await consumer.stop()


async def consume_many(bootstrap: str, ends: dict[TopicPartition, int],
                       starts: dict[TopicPartition, int] | None = None) -> tuple[int, float]:
    """Read these partitions from `starts` (the log's start where not given) up to `ends`
    (exclusive), as the audit replay does; returns (records, records/s)."""
    starts = starts or {}
    consumer = _reader(bootstrap)
    await consumer.start()
    try:
        tps = [tp for tp, end in ends.items() if end > starts.get(tp, 0)]
        consumer.assign(tps)
        from_start = [tp for tp in tps if tp not in starts]
        if from_start:
            await consumer.seek_to_beginning(*from_start)
        for tp in tps:
            if tp in starts:
                consumer.seek(tp, starts[tp])
        left = {tp: ends[tp] for tp in tps}
        n = 0
        t0 = time.perf_counter()
        while left:
            got = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, recs in got.items():
                if tp not in left:
                    continue
                keep = [r for r in recs if r.offset < left[tp]]
                n += len(keep)
                if recs and recs[-1].offset + 1 >= left[tp]:
                    del left[tp]
                    consumer.pause(tp)
        return n, n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def ensure_topic(bootstrap: str, topic: str, partitions: int = 4) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def fanout(bootstrap: str, topic: str, out_topic: str, expect: int, per_input: float, size: int) -> tuple[float, float]:
    """The fan-out ceiling: consume every message and produce, for each, as many messages of
    `size` bytes as the service produces per order (`per_input` on average, e.g. 3.3 accruals),
    keyed like the input, in one record batch per partition and poll (as the outbox relay sends).
    Returns (input messages/s, output messages/s)."""
    consumer = _reader(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        await _from_start(consumer, bootstrap, topic)
        parts = sorted(await producer.partitions_for(out_topic))
        n = out = 0
        owed = 0.0
        t0 = time.perf_counter()
        while n < expect:
            got = await consumer.getmany(timeout_ms=1000, max_records=2000)
            batches: dict[int, list] = {}
            for recs in got.values():
                for r in recs:
                    owed += per_input
                    k = int(owed)
                    owed -= k
                    value = (r.value * (size // max(len(r.value), 1) + 1))[:size]
                    chain = batches.setdefault(parts[r.partition % len(parts)], [])
                    for _ in range(k):
                        if not chain or chain[-1].append(key=r.key, value=value, timestamp=None, headers=[]) is None:
                            b = producer.create_batch()
                            b.append(key=r.key, value=value, timestamp=None, headers=[])
                            chain.append(b)
                        out += 1
                n += len(recs)
            futs = []
            for p, chain in batches.items():
                for b in chain:
                    b.close()
                    futs.append(await producer.send_batch(b, out_topic, partition=p))
            await asyncio.gather(*futs)
        secs = time.perf_counter() - t0
        return n / secs, out / secs
    finally:
        await consumer.stop()
        await producer.stop()
