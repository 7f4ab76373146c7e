"""Tamper evidence: a hash chain per topic partition, computed by the outbox relay.

Each record the relay publishes carries two headers: `chain_prev`, the hash of the previous
record of the same partition (64 zeros for the first), and `chain_hash` =
sha256(prev || len(key) || key || len(value) || value). The relay is the only writer of its
topics (one relay per schema at a time, under an advisory lock; each topic is owned by one
service), so it knows the previous record of every partition; it keeps the head of each chain in
`outbox_chain_heads` of its schema, updated in the transaction that marks the rows published.

Why per partition and not per key: a partition is what Kafka orders, retains and truncates, so
one chain proves the order of everything in it, including that no record was removed between two
of one key's events by dropping another key's. It costs nothing in the producing transaction (a
per-key chain would need a read-modify-write of a head row per key in every business transaction,
serialising the writers of one key), and a consumer checking it reads partitions in order anyway.
What it gives up: the chain is computed after commit, so a row altered in the outbox table before
it is published is chained as altered (the outbox is the producing service's own table; the
re-deriving audit is the check on content).

A resend (the relay crashed after sending and before committing) repeats records with the same
hashes; `verify` accepts an exact repeat of a record already seen and says how many. A chain with
no secret proves the log unchanged only against the heads kept elsewhere: `verify --schema` checks
the last record of each partition against the relay's heads (which catches a dropped tail), and
the printed heads can be kept by an auditor and compared at the next run (`--expect`).

`python -m shared.chain verify --topic T [--topic ...] [--schema S] [--expect heads.json]`
walks the log and exits 0 when every chain holds, 1 with each problem's topic, partition and
offset otherwise."""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

GENESIS = "0" * 64
PREV = "chain_prev"
HASH = "chain_hash"


def link(prev: str, key: bytes | None, value: bytes | None) -> str:
    """The hash of a record chained after `prev`."""
    key, value = key or b"", value or b""
    h = hashlib.sha256(bytes.fromhex(prev))
    h.update(len(key).to_bytes(4, "big"))
    h.update(key)
    h.update(len(value).to_bytes(8, "big"))
    h.update(value)
    return h.hexdigest()


_LEN4, _LEN8 = struct.Struct(">I").pack, struct.Struct(">Q").pack


class Linker:
    """The relay's side, for one publish batch: the heads as the relay read them (under its lock),
    the links of each record in partition order, and the changed heads, which the relay writes in
    the transaction that marks the rows published."""

    def __init__(self, heads: dict[tuple[str, int], str]) -> None:
        self.heads, self.changed = heads, set()
        #: outbox seq -> (topic, partition, prev, hash) of the records chained in this batch (hex as bytes)
        self.by_seq: dict[int, tuple[str, int, bytes, bytes]] = {}
        #: (topic, partition) -> (hex of the head as header bytes, its raw digest), for the next link
        self._raw: dict[tuple[str, int], tuple[bytes, bytes]] = {}

    def next(self, topic: str, partition: int, key: bytes, value: bytes, seq: int | None = None) -> tuple[bytes, bytes]:
        """The (`chain_prev`, `chain_hash`) header values of the next record of a partition: the
        same hash as `link`, in one sha256 call over the raw previous digest kept from the last link."""
        tp = (topic, partition)
        last = self._raw.get(tp)
        if last is None:
            prev_hex = self.heads.get(tp, GENESIS)
            last = (prev_hex.encode(), bytes.fromhex(prev_hex))
            self.changed.add(tp)
        digest = hashlib.sha256(last[1] + _LEN4(len(key)) + key + _LEN8(len(value)) + value).digest()
        h = digest.hex().encode()
        self._raw[tp] = (h, digest)
        if seq is not None:
            self.by_seq[seq] = (topic, partition, last[0], h)
        return last[0], h

    def changed_heads(self) -> tuple[list[str], list[int], list[str]]:
        """The changed heads as (topics, partitions, hashes), for the relay's one write statement."""
        for tp, (h, _) in self._raw.items():
            self.heads[tp] = h.decode()
        tps = sorted(self.changed)
        return [t for t, _ in tps], [p for _, p in tps], [self.heads[tp] for tp in tps]

    def skipped_links(self, seqs: Iterable[int]) -> list[tuple[str, int, str, str]]:
        return [(t, p, prev.decode(), h.decode()) for t, p, prev, h in (self.by_seq[s] for s in seqs if s in self.by_seq)]


