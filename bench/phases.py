"""The bench's phases. Imported by bench.run only after FENXIAO_TOPIC_NAMESPACE is set (shared.topics
reads it once, at import)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import ceiling, gcpause, workload
from bench.cpu import CpuMeter, children_of, listener_of, parent_of
from bench.loadgen import RawHttp, open_loop, request_bytes, summary_ms
from bench.memory import RssSampler
from bench.sender import TickSender
from shared.identity import HEADER, sign_identity
from shared.outbox import make_producer
from shared.topics import COMMISSION_EVENTS, NAMESPACE, ORDER_EVENTS, PAYOUT_EVENTS, REFERRAL_EVENTS
from simulation.cluster import ROOT, ServiceProcess
from simulation.http import request_once_more
from simulation.cluster import free_port


class ProfiledService(ServiceProcess):
    """The same service process; with `profile_prefix` set it runs under cProfile through
    bench.profiled (one profile per bench phase, SIGUSR1 between phases). Stopped with SIGINT
    then: uvicorn re-raises the signal it shut down on, and only KeyboardInterrupt (not
    SIGTERM's default action) lets the profile be written on the way out."""

    profile_prefix: str | None = None
    segments: list[str]
    #: the service module when the name is not it (several processes of one service)
    module: str | None = None

    def start(self) -> None:
        self.segments = []
        if self.module is not None and self.profile_prefix is None:
            name, self.name = self.name, self.module
            try:
                return super().start()
            finally:
                self.name = name
        if self.profile_prefix is None:
            return super().start()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.profiled", self.profile_prefix, f"services.{self.module or self.name}.main"], cwd=ROOT,
            env={**os.environ, **self.env, "PORT": str(self.port), "HOST": "127.0.0.1"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def end_segment(self, name: str) -> None:
        """Write the profile of what the process did since the last segment, as `name`."""
        if self.profile_prefix is not None and self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            self.segments.append(name)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60, last_segment: str = "shutdown") -> None:
        if self.profile_prefix is not None and self.proc is not None and self.proc.poll() is None:
            self.segments.append(last_segment)
            sig = signal.SIGINT
        super().stop(sig, timeout)

    def profiles(self) -> list[tuple[str, Path]]:
        if self.profile_prefix is None:
            return []
        return [(name, Path(f"{self.profile_prefix}-{i}.prof")) for i, name in enumerate(self.segments)
                if Path(f"{self.profile_prefix}-{i}.prof").exists()]


@dataclass
class Ctx:
    run: str
    bootstrap: str
    dsn: str
    secret: str
    log_dir: Path
    log: Callable[[str], None]
    sampler: RssSampler
    service_env: dict[str, str] = field(default_factory=dict)
    #: profile the service processes and the in-process replay into this directory
    profile_dir: Path | None = None
    schema: str = ""
    pop: workload.Population | None = None
    commission: ServiceProcess | None = None
    producer: AIOKafkaProducer | None = None
    #: every order paid so far (the oracle's input)
    paid: list[workload.Order] = field(default_factory=list)
    order_ends: dict[int, int] = field(default_factory=dict)
    extra_schemas: list[str] = field(default_factory=list)
    extra_topics: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    services: dict[str, ProfiledService] = field(default_factory=dict)
    current: str = "startup"
    #: CPU per phase and process group (bench/cpu.py), when the run meters it
    cpu: CpuMeter | None = None

    def phase(self, name: str) -> None:
        """A new bench phase: memory peaks and profiles are kept per phase."""
        for svc in self.services.values():
            svc.end_segment(self.current)
        self.current = name
        self.sampler.set_phase(name)
        if self.cpu is not None:
            self.cpu.set_phase(name)

    def service(self, name: str, env: dict[str, str], module: str | None = None) -> ProfiledService:
        svc = ProfiledService(name, free_port(), env, self.log_dir / f"{name}.log")
        svc.module = module
        if self.profile_dir is not None:
            svc.profile_prefix = str(self.profile_dir / name)
        self.services[name] = svc
        self.sampler.watch(name, svc)
        return svc

    def stop(self, name: str) -> None:
        svc = self.services.get(name)
        if svc is not None:
            self.sampler.sample()
            if self.cpu is not None:
                self.cpu.sample()  # its last CPU, before it is gone
            svc.stop(last_segment=self.current)

    @property
    def admin_header(self) -> str:
        """The commission operator the bench plays (publishes the plan, reads balances)."""
        return sign_identity(self.secret, f"bench-admin-{self.run}", ("plan_admin",), audience="commission", ttl_s=7200)

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})


