"""Audit replay: `python -m services.commission.replay [--schema commission]`.

Rebuilds every promoter's balance from the event log and compares it with the live one. A
balance is, by construction, the fold of money events under the balance algebra
(`domain.balance.delta_of`): our CommissionAccrued / CommissionReversed / CommissionSettled (the
live service folds each one in the transaction that records it in its outbox) and payout's
WithdrawalRequested / Rejected / Released / Paid (folded as the projection reads them). The
replay folds the same events, read back from Kafka, with the same function:

1. One REPEATABLE READ snapshot of the live schema: its balances, the positions its projection
   has reached (`projector_offsets`), and the last outbox row S of that snapshot.
2. Wait until the live relay has published every outbox row up to S (they are the money our
   snapshot's balances contain), then note the end of the commission topic.
3. Read the commission topic from offset 0 (or the schema's recorded origin) to that end and fold
   the events recorded in the outbox up to S (events after S belong to later balances), and the
   payout topic up to the live projection's positions. Each event id is folded once.
4. Print every difference (there must be none), every event recorded by the live service but
   missing from the log, and a summary; exit 0 when equal, 1 when not, 2 when the live
   service's outbox cannot be drained (the audit cannot be cut).

Settlements made by the live scheduler are CommissionSettled events in the log: they replay
identically. Nothing is published."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from pydantic_core import from_json

from services.commission.domain.balance import COLUMNS, MONEY_EVENTS, delta_of
from services.commission.handlers.projection import CommissionProjection
from services.commission.settings import CommissionSettings
from shared.kafka_security import kafka_options
from shared import db
from shared.topics import COMMISSION_EVENTS, PAYOUT_EVENTS

PROJECTION = CommissionProjection.name


@dataclass
class Snapshot:
    offsets: dict[TopicPartition, int]
    origin: dict[TopicPartition, int]
    balances: dict[str, tuple[int, ...]]
    last_seq: int
    #: below these offsets the live service's published outbox rows may have been pruned (shared.outbox)
    pruned: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass
class Result:
    differences: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    promoters: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    events: int = 0
    folded: int = 0
    not_folded: int = 0
    seconds: float = 0.0
    undrained: int = 0

    @property
    def equal(self) -> bool:
        return not self.differences and not self.missing and not self.undrained


async def _connect(dsn: str, schema: str) -> asyncpg.Connection:
    db.check_schema(schema)
    return await asyncpg.connect(dsn, server_settings={"search_path": schema})


async def snapshot(dsn: str, schema: str) -> Snapshot:
    conn = await _connect(dsn, schema)
    try:
        async with db.read_only_snapshot(conn):
            offs = await conn.fetch("SELECT topic, partition, next_offset FROM projector_offsets WHERE projection = $1", PROJECTION)
            origin = await conn.fetch("SELECT topic, partition, from_offset FROM replay_origin")
            bal = await conn.fetch(f"SELECT promoter_id, {', '.join(COLUMNS)} FROM balances")
            last = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")
            pruned = await conn.fetch("SELECT topic, partition, pruned_through FROM outbox_published_marks WHERE topic = $1",
                                      COMMISSION_EVENTS)
    finally:
        await conn.close()
    return Snapshot(
        offsets={TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in offs},
        origin={TopicPartition(r["topic"], r["partition"]): r["from_offset"] for r in origin},
        balances={r["promoter_id"]: tuple(r[c] for c in COLUMNS) for r in bal},
        last_seq=last,
        pruned={TopicPartition(r["topic"], r["partition"]): r["pruned_through"] for r in pruned},
    )


async def _undrained(dsn: str, schema: str, last_seq: int) -> int:
    conn = await _connect(dsn, schema)
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox_pending WHERE seq <= $1", last_seq)
    finally:
        await conn.close()


async def _recorded_ids(dsn: str, schema: str, last_seq: int) -> dict[uuid.UUID, str]:
    """Event id -> type of every event the live service recorded for our topic up to the snapshot."""
    conn = await _connect(dsn, schema)
    try:
        rows = await conn.fetch("SELECT event_id, headers->>'event_type' AS t FROM outbox WHERE seq <= $1 AND topic = $2",
                                last_seq, COMMISSION_EVENTS)
    finally:
        await conn.close()
    return {r["event_id"]: r["t"] or "?" for r in rows}


class _Unit:
    """A money payload of 1 fen, to read from `delta_of` which columns an event moves and how."""

    def __init__(self, from_status: str | None) -> None:
        self.from_status = from_status
        self.amount_fen = 1
        self.beneficiary_id = self.promoter_id = ""


_SIGNS: dict[tuple[str, str | None], tuple[int, ...] | None] = {}


def signs(event_type: str, from_status: str | None) -> tuple[int, ...] | None:
    """How one fen of this money event moves the five columns, by `delta_of` itself (cached)."""
    k = (event_type, from_status)
    if k not in _SIGNS:
        d = delta_of(event_type, _Unit(from_status))
        _SIGNS[k] = d[1].as_tuple() if d is not None else None
    return _SIGNS[k]


_ID_PREFIX = b'{"event_id":"'


async def _read(bootstrap: str, ranges: dict[TopicPartition, tuple[int, int]], on_event, progress) -> int:
    """Read [start, end) of each partition; hand each record to `on_event(topic, event_id, event_type, value)`:
    the id and type without parsing the JSON (the envelope's first field and the `event_type`
    header), so that only money events are parsed."""
    ranges = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    if not ranges:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                **kafka_options(),
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    total = sum(e - s for s, e in ranges.values())
    done = 0
    try:
        consumer.assign(list(ranges))
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        open_tps = set(ranges)
        while open_tps:
            got = await consumer.getmany(*open_tps, timeout_ms=500, max_records=20_000)
            for tp, recs in got.items():
                end = ranges[tp][1]
                topic = tp.topic
                for r in recs:
                    if r.offset >= end:
                        break
                    done += 1
                    etype = None
                    for k, v in r.headers or ():
                        if k == "event_type":
                            etype = v.decode()
                            break
                    value = r.value
                    eid = value[13:49].decode() if value.startswith(_ID_PREFIX) and value[49:50] == b'"' else None
                    on_event(topic, eid, etype, value, tp.partition, r.offset)
                if recs and (recs[-1].offset + 1 >= end):
                    open_tps.discard(tp)
                    consumer.pause(tp)
            if progress:
                progress(done, total)
    finally:
        await consumer.stop()
    return done


def _progress(out, every_s: float = 1.0):
    started = time.perf_counter()
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] < every_s and done < total:
            return
        last[0] = now
        rate = done / max(now - started, 1e-9)
        pct = 100.0 * done / total if total else 100.0
        print(f"replay: {done}/{total} events ({pct:5.1f} %), {rate:,.0f} events/s", file=out, flush=True)

    return report


async def replay(settings: CommissionSettings, live_schema: str, *, progress_out=sys.stderr,
                 drain_timeout_s: float = 60.0) -> Result:
    """Fold the log's money events and compare with `live_schema`'s balances."""
    dsn, bootstrap = settings.database_url, settings.kafka_bootstrap_servers
    result = Result()
    snap = await snapshot(dsn, live_schema)
    deadline = time.monotonic() + drain_timeout_s
    while (n := await _undrained(dsn, live_schema, snap.last_seq)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    if n:
        result.undrained = n
        return result
    recorded = await _recorded_ids(dsn, live_schema, snap.last_seq)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options())
    await probe.start()
    try:
        # an unsubscribed consumer knows no topic yet: ask the cluster
        parts = (await probe._client.fetch_all_metadata()).partitions_for_topic(COMMISSION_EVENTS) or set()  # noqa: SLF001
        ends = await probe.end_offsets([TopicPartition(COMMISSION_EVENTS, p) for p in parts]) if parts else {}
    finally:
        await probe.stop()
    ranges = {tp: (snap.origin.get(tp, 0), end) for tp, end in ends.items()}
    ranges.update({tp: (snap.origin.get(tp, 0), off) for tp, off in snap.offsets.items() if tp.topic == PAYOUT_EVENTS})

    acc: dict[str, list[int]] = {}
    seen: set[str] = set()
    recorded_ids = {str(k) for k in recorded}
    counts = {"folded": 0, "not_folded": 0}

    def on_event(topic: str, eid: str | None, etype: str | None, value: bytes, partition: int = 0, offset: int = 0) -> None:
        env = None
        if eid is None or etype is None:
            env = from_json(value)
            eid, etype = str(env["event_id"]), env["event_type"]
        if eid in seen:
            return  # a resend: folded once, as the live projector applies it once
        seen.add(eid)
        # below `pruned_through` the outbox row may be pruned: published before the snapshot, so ours
        if (topic == COMMISSION_EVENTS and eid not in recorded_ids
                and offset >= snap.pruned.get(TopicPartition(topic, partition), 0)):
            counts["not_folded"] += 1  # recorded after the snapshot (or not by this service)
            return
        if etype not in MONEY_EVENTS:
            return
        p = (env or from_json(value))["payload"]
        sg = signs(etype, p.get("from_status"))
        if sg is None:
            return
        pid = p.get("beneficiary_id") or p["promoter_id"]
        a = p["amount_fen"]
        row = acc.get(pid)
        if row is None:
            row = acc[pid] = [0, 0, 0, 0, 0]
        for i, x in enumerate(sg):
            if x:
                row[i] += x * a
        counts["folded"] += 1

    started = time.perf_counter()
    result.events = await _read(bootstrap, ranges, on_event, _progress(progress_out) if progress_out else None)
    result.seconds = time.perf_counter() - started
    result.folded, result.not_folded = counts["folded"], counts["not_folded"]
    for eid, etype in recorded.items():
        if str(eid) not in seen:
            result.missing.append(f"{etype} {eid}: recorded and published by the live service, not in the log")
    replayed = {pid: tuple(row) for pid, row in acc.items()}
    zero = (0,) * len(COLUMNS)
    for pid in sorted(set(snap.balances) | set(replayed)):
        live, again = snap.balances.get(pid, zero), replayed.get(pid, zero)
        if live != again:
            cols = ", ".join(f"{c}: live {a} replay {b}" for c, a, b in zip(COLUMNS, live, again) if a != b)
            result.differences.append(f"{pid}: {cols}")
    result.promoters = len([b for b in replayed.values() if any(b)])
    result.totals = {c: sum(b[i] for b in replayed.values()) for i, c in enumerate(COLUMNS)}
    return result


def report(r: Result, out=sys.stdout) -> None:
    if r.undrained:
        print(f"cannot cut the audit: {r.undrained} events recorded by the live service are not published yet "
              "(is the commission service running?)", file=out)
        return
    if r.differences:
        print(f"DIFFERENCES in balances ({len(r.differences)}):", file=out)
        for d in r.differences:
            print(f"  {d}", file=out)
    else:
        print("balances: replay equals live (0 differences)", file=out)
    if r.missing:
        print(f"MISSING from the log ({len(r.missing)}):", file=out)
        for m in r.missing[:50]:
            print(f"  {m}", file=out)
    rate = r.events / r.seconds if r.seconds > 0 else 0.0
    print(f"promoters: {r.promoters}", file=out)
    print("totals: " + ", ".join(f"{c}={v}" for c, v in r.totals.items()), file=out)
    print(f"events read: {r.events} in {r.seconds:.2f} s ({rate:,.0f} events/s); money events folded: {r.folded}; "
          f"recorded after the snapshot (not folded): {r.not_folded}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.commission.replay", description=__doc__.splitlines()[0])
    ap.add_argument("--schema", help="the live schema (default: COMMISSION_SCHEMA or 'commission')")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    settings = CommissionSettings()
    r = asyncio.run(replay(settings, args.schema or settings.db_schema, progress_out=None if args.quiet else sys.stderr))
    report(r)
    if r.undrained:
        return 2
    return 0 if r.equal else 1


if __name__ == "__main__":
    sys.exit(main())
