"""Reading ranges of the Kafka log for the audit and verification commands (raw records, in
offset order per partition), with an optional progress bar (tqdm, on stderr)."""
from __future__ import annotations

import sys
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka_security import kafka_options

Ranges = dict[TopicPartition, tuple[int, int]]
OnRecord = Callable[[TopicPartition, Any], None]


async def partitions_of(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """The partitions of each topic as the cluster has them (an unsubscribed consumer knows none)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    await probe.start()
    try:
        meta = await probe._client.fetch_all_metadata()  # noqa: SLF001 - the only metadata call aiokafka has
        return {t: sorted(meta.partitions_for_topic(t) or ()) for t in topics}
    finally:
        await probe.stop()


async def offsets(bootstrap: str, tps: list[TopicPartition]) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(beginning, end) offsets of each partition."""
    if not tps:
        return {}, {}
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    await probe.start()
    try:
        return await probe.beginning_offsets(tps), await probe.end_offsets(tps)
    finally:
        await probe.stop()


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr (None when disabled)."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ev", unit_scale=True, file=sys.stderr, mininterval=0.5, leave=True)


async def read(bootstrap: str, ranges: Ranges, on_record: OnRecord, *, progress: bool = False, desc: str = "read") -> int:
    """Hand every record of [start, end) of each partition to `on_record(tp, record)`, partition by
    partition in offset order (interleaving between partitions is arbitrary). Returns the count."""
    ranges = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    if not ranges:
        return 0
    total = sum(e - s for s, e in ranges.values())
    bar = progress_bar(total, desc, progress)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                **kafka_options(),
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    done = 0
    try:
        consumer.assign(list(ranges))
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        open_tps = set(ranges)
        while open_tps:
            got = await consumer.getmany(*open_tps, timeout_ms=500, max_records=10_000)
            n = 0
            for tp, recs in got.items():
                end = ranges[tp][1]
                for r in recs:
                    if r.offset >= end:
                        break
                    n += 1
                    on_record(tp, r)
                if recs and recs[-1].offset + 1 >= end:
                    open_tps.discard(tp)
                    consumer.pause(tp)
            done += n
            if bar is not None:
                bar.update(n)
    finally:
        await consumer.stop()
        if bar is not None:
            bar.close()
    return done


def header(record: Any, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return v.decode() if v is not None else None
    return None