async def cpu_groups(ctx: Ctx) -> Callable[[], dict[str, list[int]]]:
    """The process groups the CPU meter reads (bench/cpu.py): the services (and their relay
    processes), PostgreSQL's postmaster and all it started, the Kafka broker, the bench."""
    from simulation.cluster import relay_processes

    conn = await asyncpg.connect(ctx.dsn)
    try:
        postmaster = parent_of(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    kafka = listener_of(int(ctx.bootstrap.split(",")[0].rsplit(":", 1)[1]))

    def groups() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"bench": [os.getpid()]}
        if postmaster:
            out["postgres"] = [postmaster, *children_of(postmaster)]
        if kafka:
            out["kafka"] = [kafka]
        relays = relay_processes()
        for name, svc in ctx.services.items():
            proc = svc.proc
            if proc is not None and proc.poll() is None:
                out[name] = [proc.pid]
                if relays.get(proc.pid):
                    out[f"{name}.relay"] = relays[proc.pid]
        return out
    return groups


def _raise_ends(into: dict[int, int], ends: dict[int, int]) -> None:
    """Per partition, the later of two end offsets (the offset after the last record sent)."""
    for part, end in ends.items():
        into[part] = max(into.get(part, 0), end)


def _merge_ends(into: dict[int, int], metas) -> None:
    ends: dict[int, int] = {}
    for m in metas:
        ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
    _raise_ends(into, ends)


async def publish(producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes]], ends: dict[int, int]) -> None:
    futs = [await producer.send(topic, value, key=key) for key, value in records]
    _merge_ends(ends, await asyncio.gather(*futs))


async def positions(conn: asyncpg.Connection, topic: str) -> dict[int, int]:
    """The commission projections' stored positions in `topic` (the referral topic is read by the
    reference projection, orders and payout by the order workers)."""
    rows = await conn.fetch("SELECT partition, next_offset FROM projector_offsets "
                            "WHERE projection IN ('commission', 'commission_reference') AND topic = $1", topic)
    return {r["partition"]: r["next_offset"] for r in rows}


def reached(pos: dict[int, int], ends: dict[int, int]) -> bool:
    if not ends:
        raise RuntimeError("no end offsets to wait for")
    return all(pos.get(p, 0) >= e for p, e in ends.items())


async def wait_for(check, what: str, timeout: float, interval: float = 0.05, on_timeout: Callable[[], str] | None = None):
    deadline = time.perf_counter() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"\n{on_timeout()}" if on_timeout else ""))
        await asyncio.sleep(interval)


