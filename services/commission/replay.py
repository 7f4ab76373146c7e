"""Audit replay: `python -m services.commission.replay`.

Rebuilds every balance from the event log into a fresh schema and compares it with the live one:

1. In one REPEATABLE READ snapshot of the live schema, read the positions the live projection
   has reached (`projector_offsets`), its balances and its accruals per beneficiary.
2. Create a fresh schema, run the same migrations, and drive the SAME projection
   (`CommissionProjection(emit=False)`: decisions are recomputed, nothing is published again)
   with `shared.projector.run_until` from offset 0 (or the schema's recorded origin) up to exactly
   those positions.
3. Print every difference in balances (there must be none) and a summary; exit 0 when equal,
   1 when not. Accruals re-derived from the orders and bindings are compared per beneficiary too
   (a difference there is the cross-topic ordering hazard made visible, see docs/commission.md).

Settlements made by the live scheduler are events in the log (CommissionSettled): the replay
folds them like every other money event, so they replay identically."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
from aiokafka import TopicPartition

from services.commission.domain.balance import COLUMNS
from services.commission.handlers.projection import CommissionProjection, ProjectorProgress
from services.commission.main import MIGRATIONS
from services.commission.settings import CommissionSettings
from shared import db
from shared.projector import Projector, run_until

PROJECTION = CommissionProjection.name


@dataclass
class Snapshot:
    offsets: dict[TopicPartition, int]
    origin: dict[TopicPartition, int]
    balances: dict[str, tuple[int, ...]]
    accrued: dict[str, tuple[int, int]]  # beneficiary -> (count, sum amount_fen)


@dataclass
class Result:
    differences: list[str] = field(default_factory=list)
    accrual_differences: list[str] = field(default_factory=list)
    promoters: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    events: int = 0
    seconds: float = 0.0
    schema: str = ""

    @property
    def equal(self) -> bool:
        return not self.differences


async def snapshot(dsn: str, schema: str) -> Snapshot:
    """Positions, balances and accruals of `schema` as of one instant."""
    db.check_schema(schema)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            offs = await conn.fetch("SELECT topic, partition, next_offset FROM projector_offsets WHERE projection = $1", PROJECTION)
            origin = await conn.fetch("SELECT topic, partition, from_offset FROM replay_origin")
            bal = await conn.fetch(f"SELECT promoter_id, {', '.join(COLUMNS)} FROM balances")
            acc = await conn.fetch("SELECT beneficiary_id, count(*) AS n, sum(amount_fen) AS s FROM accruals GROUP BY 1")
    finally:
        await conn.close()
    return Snapshot(
        offsets={TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in offs},
        origin={TopicPartition(r["topic"], r["partition"]): r["from_offset"] for r in origin},
        balances={r["promoter_id"]: tuple(r[c] for c in COLUMNS) for r in bal},
        accrued={r["beneficiary_id"]: (r["n"], int(r["s"])) for r in acc},
    )


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
        print(f"replay: {done}/{total} records ({pct:5.1f} %), {rate:,.0f} records/s", file=out, flush=True)

    return report


async def replay(settings: CommissionSettings, live_schema: str, *, into: str | None = None, keep: bool = False,
                 progress_out=sys.stderr) -> Result:
    """Rebuild `live_schema`'s balances into a fresh schema and compare."""
    dsn = settings.database_url
    snap = await snapshot(dsn, live_schema)
    target = into or f"{live_schema}_replay_{uuid.uuid4().hex[:8]}"[:63]
    db.check_schema(target)
    await db.drop_schema(dsn, target)
    await db.migrate(dsn, target, MIGRATIONS)
    pool = await db.create_pool(dsn, target, min_size=1, max_size=2)
    result = Result(schema=target)
    try:
        async with pool.acquire() as conn:
            # start where the live schema started reading (offset 0 unless it recorded an origin)
            await conn.execute(
                """INSERT INTO projector_offsets (projection, topic, partition, next_offset)
                   SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)""",
                PROJECTION, [tp.topic for tp in snap.offsets], [tp.partition for tp in snap.offsets],
                [min(snap.origin.get(tp, 0), snap.offsets[tp]) for tp in snap.offsets])
            await conn.execute(
                "INSERT INTO replay_origin SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])",
                [tp.topic for tp in snap.origin], [tp.partition for tp in snap.origin], list(snap.origin.values()))
        projection = CommissionProjection(emit=False)
        projector = Projector(projection, pool, service="commission", relay=None, synchronous_commit=False)
        projection.progress = ProjectorProgress(lambda: projector, ends=dict(snap.offsets))
        started = time.perf_counter()
        result.events = await run_until(projector, settings.kafka_bootstrap_servers, dict(snap.offsets), max_records=5000,
                                        progress=_progress(progress_out) if progress_out else None)
        result.seconds = time.perf_counter() - started
        replayed = await snapshot(dsn, target)
    finally:
        await pool.close()
        if not keep:
            await db.drop_schema(dsn, target)
    zero = (0,) * len(COLUMNS)
    for pid in sorted(set(snap.balances) | set(replayed.balances)):
        live, again = snap.balances.get(pid, zero), replayed.balances.get(pid, zero)
        if live != again:
            cols = ", ".join(f"{c}: live {a} replay {b}" for c, a, b in zip(COLUMNS, live, again) if a != b)
            result.differences.append(f"{pid}: {cols}")
    for pid in sorted(set(snap.accrued) | set(replayed.accrued)):
        live_a, again_a = snap.accrued.get(pid, (0, 0)), replayed.accrued.get(pid, (0, 0))
        if live_a != again_a:
            result.accrual_differences.append(
                f"{pid}: live {live_a[0]} accruals {live_a[1]} fen, re-derived {again_a[0]} accruals {again_a[1]} fen")
    result.promoters = len([b for b in replayed.balances.values() if any(b)])
    result.totals = {c: sum(b[i] for b in replayed.balances.values()) for i, c in enumerate(COLUMNS)}
    return result


def report(r: Result, out=sys.stdout) -> None:
    if r.differences:
        print(f"DIFFERENCES in balances ({len(r.differences)}):", file=out)
        for d in r.differences:
            print(f"  {d}", file=out)
    else:
        print("balances: replay equals live (0 differences)", file=out)
    if r.accrual_differences:
        print(f"note: accruals re-derived from orders and bindings differ for {len(r.accrual_differences)} "
              "beneficiaries (cross-topic ordering; see docs/commission.md):", file=out)
        for d in r.accrual_differences[:50]:
            print(f"  {d}", file=out)
    rate = r.events / r.seconds if r.seconds > 0 else 0.0
    print(f"promoters: {r.promoters}", file=out)
    print("totals: " + ", ".join(f"{c}={v}" for c, v in r.totals.items()), file=out)
    print(f"events read: {r.events} in {r.seconds:.2f} s ({rate:,.0f} events/s)", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.commission.replay", description=__doc__.splitlines()[0])
    ap.add_argument("--schema", help="the live schema (default: COMMISSION_SCHEMA or 'commission')")
    ap.add_argument("--into", help="the fresh schema to rebuild into (default: <schema>_replay_<random>)")
    ap.add_argument("--keep", action="store_true", help="keep the rebuilt schema for inspection")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    settings = CommissionSettings()
    r = asyncio.run(replay(settings, args.schema or settings.db_schema, into=args.into, keep=args.keep,
                           progress_out=None if args.quiet else sys.stderr))
    report(r)
    return 0 if r.equal else 1


if __name__ == "__main__":
    sys.exit(main())
