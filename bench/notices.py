"""`python -m bench.notices`: how soon a promoter hears of an accrual.

The engagement service as deployed (a separate process, fresh schema and topic namespace),
`--streams` promoters each with a notice page open (a Server-Sent Events stream), and
`--rate` CommissionAccrued events per second published to the real commission topic, round
robin over the promoters. Measures, per notice, publish (the send started) -> the notice read off
the stream, and prints p50 / p95 / p99 / max. With `--burst N`, then a sale's burst: N accruals at
once over `--burst-promoters` new promoters, timed until every notice is stored, against a raw
consume of the same records (the ratio is the figure to compare across runs). Nothing is asserted
(shared machines are noisy); the integration test asserts the 1 s promise as a correctness property."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone

RUN = uuid.uuid4().hex[:8]
os.environ.setdefault("FENXIAO_TOPIC_NAMESPACE", f"benchn{RUN}")

import httpx  # noqa: E402

from shared.contracts.commission import CommissionAccrued  # noqa: E402
from shared.events import new_event  # noqa: E402
from shared.identity import HEADER, sign_identity  # noqa: E402
from shared.outbox import make_producer  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402
from shared.topics import COMMISSION_EVENTS  # noqa: E402
from simulation.cluster import ROOT, ServiceProcess  # noqa: E402
from simulation.cluster import free_port


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def main(args) -> int:
    from simulation.run import ensure_keys

    ensure_keys()  # fresh random keys unless set: the services refuse to start without strong ones
    settings = CommonSettings()
    schema = f"engagement_bench{RUN}"
    svc = ServiceProcess("engagement", free_port(), {"ENGAGEMENT_SCHEMA": schema, "LOG_LEVEL": "WARNING",
                                                      "FENXIAO_TOPIC_NAMESPACE": os.environ["FENXIAO_TOPIC_NAMESPACE"]},
                         ROOT / ".local" / "bench" / f"notices-{RUN}.log")
    svc.start()
    producer = make_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    sent_at: dict[str, float] = {}
    acks: list[asyncio.Future] = []
    latencies: list[float] = []
    promoters = [f"bench-{RUN}-p{i}" for i in range(args.streams)]
    ready = 0

    async def publish(promoter: str, n: int) -> None:
        evt = CommissionAccrued(accrual_id=f"a{n}", order_id=f"o-{RUN}-{n}", line_id="1", beneficiary_id=promoter,
                                buyer_id=f"b{n}", level="level1", base_fen=10_000, quantity=1, rate_bp=1000,
                                amount_fen=1_000, plan_version=1, tier="t", unfreeze="order_completed+7d",
                                paid_at=datetime.now(timezone.utc))
        env = new_event(evt)
        sent_at[evt.order_id] = time.perf_counter()  # before the send: a notice can beat the acknowledgement
        # not awaited one by one: a sale's rate (thousands a second) is more than one acknowledged
        # send at a time can offer; the producer batches what is due (2 ms linger)
        acks.append(await producer.send(COMMISSION_EVENTS, env.to_bytes(), key=env.key.encode()))

    async def listen(promoter: str, done: asyncio.Event) -> None:
        nonlocal ready
        headers = {HEADER: sign_identity(settings.identity_secret, promoter, audience="engagement", ttl_s=3600)}
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
            async with client.stream("GET", svc.url + "/v1/me/notices/stream", headers=headers) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith(": ready"):
                        ready += 1
                    elif line.startswith("data: "):
                        ref = json.loads(line[6:])["ref"]
                        t = sent_at.get(ref)
                        if t is not None:
                            latencies.append(time.perf_counter() - t)
                        if len(latencies) >= args.count:
                            done.set()

    try:
        await svc.wait_ready()
        done = asyncio.Event()
        tasks = [asyncio.create_task(listen(p, done)) for p in promoters]
        while ready < len(promoters):
            await asyncio.sleep(0.05)
        for i in range(args.warmup):  # the projector has its partitions and is caught up
            await publish(promoters[i % len(promoters)], -1 - i)
        await asyncio.gather(*acks)
        await asyncio.sleep(3)
        latencies.clear()
        t0 = time.perf_counter()
        for n in range(args.count):
            await publish(promoters[n % len(promoters)], n)
            await asyncio.sleep(max(0.0, t0 + (n + 1) / args.rate - time.perf_counter()))
        await asyncio.gather(*acks)
        offered = args.count / (time.perf_counter() - t0)
        try:
            await asyncio.wait_for(done.wait(), 60)
        except TimeoutError:
            pass
        for t in tasks:
            t.cancel()
        ms = [x * 1000 for x in latencies]
        print(f"notices: {len(ms)}/{args.count} received on {args.streams} open streams at {args.rate}/s asked "
              f"({offered:,.0f}/s published)")
        print(f"publish -> read off the stream (ms): p50 {pct(ms, 50):.1f}  p95 {pct(ms, 95):.1f}  "
              f"p99 {pct(ms, 99):.1f}  max {max(ms) if ms else float('nan'):.1f}")
        print(f"within 1 s: {sum(x <= 1000 for x in ms)}/{len(ms)}")
        if args.burst:
            await burst(args, settings, producer, schema)
        return 0
    finally:
        await producer.stop()
        svc.stop()
        from shared.db import drop_schema
        await drop_schema(settings.database_url, schema)


async def burst(args, settings: CommonSettings, producer, schema: str) -> None:
    """A sale's burst: `--burst` accruals over `--burst-promoters` new promoters published as fast
    as the producer goes; the time from the first send until engagement has stored every one's
    notice, against a raw consume of the same records from the log (the same run's ceiling)."""
    import asyncpg

    from bench import ceiling

    bootstrap = settings.kafka_bootstrap_servers
    conn = await asyncpg.connect(settings.database_url)
    try:
        starts = await ceiling.end_offsets(bootstrap, COMMISSION_EVENTS)
        now = datetime.now(timezone.utc)
        values = []
        for n in range(args.burst):
            evt = CommissionAccrued(accrual_id=f"b{n}", order_id=f"burst-{RUN}-{n}", line_id="1",
                                    beneficiary_id=f"burst-{RUN}-p{n % args.burst_promoters}", buyer_id=f"bb{n}",
                                    level="level1", base_fen=10_000, quantity=1, rate_bp=1000, amount_fen=1_000,
                                    plan_version=1, tier="t", unfreeze="order_completed+7d", paid_at=now)
            env = new_event(evt)
            values.append((env.key.encode(), env.to_bytes()))
        count = f"SELECT count(*) FROM {schema}.notices WHERE kind = 'commission_accrued' AND promoter_id LIKE 'burst-%'"
        t0 = time.perf_counter()
        futures = [await producer.send(COMMISSION_EVENTS, v, key=k) for k, v in values]
        await asyncio.gather(*futures)
        published = time.perf_counter() - t0
        while await conn.fetchval(count) < args.burst:
            if time.perf_counter() - t0 > 600:
                raise TimeoutError(f"engagement stored {await conn.fetchval(count)} of {args.burst} notices in 600 s")
            await asyncio.sleep(0.05)
        applied = time.perf_counter() - t0
        _, raw = await ceiling.consume_many(bootstrap, await ceiling.end_offsets(bootstrap, COMMISSION_EVENTS), starts)
        rate = args.burst / applied
        print(f"burst: {args.burst} accruals over {args.burst_promoters} promoters published in {published:.1f}s, "
              f"every notice stored in {applied:.1f}s = {rate:,.0f}/s; raw consume of the same records {raw:,.0f}/s; "
              f"ratio {rate / raw:.3f}")
    finally:
        await conn.close()


def cli() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.notices", description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--burst", type=int, default=0, help="then this many accruals at once (0: none)")
    ap.add_argument("--burst-promoters", type=int, default=2000)
    sys.exit(asyncio.run(main(ap.parse_args())))


if __name__ == "__main__":
    cli()


