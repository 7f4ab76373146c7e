"""`python -m bench.run` (`make bench`): can fenxiao keep up with a sale on modest hardware?

On the local Kafka and PostgreSQL, with the commission service as deployed (a separate process,
fresh schema, fresh topic namespace per run), measures in one run:

  accrual   OrderPaid -> every balance updated, orders/s, against the raw aiokafka
            consume->produce ceiling of the same messages on the same broker (bench/ceiling.py)
  latency   at a fixed offered load: OrderPaid sent -> balance visible through the API
  replay    the audit replay of the run's log, events/s against raw consume of the same log
  rederive  the re-deriving audit of the same log (bench/rederive.py), records/s and equal
  API       balance reads (commission) and binds (referral) at fixed request rates, open loop
  memory    peak RSS of each service process

prints a table, writes bench/results/<timestamp>.json and compares with
bench/results/baseline.json when there is one. Timings are never asserted: these machines are
shared and noisy, so the ratios against ceilings measured in the same run are what to compare."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

TARGETS = {
    "accrual_ratio": (">=", 0.20),
    "latency_p99_ms": ("<", 100.0),
    "latency_busy_p99_ms": ("<", 250.0),
    "scale_2_vs_1": (">=", 1.3),
    "replay_ratio": (">=", 0.40),
    "balance_p99_ms": ("<", 20.0),
    "bind_p99_ms": ("<", 50.0),
}


def machine() -> dict:
    info: dict = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    info["loadavg_start"] = os.getloadavg()[0]
    from importlib.metadata import version

    info["packages"] = {p: version(p) for p in ("aiokafka", "asyncpg", "faststream", "fastapi", "uvicorn", "pydantic")}
    jars = list((ROOT / ".local" / "kafka" / "libs").glob("kafka_*.jar")) if (ROOT / ".local" / "kafka" / "libs").exists() else []
    if jars:
        info["kafka"] = jars[0].stem.split("-", 1)[-1]
    try:
        # BENCH_COMMIT: a run from an exported tree (git archive) names the commit it came from
        info["commit"] = os.environ.get("BENCH_COMMIT") or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        info["dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--", "services", "shared"], cwd=ROOT,
                                            capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    return info


async def pg_version(dsn: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


def derive(res: dict) -> dict:
    """The headline figures and their ratios to the same run's ceilings."""
    out: dict = {}
    acc, ceil, rep = res.get("accrual"), res.get("ceiling"), res.get("replay")
    if acc and ceil:
        out["accrual_orders_per_s"] = acc["orders_per_s"]
        out["accrual_ratio"] = round(acc["orders_per_s"] / ceil["consume_produce_per_s"], 4)
        out["accrual_ratio_vs_consume"] = round(acc["orders_per_s"] / ceil["consume_per_s"], 4)
        # in messages: each order makes ~3.3 CommissionAccrued, each a produce like the ceiling's
        out["accrued_events_ratio"] = round(acc["accruals_per_s"] / ceil["consume_produce_per_s"], 4)
    if acc and ceil and ceil.get("fanout_out_per_s"):
        out["accrual_ratio_vs_fanout"] = round(acc["accruals_per_s"] / ceil["fanout_out_per_s"], 4)
    if rep:
        out["replay_events_per_s"] = rep["events_per_s"]
        out["replay_ratio"] = round(rep["events_per_s"] / rep["raw_consume_per_s"], 4)
    if res.get("latency"):
        out["latency_p50_ms"] = res["latency"]["end_to_end"]["p50_ms"]
        out["latency_p99_ms"] = res["latency"]["end_to_end"]["p99_ms"]
        out["latency_max_ms"] = res["latency"]["end_to_end"]["max_ms"]
    if res.get("api_balance"):
        out["balance_p50_ms"] = res["api_balance"]["p50_ms"]
        out["balance_p99_ms"] = res["api_balance"]["p99_ms"]
    if res.get("api_bind"):
        out["bind_p50_ms"] = res["api_bind"]["p50_ms"]
        out["bind_p99_ms"] = res["api_bind"]["p99_ms"]
    if res.get("latency_busy"):
        out["latency_busy_p99_ms"] = res["latency_busy"]["end_to_end"]["p99_ms"]
    checks = [res[k]["balances"]["match"] for k in ("accrual", "latency", "latency_busy") if res.get(k)]
    checks += [v["balances_match"] for k, v in (res.get("scale") or {}).items() if k.startswith("processes_")]
    out["balances_match"] = bool(checks) and all(checks)
    if res.get("scale", {}).get("ratio_2_vs_1"):
        out["scale_2_vs_1"] = res["scale"]["ratio_2_vs_1"]
    if rep:
        out["replay_equal"] = rep["equal"]
    if res.get("rederive"):
        out["rederive_records_per_s"] = res["rederive"]["records_per_s"]
        out["rederive_equal"] = res["rederive"]["equal"]
    out["targets"] = {}
    for k, (op, goal) in TARGETS.items():
        if k in out:
            v = out[k]
            out["targets"][k] = {"value": v, "target": f"{op} {goal:g}", "met": v >= goal if op == ">=" else v < goal}
    return out