# -- start-up, plan, population ---------------------------------------------------------------
async def start_commission(ctx: Ctx) -> None:
    ctx.schema = f"commission_bench{ctx.run}"
    env = {"COMMISSION_SCHEMA": ctx.schema, "LOG_LEVEL": "WARNING", "FENXIAO_TOPIC_NAMESPACE": NAMESPACE,
           **ctx.service_env}
    svc = ctx.service("commission", env)
    ctx.commission = svc
    t0 = time.perf_counter()
    svc.start()
    await svc.wait_ready()
    ctx.log(f"commission up on {svc.url} in {time.perf_counter() - t0:.1f}s (schema {ctx.schema}, topics '{NAMESPACE}.*')")
    ctx.producer = make_producer(ctx.bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await ctx.producer.start()


async def publish_plan(ctx: Ctx) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await request_once_more(http, "PUT", ctx.commission.url + "/v1/admin/plan", json=workload.PLAN,
                                    headers={HEADER: ctx.admin_header})
        if r.status_code != 201:
            raise RuntimeError(f"PUT /v1/admin/plan: {r.status_code} {r.text[:300]}")
    ctx.log(f"plan version {r.json()['plan_version']} published")


async def load_population(ctx: Ctx, users: int, probes: int) -> None:
    """Promoters and bindings straight onto the referral topic (as the referral service would
    publish them), then wait until the commission projection has read them all."""
    pop = workload.population(ctx.run, users, probes=probes)
    ctx.pop = pop
    envs = workload.referral_events(pop)
    records = [(e.key.encode(), e.to_bytes()) for e in envs]
    ends: dict[int, int] = {}
    t0 = time.perf_counter()
    await publish(ctx.producer, REFERRAL_EVENTS, records, ends)
    conn = await ctx.db()
    try:
        async def done():
            return reached(await positions(conn, REFERRAL_EVENTS), ends)
        await wait_for(done, "the referral events to be applied", 300, on_timeout=ctx.commission.tail)
    finally:
        await conn.close()
    secs = time.perf_counter() - t0
    ctx.results["population"] = {"users": pop.users, "promoters": len(pop.promoters), "customers": len(pop.customers),
                                 "bindings": pop.bindings() + len(pop.probes), "probes": len(pop.probes),
                                 "referral_events": len(envs), "applied_in_s": round(secs, 2),
                                 "referral_events_per_s": round(len(envs) / secs, 1)}
    ctx.log(f"population: {len(pop.promoters)} promoters ({len(pop.upline)} bound to an upline), {len(pop.customers)} "
            f"customers ({len(pop.referrer)} bound), {len(pop.probes)} probe pairs: {len(envs)} referral events applied "
            f"in {secs:.1f}s")


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return {tp.partition: o for tp, o in (await ceiling.end_offsets(bootstrap, topic)).items()}


# -- balances against the oracle ---------------------------------------------------------------
async def frozen_total(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(sum(frozen_fen), 0) FROM balances"))


async def compare_balances(ctx: Ctx, expected: dict[str, int]) -> dict[str, Any]:
    conn = await ctx.db()
    try:
        rows = await conn.fetch("SELECT promoter_id, frozen_fen, available_fen, reserved_fen, withdrawn_fen, reversed_fen "
                                "FROM balances")
    finally:
        await conn.close()
    got = {r["promoter_id"]: r["frozen_fen"] for r in rows}
    others = sum(1 for r in rows if r["available_fen"] or r["reserved_fen"] or r["withdrawn_fen"] or r["reversed_fen"])
    wrong = [p for p in set(got) | set(expected) if got.get(p, 0) != expected.get(p, 0)]
    return {"promoters_expected": len(expected), "promoters_with_balance": len(got), "mismatched": len(wrong),
            "mismatched_sample": sorted(wrong)[:5], "unexpected_nonfrozen_rows": others,
            "expected_total_fen": sum(expected.values()), "total_fen": sum(got.values()),
            "match": not wrong and not others}


# -- accrual rate ------------------------------------------------------------------------------
async def accrual(ctx: Ctx, count: int, timeout: float) -> None:
    """Publish `count` OrderPaid as fast as the producer goes; time until the projection's stored
    positions reach the topic's end (decided) and until the balances add up to the oracle's total
    (every CommissionAccrued read back and folded)."""
    pop = ctx.pop
    orders = workload.orders(pop, count, seed=11)
    tb = time.perf_counter()
    records = []
    for o in orders:
        e = workload.paid_event(o)
        records.append((e.key.encode(), e.to_bytes()))
    build_s = time.perf_counter() - tb
    ctx.paid += orders
    expected, n_accruals = workload.expected(pop, ctx.paid)
    total = sum(expected.values())
    ctx.results["_orders_bytes"] = records  # reused by the ceilings (the same messages)
    conn = await ctx.db()
    try:
        before = await frozen_total(conn)
        if before:
            raise RuntimeError(f"balances not empty before the accrual phase: {before}")
        gcpause.refreeze()  # the 100,000 orders just built: out of the timed collections' sight
        t0 = time.perf_counter()
        await publish(ctx.producer, ORDER_EVENTS, records, ctx.order_ends)
        t_pub = time.perf_counter()
        t_decided = None
        last_total = 0

        async def done():
            nonlocal t_decided, last_total
            if t_decided is None and reached(await positions(conn, ORDER_EVENTS), ctx.order_ends):
                t_decided = time.perf_counter()
            last_total = await frozen_total(conn)
            if last_total > total:
                raise RuntimeError(f"balances add up to {last_total} fen, more than the {total} expected (double counting?)")
            return t_decided is not None and last_total == total

        await wait_for(done, f"balances to reach {total} fen", timeout, interval=0.05,
                       on_timeout=lambda: f"frozen total {last_total} of {total}; decided={t_decided is not None}\n"
                                          + ctx.commission.tail())
        t_done = time.perf_counter()
        deferred = await conn.fetchval("SELECT count(*) FROM deferred_order_events")
        late = await conn.fetchval("SELECT count(*) FROM late_bindings")
        n_db_accruals = await conn.fetchval("SELECT count(*) FROM accruals")
    finally:
        await conn.close()
    check = await compare_balances(ctx, expected)
    secs = t_done - t0
    ctx.results["accrual"] = {
        "orders": count, "lines": sum(len(o.lines) for o in orders), "accruals_expected": n_accruals,
        "accruals_stored": n_db_accruals, "build_s": round(build_s, 2), "publish_s": round(t_pub - t0, 2),
        "decided_s": round(t_decided - t0, 2), "seconds": round(secs, 2),
        "orders_per_s": round(count / secs, 1), "accruals_per_s": round(n_accruals / secs, 1),
        "decided_orders_per_s": round(count / (t_decided - t0), 1), "still_deferred": deferred, "late_bindings": late,
        "balances": check,
    }
    ctx.log(f"accrual: {count} orders ({n_accruals} accruals) published in {t_pub - t0:.1f}s, decided in "
            f"{t_decided - t0:.1f}s, balances complete in {secs:.1f}s: {count / secs:,.0f} orders/s, "
            f"{n_accruals / secs:,.0f} accruals/s; balances {'MATCH' if check['match'] else 'DIFFER'} "
            f"({check['promoters_with_balance']} promoters, {check['total_fen']} fen)")


# -- ceilings (raw aiokafka on the same broker, the same messages) ------------------------------
async def ceilings(ctx: Ctx) -> None:
    records = ctx.results.pop("_orders_bytes")
    n = len(records)
    out1, out2 = f"{NAMESPACE}.bench.ceiling-produce", f"{NAMESPACE}.bench.ceiling-cp"
    for t in (out1, out2):
        await ceiling.ensure_topic(ctx.bootstrap, t)
        ctx.extra_topics.append(t)
    produce = await ceiling.produce(ctx.bootstrap, out1, records)
    consume = await ceiling.consume(ctx.bootstrap, ORDER_EVENTS, n)
    cp = await ceiling.consume_produce(ctx.bootstrap, ORDER_EVENTS, out2, n)
    # the fan-out ceiling: as many accrual-sized messages per order as the service produced
    acc = ctx.results["accrual"]
    per_order = acc["accruals_expected"] / acc["orders"]
    size = await _accrual_size(ctx)
    out3 = f"{NAMESPACE}.bench.ceiling-fanout"
    await ceiling.ensure_topic(ctx.bootstrap, out3)
    ctx.extra_topics.append(out3)
    fan_in, fan_out = await ceiling.fanout(ctx.bootstrap, ORDER_EVENTS, out3, n, per_order, size)
    ctx.results["ceiling"] = {"messages": n, "produce_per_s": round(produce, 1), "consume_per_s": round(consume, 1),
                              "consume_produce_per_s": round(cp, 1), "fanout_in_per_s": round(fan_in, 1),
                              "fanout_out_per_s": round(fan_out, 1), "fanout_per_input": round(per_order, 3),
                              "fanout_message_bytes": size}
    ctx.log(f"ceilings on {n} OrderPaid: produce {produce:,.0f}/s, consume {consume:,.0f}/s, consume->produce {cp:,.0f}/s, "
            f"fan-out x{per_order:.2f} ({size} B) {fan_in:,.0f} in/s = {fan_out:,.0f} out/s")


async def _accrual_size(ctx: Ctx) -> int:
    """The average size of the CommissionAccrued the service recorded."""
    conn = await ctx.db()
    try:
        return int(await conn.fetchval(
            "SELECT coalesce(avg(length(value)), 600) FROM (SELECT value FROM outbox ORDER BY seq LIMIT 2000) o"))
    finally:
        await conn.close()


# -- replay ------------------------------------------------------------------------------------
async def replay(ctx: Ctx) -> None:
    from services.commission.replay import replay as rebuild
    from services.commission.settings import CommissionSettings

    # what the replay reads: the commission topic to its end, payout's topic to the live positions
    conn = await ctx.db()
    try:
        rows = await conn.fetch("SELECT topic, partition, next_offset FROM projector_offsets WHERE projection = 'commission' "
                                "AND topic = $1", PAYOUT_EVENTS)
    finally:
        await conn.close()
    ends = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}
    ends.update({TopicPartition(COMMISSION_EVENTS, p): o for p, o in (await _end_offsets(ctx.bootstrap, COMMISSION_EVENTS)).items()})
    n_raw, raw_rate = await ceiling.consume_many(ctx.bootstrap, ends)
    settings = CommissionSettings(kafka_bootstrap_servers=ctx.bootstrap, database_url=ctx.dsn)
    prof = None
    if ctx.profile_dir is not None:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        r = await rebuild(settings, ctx.schema, progress_out=None)
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(str(ctx.profile_dir / "replay-in-process.prof"))
    rate = r.events / r.seconds if r.seconds else 0.0
    by_topic: dict[str, int] = {}
    for tp, o in ends.items():
        key = tp.topic.removeprefix(NAMESPACE + ".")
        by_topic[key] = by_topic.get(key, 0) + o
    ctx.results["replay"] = {"events": r.events, "by_topic": by_topic, "seconds": round(r.seconds, 2),
                             "money_events_folded": getattr(r, "folded", None),
                             "events_per_s": round(rate, 1), "raw_consume_events": n_raw,
                             "raw_consume_per_s": round(raw_rate, 1), "equal": r.equal,
                             "differences": len(r.differences)}
    ctx.log(f"replay: {r.events} events in {r.seconds:.1f}s = {rate:,.0f} events/s (raw consume of the same log "
            f"{raw_rate:,.0f}/s); rebuilt balances {'EQUAL' if r.equal else 'DIFFER'}")


# -- latency at a fixed offered load -----------------------------------------------------------
async def latency(ctx: Ctx, rate: float, seconds: float, poll_s: float, timeout: float, *, name: str = "latency",
                  hog_duty: float = 0.0, seed: int = 13, send_tick_s: float = 0.005) -> None:
    """OrderPaid at `rate`/s for `seconds` (open loop, on schedule); a sample of them are probe
    orders: a probe customer bound to a probe promoter nobody else earns through, so that the
    probe promoter's balance moves exactly when that order's commission lands.

    The orders go out as an outbox relay would publish them: every `send_tick_s`, what has
    fallen due since the last tick, one record batch per partition (bench/sender.py; 0: one
    `send()` per order, with the producer's 2 ms linger, as before the eighth session).

    Per probe: `sent` is the order's time in the schedule (with ticks, up to one tick before it
    leaves: the wait counts against the service), else just before its `send()`; `on the log` when this process's consumer of the
    commission topic reads the probe promoter's CommissionAccrued; `committed` when a poll of the
    balances table (one query for every probe in flight, every `poll_s`, on the bench's own
    connection, so the polling costs the service's event loop nothing) first shows the new
    balance; `visible` when a read of that balance through the API, sent right then, answers with
    it. End to end = visible - sent: an upper bound, too late by at most `poll_s` plus one API read."""
    pop = ctx.pop
    n = int(rate * seconds)
    n_probes = min(len(pop.probes), n)
    probe_every = max(1, n // max(n_probes, 1))
    background = workload.orders(pop, n, seed=seed, prefix=name[:3] + ("b" if hog_duty else ""))
    start_wall = datetime.now(timezone.utc) + timedelta(seconds=0.5)
    plan: list[tuple[bool, Any]] = []  # (is probe, prebuilt record | probe index)
    k = 0
    paid = []
    for i in range(n):
        if i % probe_every == 0 and k < n_probes:
            plan.append((True, k))
            paid.append(workload.probe_order(pop, k)[0])
            k += 1
        else:
            o = background[i]
            e = workload.paid_event(o, start_wall + timedelta(seconds=i / rate))
            plan.append((False, (e.key.encode(), e.to_bytes())))
            paid.append(o)
    ctx.paid += paid
    probe_of = {pop.probes[j][0]: j for j in range(n_probes)}
    probe_keys = {p.encode(): j for p, j in probe_of.items()}
    expect = {j: workload.probe_order(pop, j)[2] for j in range(n_probes)}
    t_send: dict[int, float] = {}
    t_accrued: dict[int, float] = {}
    t_committed: dict[int, float] = {}
    t_visible: dict[int, float] = {}
    in_flight: set[int] = set()
    api_reads = [0]

    watcher = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await watcher.start()
    tps = await ceiling.partitions(ctx.bootstrap, COMMISSION_EVENTS)
    watcher.assign(tps)
    await watcher.seek_to_end(*tps)
    for tp in tps:
        await watcher.position(tp)

    async def watch_log() -> None:
        while True:
            got = await watcher.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for recs in got.values():
                for r in recs:
                    j = probe_keys.get(r.key)
                    if j is not None and j not in t_accrued:
                        t_accrued[j] = now

    host, port = "127.0.0.1", ctx.commission.port
    api = RawHttp(host, port, max_conns=8)
    admin = ctx.admin_header

    async def confirm(j: int) -> None:
        req = request_bytes("GET", f"/v1/admin/promoters/{pop.probes[j][0]}/balance", f"{host}:{port}", {HEADER: admin})
        for _ in range(100):
            status, body = await api.request(req)
            api_reads[0] += 1
            if status == 200 and json.loads(body)["frozen_fen"] >= expect[j]:
                t_visible[j] = time.perf_counter()
                return
            await asyncio.sleep(poll_s)

    confirms: list[asyncio.Task] = []
    poll_conn = await ctx.db()

    async def watch_balances() -> None:
        while True:
            if in_flight:
                ids = [pop.probes[j][0] for j in in_flight]
                rows = await poll_conn.fetch("SELECT promoter_id, frozen_fen FROM balances WHERE promoter_id = ANY($1::text[])", ids)
                now = time.perf_counter()
                for r in rows:
                    j = probe_of[r["promoter_id"]]
                    if r["frozen_fen"] >= expect[j] and j in in_flight:
                        in_flight.discard(j)
                        t_committed[j] = now
                        confirms.append(asyncio.create_task(confirm(j)))
            await asyncio.sleep(poll_s)

    # as the orders service's outbox relay publishes (with ticks, each tick's batches go at once)
    producer = make_producer(ctx.bootstrap, **({"linger_ms": 0} if send_tick_s else {}))
    await producer.start()
    sender = None
    if send_tick_s:  # each background order's partition found now, not while sending
        sender = TickSender(producer, ORDER_EVENTS, [tp.partition for tp in await ceiling.partitions(ctx.bootstrap, ORDER_EVENTS)])
        plan = [(True, item) if is_probe else (False, (*item, sender.partition(item[0]))) for is_probe, item in plan]
    hog = None
    if hog_duty:
        # the machine busy with other work: a CPU hog of the bench's own, bounded in duty and time
        hog = subprocess.Popen([sys.executable, "-m", "bench.hog", str(hog_duty), str(seconds + 30)], cwd=ROOT)
    # the bench's own full collections out of the measurement (bench/gcpause.py), and on record
    heap = contextlib.ExitStack()
    pauses = heap.enter_context(gcpause.quiet_heap())
    tasks = [asyncio.create_task(watch_log()), asyncio.create_task(watch_balances())]
    futs = []
    lag = []
    try:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max((start_wall - datetime.now(timezone.utc)).total_seconds(), 0))
        t0 = loop.time()
        perf_of = time.perf_counter() - loop.time()  # loop time -> perf_counter, for `sent`
        cpu0 = time.process_time()  # the bench's own CPU while it sends and observes (not building, not checking)
        if sender is not None:
            i = 0
            while i < n:
                now = loop.time()
                while i < n and t0 + i / rate <= now:
                    due = t0 + i / rate
                    lag.append(now - due)
                    is_probe, item = plan[i]
                    if is_probe:
                        order, _, _ = workload.probe_order(pop, item)
                        e = workload.paid_event(order)
                        t_send[item] = due + perf_of
                        in_flight.add(item)
                        await sender.add(e.key.encode(), e.to_bytes())
                    else:
                        await sender.add(*item)
                    i += 1
                await sender.flush()
                if i < n:
                    await asyncio.sleep(max(t0 + i / rate, now + send_tick_s) - loop.time())
            offered_s = loop.time() - t0
            _raise_ends(ctx.order_ends, await sender.ends())
        else:
            for i, (is_probe, item) in enumerate(plan):
                due = t0 + i / rate
                d = due - loop.time()
                if d > 0.001:
                    await asyncio.sleep(d)
                lag.append(max(loop.time() - due, 0.0))
                if is_probe:
                    order, _, _ = workload.probe_order(pop, item)
                    e = workload.paid_event(order)
                    value, key = e.to_bytes(), e.key.encode()
                    t_send[item] = time.perf_counter()
                    in_flight.add(item)
                    futs.append(await producer.send(ORDER_EVENTS, value, key=key))
                else:
                    key, value = item
                    futs.append(await producer.send(ORDER_EVENTS, value, key=key))
            offered_s = loop.time() - t0
            _merge_ends(ctx.order_ends, await asyncio.gather(*futs))

        async def probes_done():
            return not in_flight
        await wait_for(probes_done, "every probe's balance", timeout, on_timeout=ctx.commission.tail)
        await asyncio.gather(*confirms)
        window_cpu_s = time.process_time() - cpu0

        # the relay publishes a probe's accrual after its balance row commits, so the log can trail
        # the balance: stopping the log watcher now would miss the last probes' arrivals
        async def probes_on_log():
            return all(j in t_accrued for j in t_send)
        await wait_for(probes_on_log, "every probe's accrual on the log", timeout, on_timeout=ctx.commission.tail)
    finally:
        heap.close()
        if hog is not None:
            hog.kill()
            hog.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await watcher.stop()
        await producer.stop()
        await api.close()
        await poll_conn.close()
    end_to_end = [t_visible[j] - t_send[j] for j in t_visible]
    t_first = min(t_send.values(), default=0.0)
    committed = [t_committed[j] - t_send[j] for j in t_committed]
    on_log = [t_accrued[j] - t_send[j] for j in t_accrued if j in t_send]
    # everything the phase published must still come out right
    expected, _ = workload.expected(pop, ctx.paid)
    total = sum(expected.values())
    conn = await ctx.db()
    try:
        async def caught_up():
            return reached(await positions(conn, ORDER_EVENTS), ctx.order_ends) and await frozen_total(conn) == total
        await wait_for(caught_up, "the latency phase's orders to be accrued", timeout, on_timeout=ctx.commission.tail)
    finally:
        await conn.close()
    check = await compare_balances(ctx, expected)
    pop.probe_round += 1  # the next latency phase pays the probes once more
    ctx.results[name] = {
        "started_at": start_wall.isoformat(), "offered_orders_per_s": rate, "cpu_hog_duty": hog_duty, "seconds": seconds, "orders": n, "achieved_orders_per_s": round(n / offered_s, 1),
        "generator_lag_p99_ms": summary_ms(lag)["p99_ms"], "bench_gc": pauses.as_dict(),
        # how the orders went out: ticks of this many ms (0: one send() each), in this many record batches
        "send_tick_ms": send_tick_s * 1000, "record_batches_sent": sender.batches if sender is not None else None,
        # what the bench itself spent while it sent and observed, per order sent (its generator,
        # log watcher, balance polls and API reads, which share the cores with what they measure)
        "bench_cpu_while_sending_us_per_order": round(window_cpu_s / n * 1e6, 1),
        "probes": n_probes, "probes_seen": len(end_to_end), "poll_interval_ms": poll_s * 1000, "api_reads": api_reads[0],
        "end_to_end": summary_ms(end_to_end), "to_committed": summary_ms(committed),
        "to_accrued_on_log": summary_ms(on_log),
        # [seconds after the phase's first send, end to end ms] per probe: shows whether a tail
        # is one stall (a run of neighbouring probes) or spread over the phase
        "timeline": [[round(t_send[j] - t_first, 3), round((t_visible[j] - t_send[j]) * 1000, 1)]
                     for j in sorted(t_visible, key=t_send.get)] if t_send else [],
        "balances": check,
    }
    e2e = ctx.results[name]["end_to_end"]
    ctx.log(f"{name} at {rate:.0f} orders/s for {seconds:.0f}s: {len(end_to_end)}/{n_probes} probes, OrderPaid sent -> "
            f"balance visible via API p50 {e2e['p50_ms']} ms, p99 {e2e['p99_ms']} ms, max {e2e['max_ms']} ms "
            f"(balance row committed p50 {summary_ms(committed)['p50_ms']} ms); balances "
            f"{'MATCH' if check['match'] else 'DIFFER'}; the bench's generator lag p99 {summary_ms(lag)['p99_ms']} ms, "
            f"its longest GC pause {pauses.as_dict()['max_pause_ms']} ms, its CPU while sending "
            f"{ctx.results[name]['bench_cpu_while_sending_us_per_order']:,.0f} µs per order")


# -- API ---------------------------------------------------------------------------------------
async def api_balance(ctx: Ctx, rate: float, seconds: float) -> None:
    pop = ctx.pop
    host, port = "127.0.0.1", ctx.commission.port
    reqs = [request_bytes("GET", "/v1/promoters/me/balance", f"{host}:{port}",
                          {HEADER: sign_identity(ctx.secret, p, audience="commission", ttl_s=7200)}) for p in pop.promoters]
    client = RawHttp(host, port, max_conns=64)
    gcpause.refreeze()
    try:
        res = await open_loop(client, lambda i: reqs[i % len(reqs)], rate=rate, seconds=seconds,
                              check=lambda s, b: None if b'"frozen_fen"' in b else "bad_body")
    finally:
        await client.close()
    ctx.results["api_balance"] = res.as_dict()
    d = res.as_dict()
    ctx.log(f"balance API at {rate:.0f}/s for {seconds:.0f}s: {d['ok']} ok, errors {d['errors']}, p50 {d['p50_ms']} ms, "
            f"p99 {d['p99_ms']} ms, max {d['max_ms']} ms")


async def api_bind(ctx: Ctx, rate: float, seconds: float, promoters: int = 50) -> None:
    """POST /v1/bindings on a referral process of its own (own schema, own topic namespace: it
    must not spend the run replaying the bench's orders)."""
    schema = f"referral_bench{ctx.run}"
    ns = f"{NAMESPACE}r"
    ctx.extra_schemas.append(schema)
    env = {"REFERRAL_SCHEMA": schema, "LOG_LEVEL": "WARNING", "FENXIAO_TOPIC_NAMESPACE": ns, **ctx.service_env}
    svc = ctx.service("referral", env)
    svc.start()
    try:
        await svc.wait_ready()
        host, port = "127.0.0.1", svc.port
        codes = []
        async with httpx.AsyncClient(timeout=30) as http:
            for i in range(promoters):
                user = f"bbp{ctx.run}-{i}"
                r = await http.post(svc.url + "/v1/promoters", json={"nickname": f"推广员{i}"},
                                    headers={HEADER: sign_identity(ctx.secret, user, audience="referral")})
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"POST /v1/promoters: {r.status_code} {r.text[:300]}")
                codes.append(r.json()["code"])
        svc.end_segment("startup")
        n = int(rate * seconds)
        reqs = [request_bytes("POST", "/v1/bindings", f"{host}:{port}",
                              {HEADER: sign_identity(ctx.secret, f"bbc{ctx.run}-{i}", audience="referral", ttl_s=7200)},
                              {"promoter_code": codes[i % len(codes)], "source": "poster"}) for i in range(n)]
        client = RawHttp(host, port, max_conns=64)
        gcpause.refreeze()
        try:
            res = await open_loop(client, lambda i: reqs[i], rate=rate, seconds=seconds,
                                  check=lambda s, b: None if b'"bound"' in b else "not_bound")
        finally:
            await client.close()
    finally:
        ctx.stop("referral")
    ctx.results["api_bind"] = res.as_dict()
    d = res.as_dict()
    ctx.log(f"bind API at {rate:.0f}/s for {seconds:.0f}s: {d['ok']} ok, errors {d['errors']}, p50 {d['p50_ms']} ms, "
            f"p99 {d['p99_ms']} ms, max {d['max_ms']} ms")