SAVE_HEADS = """INSERT INTO outbox_chain_heads (topic, partition, hash)
   SELECT * FROM unnest({topics}::text[], {partitions}::int[], {hashes}::text[])
   ON CONFLICT (topic, partition) DO UPDATE SET hash = excluded.hash, updated_at = now()"""


async def save_skipped(conn: Any, gaps: list[tuple[str, int, str, str]]) -> None:
    """Links of records chained but then refused by the broker (parked), so `verify` steps over them."""
    if gaps:
        await conn.execute(
            """INSERT INTO outbox_chain_skipped (topic, partition, prev, hash)
               SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING""",
            [g[0] for g in gaps], [g[1] for g in gaps], [g[2] for g in gaps], [g[3] for g in gaps])


# -- verification ------------------------------------------------------------------------------
@dataclass
class Problem:
    topic: str
    partition: int
    offset: int | None
    what: str

    def __str__(self) -> str:
        at = f"offset {self.offset}" if self.offset is not None else "end"
        return f"{self.topic}[{self.partition}] {at}: {self.what}"


@dataclass
class PartitionWalk:
    """The walk over one partition in offset order."""

    topic: str
    partition: int
    first_offset: int
    head: str | None = None  # None: the log starts after offset 0 (retention) and is anchored at its first record
    #: links of records the relay chained but the broker refused (prev -> hash): steps over their gap
    skips: dict[str, str] = field(default_factory=dict)
    records: int = 0
    resends: int = 0
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.first_offset == 0:
            self.head = GENESIS

    def feed(self, offset: int, key: bytes | None, value: bytes | None, headers: Any) -> None:
        self.records += 1
        # a link that is not even text is a tampered record to report, not a reason to stop the audit
        hdr = {k: (v.decode(errors="replace") if v is not None else None) for k, v in (headers or ())}
        prev, h = hdr.get(PREV), hdr.get(HASH)
        if prev is None or h is None:
            self.problems.append(Problem(self.topic, self.partition, offset,
                                         "record without a chain link: inserted by something other than the outbox relay"))
            return
        if link(prev, key, value) != h:
            self.problems.append(Problem(self.topic, self.partition, offset,
                                         "content changed: the record does not hash to its chain_hash"))
        if h in self._seen and prev in self._seen | {GENESIS}:
            self.resends += 1  # the relay resent after a crash: the same record again
            self.head = h
            return
        if self.head is None:
            self.head = prev  # anchored at the earliest retained record
        steps, at = 0, self.head
        while prev != at and at in self.skips and steps < 1000:  # parked after chaining: a known gap
            at, steps = self.skips[at], steps + 1
        if prev == at and steps:
            self.skipped += steps
            self.head = at
        if prev != self.head:
            self.problems.append(Problem(self.topic, self.partition, offset,
                                         f"chain broken: links to {prev[:16]}… but the previous record is {self.head[:16]}…: "
                                         "records removed, inserted or reordered before this offset"))
        self.head = h
        self._seen.add(h)

    def finish(self, expected_head: str | None) -> None:
        at, steps = self.head or GENESIS, 0
        while expected_head is not None and at != expected_head and at in self.skips and steps < 1000:
            at, steps = self.skips[at], steps + 1  # the last records were parked after chaining
        if expected_head is None or expected_head == at:
            self.skipped += steps
            return
        if expected_head in self._seen:
            self.problems.append(Problem(self.topic, self.partition, None,
                                         f"records after the expected head {expected_head[:16]}…: appended by something else"))
        else:
            self.problems.append(Problem(self.topic, self.partition, None,
                                         f"the expected head {expected_head[:16]}… is not in the log: records removed at the end"))