def summary(res: dict) -> dict:
    """The headline figures of one run, under fixed keys (issue 19); None where a phase was skipped."""
    d = res["derived"]
    rss = res.get("memory", {}).get("peak_rss_mib", {})
    return {
        "accrual_orders_per_s": d.get("accrual_orders_per_s"),
        "accrual_vs_pipe": d.get("accrual_ratio"),
        "accrual_vs_fanout": d.get("accrual_ratio_vs_fanout"),
        "latency_p99_ms": d.get("latency_p99_ms"),
        "latency_busy_p99_ms": d.get("latency_busy_p99_ms"),
        "replay_vs_consume": d.get("replay_ratio"),
        "scale_2_vs_1": d.get("scale_2_vs_1"),
        "balance_api_p99_ms": d.get("balance_p99_ms"),
        "bind_api_p99_ms": d.get("bind_p99_ms"),
        "peak_rss_mib": max(rss.values()) if rss else None,
        "balances_match": d.get("balances_match", False),
    }


def table(res: dict, baseline: dict | None = None) -> str:
    d = res["derived"]
    base = (baseline or {}).get("derived", {})
    acc, ceil, rep, lat = res.get("accrual", {}), res.get("ceiling", {}), res.get("replay", {}), res.get("latency", {})
    ab, bi, mem = res.get("api_balance", {}), res.get("api_bind", {}), res.get("memory", {}).get("peak_rss_mib", {})

    def t(key):
        x = d["targets"].get(key)
        return ("" if x is None else f"{x['target']:<9} {'met' if x['met'] else 'MISSED'}")

    def b(key, fmt="{:,.3g}"):
        return fmt.format(base[key]) if key in base else ""

    rows = [("measure", "value", "same-run ceiling", "ratio", "target", "baseline")]
    if acc:
        rows.append(("accrual: OrderPaid -> balances (orders/s)", f"{acc['orders_per_s']:,.0f}",
                     f"{ceil.get('consume_produce_per_s', 0):,.0f} consume->produce", f"{d.get('accrual_ratio', 0):.3f}",
                     t("accrual_ratio"), b("accrual_ratio", "{:.3f}")))
        rows.append(("  CommissionAccrued produced/s", f"{acc['accruals_per_s']:,.0f}",
                     f"{ceil.get('consume_produce_per_s', 0):,.0f} consume->produce", f"{d.get('accrued_events_ratio', 0):.3f}",
                     "", ""))
        rows.append(("  raw produce | raw consume (msg/s)", f"{ceil.get('produce_per_s', 0):,.0f} | {ceil.get('consume_per_s', 0):,.0f}",
                     "", "", "", ""))
    if lat:
        e = lat["end_to_end"]
        rows.append((f"latency @{lat['offered_orders_per_s']:.0f}/s: sent -> API balance p50/p99/max ms",
                     f"{e['p50_ms']:.1f} / {e['p99_ms']:.1f} / {e['max_ms']:.1f}", f"n={e['n']}, poll {lat['poll_interval_ms']:g} ms",
                     "", t("latency_p99_ms"), b("latency_p99_ms")))
        l1, c = lat["to_accrued_on_log"], lat["to_committed"]
        rows.append(("  sent -> balance row committed p50/p99", f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f}", "", "", "", ""))
        rows.append(("  sent -> CommissionAccrued on the log p50/p99", f"{l1['p50_ms']:.1f} / {l1['p99_ms']:.1f}", "", "", "", ""))
    lb = res.get("latency_busy", {})
    if lb:
        e = lb["end_to_end"]
        rows.append((f"  same beside a CPU hog ({lb['cpu_hog_duty']:g} of a core) p50/p99/max ms",
                     f"{e['p50_ms']:.1f} / {e['p99_ms']:.1f} / {e['max_ms']:.1f}", f"n={e['n']}", "",
                     t("latency_busy_p99_ms"), b("latency_busy_p99_ms")))
    if ceil.get("fanout_out_per_s"):
        rows.append(("  CommissionAccrued/s vs fan-out ceiling (msg/s)", f"{acc.get('accruals_per_s', 0):,.0f}",
                     f"{ceil['fanout_out_per_s']:,.0f} fan-out x{ceil['fanout_per_input']:.2f}",
                     f"{d.get('accrual_ratio_vs_fanout', 0):.3f}", "", ""))
    sc = res.get("scale", {})
    if sc.get("ratio_2_vs_1"):
        rows.append(("scale-out: 2 processes vs 1 (orders/s)",
                     f"{sc['processes_2']['orders_per_s']:,.0f} vs {sc['processes_1']['orders_per_s']:,.0f}",
                     f"{sc['orders']} orders each", f"{sc['ratio_2_vs_1']:.2f}", t("scale_2_vs_1"), b("scale_2_vs_1")))
    if rep:
        rows.append(("replay (events/s)", f"{rep['events_per_s']:,.0f}", f"{rep['raw_consume_per_s']:,.0f} raw consume",
                     f"{d.get('replay_ratio', 0):.3f}", t("replay_ratio"), b("replay_ratio", "{:.3f}")))
    if ab:
        rows.append((f"balance API @{ab['offered_per_s']:.0f}/s p50/p99/max ms", f"{ab['p50_ms']:.1f} / {ab['p99_ms']:.1f} / {ab['max_ms']:.1f}",
                     f"{ab['ok']} ok, {sum(ab['errors'].values())} err", "", t("balance_p99_ms"), b("balance_p99_ms")))
    if bi:
        rows.append((f"bind API @{bi['offered_per_s']:.0f}/s p50/p99/max ms", f"{bi['p50_ms']:.1f} / {bi['p99_ms']:.1f} / {bi['max_ms']:.1f}",
                     f"{bi['ok']} ok, {sum(bi['errors'].values())} err", "", t("bind_p99_ms"), b("bind_p99_ms")))
    for name, mib in mem.items():
        rows.append((f"peak RSS {name} (MiB)", f"{mib:,.0f}", "", "", "", ""))
    if res.get("rederive"):
        rd = res["rederive"]
        rows.append(("rederive audit (records/s) | equal", f"{rd['records_per_s']:,.0f} | {rd['equal']}",
                     f"{rd['records']:,} records, {rd['accruals']:,} accruals", "", "", b("rederive_records_per_s", "{:,.0f}")))
    rows.append(("balances equal the oracle | replay equal", f"{d['balances_match']} | {d.get('replay_equal')}", "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def bench(args: argparse.Namespace, run: str, log) -> dict:
    import logging

    import structlog

    from bench import phases
    from bench.gcpause import quiet_heap  # the bench's own collections out of what it times
    from bench.memory import RssSampler
    from shared.settings import CommonSettings

    # the replay runs in this process: keep its progress logs out of the bench's output
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    from simulation.run import ensure_keys

    ensure_keys()  # fresh random keys unless set: the services refuse to start without strong ones
    settings = CommonSettings()
    log_dir = ROOT / ".local" / "bench" / run
    log_dir.mkdir(parents=True, exist_ok=True)
    sampler = RssSampler()
    service_env = dict(kv.split("=", 1) for kv in args.service_env)
    ctx = phases.Ctx(run=run, bootstrap=settings.kafka_bootstrap_servers, dsn=settings.database_url,
                     secret=settings.identity_secret, log_dir=log_dir, log=log, sampler=sampler, service_env=service_env,
                     profile_dir=log_dir if args.profile else None)
    res = ctx.results
    res["run"] = run
    res["command"] = "python -m bench.run " + " ".join(sys.argv[1:])
    res["machine"] = machine()
    res["machine"]["bench_event_loop"] = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop | asyncio
    res["machine"]["postgresql"] = await pg_version(ctx.dsn)
    res["settings"] = {k: getattr(args, k) for k in ("users", "orders", "probes", "latency_rate", "latency_seconds",
                                                     "poll_ms", "balance_rate", "bind_rate", "api_seconds", "hog_duty",
                                                     "scale_orders")}
    res["settings"]["service_env"] = service_env
    log(f"run {run}: kafka {ctx.bootstrap}, logs in {log_dir}")
    sampler.start()
    from bench.cpu import CpuMeter

    ctx.cpu = CpuMeter(await phases.cpu_groups(ctx))
    ctx.cpu.start()
    async def heap_quiet(phase: str, work) -> None:
        """Run a phase with the bench's heap frozen (bench/gcpause.py); its collections go in its results."""
        with quiet_heap() as pauses:
            await work
        res[phase]["bench_gc"] = pauses.as_dict()

    t0 = time.perf_counter()
    try:
        await phases.start_commission(ctx)
        ctx.phase("load")
        await phases.publish_plan(ctx)
        await phases.load_population(ctx, args.users, args.probes)
        ctx.phase("accrual")
        await heap_quiet("accrual", phases.accrual(ctx, args.orders, args.timeout))
        ctx.phase("ceiling")
        await heap_quiet("ceiling", phases.ceilings(ctx))
        if not args.skip_replay:
            ctx.phase("replay")
            await phases.replay(ctx)
        if not args.skip_rederive:
            from bench.rederive import rederive

            ctx.phase("rederive")
            await rederive(ctx)
        if args.latency_seconds > 0:
            ctx.phase("latency")
            await phases.latency(ctx, args.latency_rate, args.latency_seconds, args.poll_ms / 1000, args.timeout,
                                 send_tick_s=args.send_tick_ms / 1000)
            if args.hog_duty > 0:
                ctx.phase("latency_busy")
                await phases.latency(ctx, args.latency_rate, args.latency_seconds, args.poll_ms / 1000, args.timeout,
                                     send_tick_s=args.send_tick_ms / 1000,
                                     name="latency_busy", hog_duty=args.hog_duty, seed=14)
        if args.api_seconds > 0:
            ctx.phase("api_balance")
            await heap_quiet("api_balance", phases.api_balance(ctx, args.balance_rate, args.api_seconds))
        ctx.stop("commission")
        if args.api_seconds > 0:
            ctx.phase("api_bind")
            await heap_quiet("api_bind", phases.api_bind(ctx, args.bind_rate, args.api_seconds))
        if args.scale_orders > 0:
            ctx.phase("scale")
            await heap_quiet("scale", phases.scale(ctx, args.scale_orders, args.timeout))
    finally:
        await sampler.stop()
        await ctx.cpu.stop()
        if ctx.producer is not None:
            await ctx.producer.stop()
        for name in list(ctx.services):
            ctx.stop(name)
        if not args.keep:
            try:
                await phases.cleanup(ctx)
            except Exception as exc:  # clean-up must not hide the run's own error
                log(f"clean-up failed: {exc!r}")
    res.pop("_orders_bytes", None)
    res["memory"] = sampler.as_dict()
    res["cpu"] = ctx.cpu.as_dict()
    # per order, where a phase's orders are known: what each process spent on one order's way
    res["cpu"]["per_order_us"] = {ph: ctx.cpu.per_order_us(ph, res[ph]["orders"])
                                  for ph in ("accrual", "latency", "latency_busy") if ph in res}
    for ph, us in res["cpu"]["per_order_us"].items():
        log(f"cpu per order in {ph} (µs): " + ", ".join(f"{g} {v:,.0f}" for g, v in sorted(us.items(), key=lambda kv: -kv[1]))
            + f"; the machine was {ctx.cpu.machine_busy_by_phase.get(ph, 0):.0%} busy (all {os.cpu_count()} cores)")
    res["machine"]["loadavg_end"] = os.getloadavg()[0]
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.profile:
        from bench.profile import summarize

        res["profile"] = {}
        found = [(f"{name}-{seg}", path) for name, svc in ctx.services.items() for seg, path in svc.profiles()]
        if (log_dir / "replay-in-process.prof").exists():
            found.append(("replay-in-process", log_dir / "replay-in-process.prof"))
        for label, path in found:
            if label.endswith(("-startup", "-shutdown")):
                continue
            res["profile"][label] = summarize(path, log_dir / f"profile-{label}.txt", top=25)
        log(f"profiles: {log_dir}/profile-*.txt")
    res["derived"] = derive(res)
    res["summary"] = summary(res)
    return res


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000, help="promoters + customers loaded (a tenth promoters)")
    ap.add_argument("--orders", type=int, default=100_000, help="OrderPaid published in the accrual phase")
    ap.add_argument("--probes", type=int, default=400, help="probe orders sampled in the latency phase")
    ap.add_argument("--latency-rate", type=float, default=1000.0, help="offered OrderPaid/s in the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--poll-ms", type=float, default=5.0, help="balance poll interval per in-flight probe")
    ap.add_argument("--send-tick-ms", type=float, default=5.0,
                    help="the latency phases send what fell due every this many ms, one record batch per partition "
                         "(as an outbox relay publishes); 0: one send() per order")
    ap.add_argument("--balance-rate", type=float, default=500.0, help="balance reads/s")
    ap.add_argument("--bind-rate", type=float, default=200.0, help="binds/s")
    ap.add_argument("--api-seconds", type=float, default=10.0, help="duration of each API phase (0 skips them)")
    ap.add_argument("--hog-duty", type=float, default=0.5,
                    help="second latency phase beside a CPU hog busy this share of one core (0 skips it)")
    ap.add_argument("--scale-orders", type=int, default=30_000,
                    help="OrderPaid applied by 1 and then by 2 commission processes (0 skips the scale phase)")
    ap.add_argument("--skip-replay", action="store_true")
    ap.add_argument("--skip-rederive", action="store_true")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up waiting for balances after this many seconds")
    ap.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the service processes (e.g. PROJECTOR_SYNCHRONOUS_COMMIT=false)")
    ap.add_argument("--profile", action="store_true", help="run the commission process under cProfile and summarize")
    ap.add_argument("--keep", action="store_true", help="keep the run's schemas and topics")
    ap.add_argument("--json-out", type=Path, help="where to write the results (default bench/results/<timestamp>.json)")
    ap.add_argument("--baseline", type=Path, default=RESULTS / "baseline.json", help="results to compare with")
    return ap.parse_args(argv)


def bench_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """asyncio's own event loop, as in every earlier run, unless FENXIAO_BENCH_LOOP=uvloop: the
    loop the services run on (uvicorn's, where uvloop is installed). With uvloop the ceilings are
    measured on the services' own stack and come out ~25 % higher (consume->produce 41-42k/s
    against 33-34k/s, two runs each), so `accrual_vs_pipe` falls by as much; the generator's and
    observers' CPU did not change (docs/benchmarks.md, "Eighth session")."""
    if os.environ.get("FENXIAO_BENCH_LOOP", "asyncio") != "uvloop":
        return None
    from shared.eventloop import uvloop_factory
    return uvloop_factory()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    run = time.strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
    # a fresh topic namespace per run, set before anything imports shared.topics
    os.environ["FENXIAO_TOPIC_NAMESPACE"] = f"bench{run}"

    def log(msg: str) -> None:
        print(f"[bench] {msg}", flush=True)

    with asyncio.Runner(loop_factory=bench_loop()) as runner:
        res = runner.run(bench(args, run, log))
    out = args.json_out or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(res, indent=2, ensure_ascii=False, default=str)
    out.write_text(text)
    baseline = None
    if args.baseline and args.baseline.is_file() and args.baseline.resolve() != out.resolve():
        baseline = json.loads(args.baseline.read_text())
    m = res["machine"]
    print()
    print(f"fenxiao bench, run {run} at commit {m.get('commit')}{' (+local changes)' if m.get('dirty') else ''}: "
          f"{m['nproc']} CPUs ({m.get('cpu')}), {m.get('memory_gib')} GiB, load average {m['loadavg_start']:.1f} -> "
          f"{m['loadavg_end']:.1f}, wall {res['wall_s']:.0f}s")
    print(f"$ {res['command']}")
    print()
    print(table(res, baseline))
    print()
    print(f"results: {out}" + (f" (baseline column: {args.baseline})" if baseline else ""))
    return 0 if res["derived"]["balances_match"] and res["derived"].get("replay_equal", True) else 1


if __name__ == "__main__":
    sys.exit(main())
