"""Re-publish dead-lettered records to the topic they came from, once code that can read them
is deployed:

    python -m shared.redrive --topic orders.order-events.v1 --partition 2 --offset 1234
    python -m shared.redrive --topic orders.order-events.v1 --all [--dry-run]

`--topic` is the source topic (its dead-letter topic is `<topic>.dlq`; the deployment's
`FENXIAO_TOPIC_NAMESPACE` is prefixed to a fenxiao topic named without it). `--partition/--offset` select by
the *source* position, as the `dead_lettered` log line and the `dlq_source_*` headers name it.

Each source record is re-published once per run, even when several projections parked it.
The record goes to the end of its partition (same key, so same partition), with its original
key and value and a `redriven_from` header. Re-driving twice is harmless for a record that
parses: projections apply an event id once (`projector_applied`, see docs/reliability.md for
how long ids are kept)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka_security import kafka_options
from shared import topics
from shared.outbox import make_producer


@dataclass(frozen=True)
class Parked:
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes
    reason: str
    projection: str


def _headers(rec) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (rec.headers or ()) if v is not None}


async def read_parked(bootstrap: str, source_topic: str) -> list[Parked]:
    """Every record on `source_topic`'s dead-letter topic, up to its current end."""
    dlq = topics.dead_letter(source_topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                **kafka_options())
    await consumer.start()
    out: list[Parked] = []
    try:
        parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(dlq) or set()  # noqa: SLF001
        tps = [TopicPartition(dlq, p) for p in sorted(parts)]
        if not tps:
            return out
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > starts[tp]}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, starts[tp])
        while todo:
            got = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, recs in got.items():
                for r in recs:
                    if r.offset >= ends[tp]:
                        break
                    h = _headers(r)
                    out.append(Parked(h.get("dlq_source_topic", source_topic), int(h.get("dlq_source_partition", -1)),
                                      int(h.get("dlq_source_offset", -1)), r.key, r.value or b"",
                                      h.get("dlq_reason", ""), h.get("dlq_projection", "")))
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
                    consumer.pause(tp)
    finally:
        await consumer.stop()
    return out


def select(parked: list[Parked], *, partition: int | None = None, offset: int | None = None) -> list[Parked]:
    """The records to re-drive, one per source position (several projections may have parked it)."""
    chosen: dict[tuple[str, int, int], Parked] = {}
    for p in parked:
        if partition is not None and p.source_partition != partition:
            continue
        if offset is not None and p.source_offset != offset:
            continue
        chosen.setdefault((p.source_topic, p.source_partition, p.source_offset), p)
    return [chosen[k] for k in sorted(chosen)]


async def redrive(bootstrap: str, records: list[Parked]) -> int:
    """Publish each record to its source topic (key kept, so it lands on the same partition)."""
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        futs = []
        for p in records:
            hdrs = [("redriven_from", f"{p.source_topic}[{p.source_partition}]@{p.source_offset}".encode())]
            try:  # give consumers the same type headers a fresh publish carries, when the value says them
                env = json.loads(p.value)
                hdrs += [("event_type", str(env["event_type"]).encode()), ("event_version", str(env["version"]).encode())]
            except (ValueError, KeyError, TypeError):
                pass
            key = None if p.key in (None, b"-") else p.key
            futs.append(await producer.send(p.source_topic, p.value, key=key, headers=hdrs))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return len(records)


def _full_name(topic: str) -> str:
    topic = topic.removesuffix(topics.DEAD_LETTER_SUFFIX)
    by_short = {topics.without_namespace(t): t for t in topics.ALL_TOPICS}
    return by_short.get(topic, topic)


async def main(argv: list[str] | None = None) -> int:
    from shared.settings import CommonSettings

    ap = argparse.ArgumentParser(prog="python -m shared.redrive", description=__doc__.splitlines()[0])
    ap.add_argument("--topic", required=True, help="source topic (or its .dlq)")
    ap.add_argument("--partition", type=int, help="source partition")
    ap.add_argument("--offset", type=int, help="source offset (with --partition)")
    ap.add_argument("--all", action="store_true", help="every parked record of the topic")
    ap.add_argument("--dry-run", action="store_true", help="list what would be re-driven")
    ap.add_argument("--bootstrap", default=None, help="default: $KAFKA_BOOTSTRAP_SERVERS")
    args = ap.parse_args(argv)
    if args.all == (args.partition is not None or args.offset is not None):
        ap.error("give either --all or --partition P [--offset O]")
    if args.offset is not None and args.partition is None:
        ap.error("--offset needs --partition")
    bootstrap = args.bootstrap or CommonSettings().kafka_bootstrap_servers
    topic = _full_name(args.topic)
    chosen = select(await read_parked(bootstrap, topic), partition=args.partition, offset=args.offset)
    for p in chosen:
        print(f"{'would re-drive' if args.dry_run else 're-drive'} {p.source_topic}[{p.source_partition}]@{p.source_offset}"
              f" (parked by {p.projection or '?'}: {p.reason[:200]})")
    if not chosen:
        print(f"nothing parked on {topics.dead_letter(topic)} matches")
        return 1 if not args.all else 0
    if not args.dry_run:
        n = await redrive(bootstrap, chosen)
        print(f"re-drove {n} record(s) to {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