@dataclass
class Verdict:
    walks: list[PartitionWalk]

    @property
    def problems(self) -> list[Problem]:
        return [p for w in self.walks for p in w.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def heads(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for w in self.walks:
            out.setdefault(w.topic, {})[str(w.partition)] = w.head or GENESIS
        return out


async def verify(bootstrap: str, topics: list[str], *, expected: dict[str, dict[int, str]] | None = None,
                 skips: dict[str, dict[int, dict[str, str]]] | None = None, progress: bool = False) -> Verdict:
    """Walk every partition of `topics` from its earliest retained record to its end."""
    from aiokafka import TopicPartition

    from shared import logread

    parts = await logread.partitions_of(bootstrap, topics)
    tps = [TopicPartition(t, p) for t in topics for p in parts.get(t, [])]
    begin, end = await logread.offsets(bootstrap, tps)
    walks = {tp: PartitionWalk(tp.topic, tp.partition, begin[tp], skips=dict((skips or {}).get(tp.topic, {}).get(tp.partition, {})))
             for tp in tps}

    def on_record(tp: Any, r: Any) -> None:
        walks[tp].feed(r.offset, r.key, r.value, r.headers)

    await logread.read(bootstrap, {tp: (begin[tp], end[tp]) for tp in tps}, on_record, progress=progress, desc="verify")
    for tp, w in walks.items():
        w.finish((expected or {}).get(tp.topic, {}).get(tp.partition))
    return Verdict(list(walks.values()))


async def stored_heads(dsn: str, schema: str) -> dict[str, dict[int, str]]:
    return (await stored(dsn, schema))[0]


async def stored(dsn: str, schema: str) -> tuple[dict[str, dict[int, str]], dict[str, dict[int, dict[str, str]]]]:
    """A relay's heads ({topic: {partition: hash}}) and skipped links ({topic: {partition: {prev: hash}}})."""
    import asyncpg

    from shared.db import check_schema

    conn = await asyncpg.connect(dsn, server_settings={"search_path": check_schema(schema)})
    try:
        rows = await conn.fetch("SELECT topic, partition, hash FROM outbox_chain_heads")
        gaps = await conn.fetch("SELECT topic, partition, prev, hash FROM outbox_chain_skipped")
    finally:
        await conn.close()
    heads: dict[str, dict[int, str]] = {}
    for r in rows:
        heads.setdefault(r["topic"], {})[r["partition"]] = r["hash"]
    skips: dict[str, dict[int, dict[str, str]]] = {}
    for r in gaps:
        skips.setdefault(r["topic"], {}).setdefault(r["partition"], {})[r["prev"]] = r["hash"]
    return heads, skips


def main(argv: list[str] | None = None) -> int:
    from shared.settings import CommonSettings
    from shared.topics import ALL_TOPICS

    ap = argparse.ArgumentParser(prog="python -m shared.chain", description="verify the hash chains of the log")
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="walk the log; exit 0 when nothing was changed, removed or inserted")
    v.add_argument("--topic", action="append", help="a topic (repeatable; default: every service topic)")
    v.add_argument("--schema", action="append", default=[], help="a service schema whose relay heads the log must end at")
    v.add_argument("--expect", help="a JSON file of heads printed by an earlier run ({topic: {partition: hash}})")
    v.add_argument("--heads-out", help="write the heads found to this JSON file")
    v.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    settings = CommonSettings()
    topics = args.topic or list(ALL_TOPICS)

    async def run() -> Verdict:
        expected: dict[str, dict[int, str]] = {}
        skips: dict[str, dict[int, dict[str, str]]] = {}
        for s in args.schema:
            heads, gaps = await stored(settings.database_url, s)
            for t, ps in heads.items():
                expected.setdefault(t, {}).update(ps)
            for t, ps in gaps.items():
                for p, links in ps.items():
                    skips.setdefault(t, {}).setdefault(p, {}).update(links)
        if args.expect:
            for t, ps in json.loads(open(args.expect).read()).items():
                for p, h in ps.items():
                    expected.setdefault(t, {}).setdefault(int(p), h)
        return await verify(settings.kafka_bootstrap_servers, topics, expected=expected, skips=skips, progress=not args.quiet)

    verdict = asyncio.run(run())
    for w in verdict.walks:
        print(f"{w.topic}[{w.partition}]: {w.records} records from offset {w.first_offset}, {w.resends} resends, "
              f"{w.skipped} parked by the relay, "
              f"head {(w.head or GENESIS)[:16]}…, {'ok' if not w.problems else f'{len(w.problems)} PROBLEMS'}")
    for p in verdict.problems:
        print(f"PROBLEM {p}")
    if args.heads_out:
        with open(args.heads_out, "w") as f:
            json.dump(verdict.heads(), f, indent=1)
    print("chains intact" if verdict.ok else f"{len(verdict.problems)} problems")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