# -- clean-up ----------------------------------------------------------------------------------
async def cleanup(ctx: Ctx) -> None:
    """Drop the run's schemas and delete its topics (everything under its namespaces)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.db import drop_schema

    for s in [ctx.schema, *ctx.extra_schemas]:
        if s:
            await drop_schema(ctx.dsn, s)
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.bootstrap)
    await admin.start()
    try:
        gone = [t for t in await admin.list_topics() if t.startswith((f"{NAMESPACE}.", f"{NAMESPACE}r.", f"{NAMESPACE}s"))]
        if gone:
            await admin.delete_topics(gone)
    finally:
        await admin.close()


# -- scale-out: the same load on 1 and on 2 commission processes --------------------------------
async def _readyz_partitions(url: str) -> list[str]:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            r = await http.get(url + "/readyz")
        return [k for k in r.json().get("positions", {}).get("commission", {}) if ".orders." in k]
    except (httpx.HTTPError, ValueError):
        return []


async def scale(ctx: Ctx, n_orders: int, timeout: float, counts: tuple[int, ...] = (1, 2)) -> None:
    """The same population and `n_orders` OrderPaid, on topics of their own, applied by one
    commission process and then by `n` processes in one consumer group (each setup on a fresh
    schema and namespace, one after the other). Per setup: orders/s from the first OrderPaid
    published until the balances add up to the oracle, with the group already formed."""
    from shared.contracts.commission import CommissionPlanPublished
    from shared.events import new_event
    from shared.topics import without_namespace

    pop = ctx.pop
    orders = workload.orders(pop, n_orders, seed=17, prefix="sc")
    records = []
    for o in orders:
        e = workload.paid_event(o)
        records.append((e.key.encode(), e.to_bytes()))
    expected, n_accruals = workload.expected(pop, orders)
    total = sum(expected.values())
    plan = new_event(CommissionPlanPublished(plan_version=1, plan=workload.PLAN, published_by="bench",
                                             published_at=pop.since - timedelta(minutes=1)))
    referral = [(e.key.encode(), e.to_bytes()) for e in workload.referral_events(pop)]
    out: dict[str, Any] = {"orders": n_orders, "accruals": n_accruals}
    for n in counts:
        ns = f"{NAMESPACE}s{n}"
        schema = f"{ctx.schema}_s{n}"
        ctx.extra_schemas.append(schema)

        def topic(base: str) -> str:
            return f"{ns}.{without_namespace(base)}"

        for base in (REFERRAL_EVENTS, ORDER_EVENTS, COMMISSION_EVENTS, PAYOUT_EVENTS):
            await ceiling.ensure_topic(ctx.bootstrap, topic(base))
        ends: dict[int, int] = {}
        await publish(ctx.producer, topic(COMMISSION_EVENTS), [(plan.key.encode(), plan.to_bytes())], {})
        await publish(ctx.producer, topic(REFERRAL_EVENTS), referral, ends)
        env = {"COMMISSION_SCHEMA": schema, "LOG_LEVEL": "WARNING", "FENXIAO_TOPIC_NAMESPACE": ns, **ctx.service_env}
        procs = [ctx.service(f"commission-{n}x{i}", env, module="commission") for i in range(n)]
        try:
            for p in procs:
                p.start()
            for p in procs:
                await p.wait_ready()
            conn = await asyncpg.connect(ctx.dsn, server_settings={"search_path": schema})
            try:
                async def pos(t: str) -> dict[int, int]:
                    rows = await conn.fetch("SELECT partition, next_offset FROM projector_offsets WHERE topic = $1", t)
                    return {r["partition"]: r["next_offset"] for r in rows}

                async def ready():
                    owned = [await _readyz_partitions(p.url) for p in procs]
                    return reached(await pos(topic(REFERRAL_EVENTS)), ends) and all(owned) and \
                        len({x for o in owned for x in o}) == 4
                await wait_for(ready, f"{n} commission process(es) to form their group", max(timeout, 180), interval=0.2)
                order_ends: dict[int, int] = {}
                gcpause.refreeze()
                t0 = time.perf_counter()
                await publish(ctx.producer, topic(ORDER_EVENTS), records, order_ends)
                last = [0]

                async def done():
                    last[0] = int(await conn.fetchval("SELECT coalesce(sum(frozen_fen), 0) FROM balances"))
                    return reached(await pos(topic(ORDER_EVENTS)), order_ends) and last[0] == total
                await wait_for(done, f"balances to reach {total} fen with {n} process(es)", timeout, interval=0.05,
                               on_timeout=lambda: f"frozen total {last[0]} of {total}\n" + procs[0].tail())
                secs = time.perf_counter() - t0
                rows = await conn.fetch("SELECT promoter_id, frozen_fen FROM balances")
            finally:
                await conn.close()
        finally:
            for i, p in enumerate(procs):
                ctx.stop(f"commission-{n}x{i}")
        got = {r["promoter_id"]: r["frozen_fen"] for r in rows}
        match = all(got.get(p, 0) == v for p, v in expected.items()) and sum(got.values()) == total
        out[f"processes_{n}"] = {"seconds": round(secs, 2), "orders_per_s": round(n_orders / secs, 1),
                                 "accruals_per_s": round(n_accruals / secs, 1), "balances_match": match}
        ctx.log(f"scale: {n} commission process(es): {n_orders} orders in {secs:.1f}s = {n_orders / secs:,.0f} orders/s; "
                f"balances {'MATCH' if match else 'DIFFER'}")
    if all(f"processes_{n}" in out for n in (1, 2)):
        out["ratio_2_vs_1"] = round(out["processes_2"]["orders_per_s"] / out["processes_1"]["orders_per_s"], 3)
    ctx.results["scale"] = out
