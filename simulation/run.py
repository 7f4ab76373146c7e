"""The main job (`make demo`): the services (and the operators' console) as separate processes on the local Kafka and
PostgreSQL, WeChat's servers stood in for locally, simulated mini-program traffic through
them, then a summary of balances and the audit replay of the event log."""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from shared.settings import CommonSettings
from simulation import console, engagement
from simulation.cluster import BASE_PORT, ROOT, cluster, ports_from_base
from simulation.traffic import Gateway, run_traffic
from standins.wechat.app import create as create_standins, serve

SERVICES = ("referral", "orders", "commission", "payout", "engagement", "console")


def _yuan(fen: int) -> str:
    return f"{fen / 100:,.2f}"


def print_summary(rep, log=print) -> None:
    cols = ("frozen_fen", "available_fen", "reserved_fen", "withdrawn_fen", "reversed_fen")
    log("")
    log(f"{'promoter':<22}" + "".join(f"{c.removesuffix('_fen'):>12}" for c in cols))
    totals = dict.fromkeys(cols, 0)
    for p in rep.promoters:
        b = rep.balances[p]
        log(f"{p:<22}" + "".join(f"{_yuan(b[c]):>12}" for c in cols))
        for c in cols:
            totals[c] += b[c]
    log(f"{'TOTAL (¥)':<22}" + "".join(f"{_yuan(totals[c]):>12}" for c in cols))
    log("")
    log(f"orders paid {rep.orders_paid} (¥{_yuan(rep.paid_fen)}), refunds {rep.refunds} (¥{_yuan(rep.refunded_fen)}), "
        f"bindings {rep.bindings}, refused {rep.refused_bindings}")
    log(f"withdrawals {len(rep.withdrawals)}: " + ", ".join(f"{s}={list(rep.withdrawals.values()).count(s)}"
                                                            for s in sorted(set(rep.withdrawals.values())))
        + f"; paid out ¥{_yuan(rep.withdrawn_fen)}")
    observed = {p: sum(rep.balances[p][c] for c in cols) for p in rep.promoters}  # every accrued fen is in some column
    wrong = {p: (observed[p], rep.expected_accrued.get(p, 0)) for p in rep.promoters
             if observed[p] != rep.expected_accrued.get(p, 0)}
    log(f"accrued commission vs an independent recomputation of the plan: "
        + ("equal for every promoter" if not wrong else f"DIFFERENT for {wrong}"))
    rep.notes.append("oracle_ok" if not wrong else "oracle_differs")
    if rep.posters:
        log(f"posters: {', '.join(rep.posters)}")


def ensure_keys() -> None:
    """The services refuse to start without strong keys: a run without them (a laptop's
    `make demo`) gets fresh random ones, inherited by the service processes it starts."""
    import secrets

    from shared import shredding

    os.environ.setdefault("FENXIAO_IDENTITY_SECRET", secrets.token_urlsafe(48))
    os.environ.setdefault("REFERRAL_CODE_SECRET", secrets.token_urlsafe(48))
    # crypto-shredding's master keys (base64 of 32 bytes): a fresh run's sealed data is its own
    os.environ.setdefault("REFERRAL_PERSONAL_DATA_KEY", shredding.new_master_key())
    os.environ.setdefault("PAYOUT_IDENTITY_MASTER_KEY", shredding.new_master_key())
    # every simulated user calls from this one address: per-IP limits would be one global limit
    os.environ.setdefault("FENXIAO_RATE_LIMITS", "user")


def audit(env: dict[str, str], log=print, schemas: dict[str, str] | None = None) -> bool:
    """The auditor's replay: rebuild commission balances (and the payout ledger) from offset 0;
    re-derive every commission line from the source events; verify the log's hash chains against
    every service's relay (docs/audit.md)."""
    ok = True
    commands = [["services.commission.replay"], ["services.payout.replay"],
                ["services.commission.audit", "rederive", "--no-store", "--quiet"]]
    if schemas:
        commands.append(["shared.chain", "verify", "--quiet", *(a for s in schemas.values() for a in ("--schema", s))])
    for command in commands:
        log(f"\n$ python -m {' '.join(command)}")
        r = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=env, capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if command[0] == "shared.chain" and r.returncode == 0:
            out = "\n".join(line for line in out.splitlines() if not line.endswith(", ok"))  # one line per partition otherwise
        log(out)
        ok = ok and r.returncode == 0
    return ok


async def reconcile_today(orders_env: dict[str, str], log=print) -> bool:
    """Orders' daily reconciliation, run now for today's (Beijing) bills of the stand-in: every
    payment and refund of the run must match WeChat's trade and fund-flow bills."""
    from datetime import datetime, timedelta, timezone

    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.orders.reconcile", "--date", today,
        env={**os.environ, **orders_env, "LOG_LEVEL": "WARNING"},
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    lines = [ln for ln in out.decode().splitlines() if not ln.startswith("{")]  # the result, not the JSON logs
    log("[demo] reconciliation with WeChat Pay's bills: " + ("\n".join(lines) or f"exit {proc.returncode}"))
    return proc.returncode == 0


async def run_demo(*, promoters: int, customers: int, seed: int, run_id: str | None = None, wechat_port: int = 8199,
                   ports: dict[str, int] | None = None, log=print) -> tuple[bool, object]:
    """Start the stand-ins and the services, drive the traffic, audit. Returns (ok, report)."""
    run_id = run_id or time.strftime("%m%d%H%M%S")
    state = ROOT / ".local" / "demo" / run_id
    state.mkdir(parents=True, exist_ok=True)
    ensure_keys()
    settings = CommonSettings()
    wx = create_standins(ROOT / ".local" / "wechat", port=wechat_port)
    server, task = await serve(wx)
    # A fresh topic namespace and fresh schemas per run: the demo's log is its own.
    base_env = {"FENXIAO_TOPIC_NAMESPACE": f"demo{run_id}", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
                "COMMISSION_SETTLE_POLL_S": "0.5", "ORDERS_SWEEP_INTERVAL_S": "1",
                "ORDERS_PAYMENT_QUERY_AFTER_S": "2", "ORDERS_REFUND_QUERY_AFTER_S": "2",
                "ORDERS_WECHATPAY_FOLLOW_INTERVAL_S": "0.5"}
    schemas = {s: f"{s}_demo{run_id}" for s in SERVICES}
    env_by = {s: {**base_env, f"{s.upper()}_SCHEMA": schemas[s], **wx.service_env().get(s, {})} for s in SERVICES}
    c = cluster(env_by, log_dir=state, ports=ports)
    env_by["payout"]["PAYOUT_WECHAT_NOTIFY_URL"] = c["payout"].url + "/v1/wechatpay/transfer-notify"
    env_by["orders"]["ORDERS_WECHATPAY_NOTIFY_URL"] = c["orders"].url + "/v1/wechatpay/notify"
    env_by["console"].update({f"CONSOLE_{s.upper()}_URL": c[s].url for s in ("referral", "commission", "payout")})
    env_by["console"].update(CONSOLE_BOOTSTRAP_OPERATORS=console.bootstrap_env(), CONSOLE_COMMISSION_SCHEMA=schemas["commission"],
                             CONSOLE_PAYOUT_SCHEMA=schemas["payout"])
    log(f"[demo] run {run_id}: kafka {settings.kafka_bootstrap_servers}, topics '{base_env['FENXIAO_TOPIC_NAMESPACE']}.*', "
        f"schemas {', '.join(schemas.values())}; logs in {state}")
    t0 = time.perf_counter()
    rep = None
    try:
        await c.start()
        log(f"[demo] services up in {time.perf_counter() - t0:.1f}s: " +
            ", ".join(f"{n} {s.url}" for n, s in c.services.items()))
        gw = Gateway(settings.identity_secret, {n: s.url for n, s in c.services.items()},
                     appid=env_by["payout"].get("PAYOUT_WECHAT_APPID", ""), kid=settings.identity_kid)
        try:
            live = await engagement.start(gw, wx, run_id, f"op-{run_id}", log=lambda m: log(f"[demo] {m}"))
            rep = await run_traffic(gw, wx, promoters=promoters, customers=customers, seed=seed,
                                    run_id=run_id, poster_dir=state, log=lambda m: log(f"[demo] {m}"))
            print_summary(rep, log)
            log("")
            if await engagement.finish(gw, wx, live, run_id, f"op-{run_id}", log=lambda m: log(f"[demo] {m}")):
                rep.notes.append("engagement_ok")
            if await reconcile_today(env_by["orders"], log):
                rep.notes.append("reconciled_ok")
            if await console.check(c["console"].url, orders=rep.orders_paid, accrued_fen=sum(rep.expected_accrued.values()),
                                   log=lambda m: log(f"[demo] {m}")):
                rep.notes.append("console_ok")
        finally:
            await gw.close()
        rss = {n: s.rss_bytes() // (1 << 20) for n, s in c.services.items()}
        log(f"[demo] service memory (RSS MiB): {rss}")
    finally:
        c.stop()
        server.should_exit = True
        await task
    env = {**os.environ, **base_env, "COMMISSION_SCHEMA": schemas["commission"], "PAYOUT_SCHEMA": schemas["payout"]}
    audited = audit(env, log, schemas) and "oracle_ok" in rep.notes
    log(f"\n[demo] audit replay: {'MATCHES the live balances' if audited else 'DIFFERS from the live balances'}")
    return audited and "engagement_ok" in rep.notes and "reconciled_ok" in rep.notes and "console_ok" in rep.notes, rep


async def main(args) -> int:
    ports = ports_from_base(args.base_port)
    ok, _ = await run_demo(promoters=args.promoters, customers=args.customers, seed=args.seed, run_id=args.run_id,
                           wechat_port=args.wechat_port or args.base_port + 99, ports=ports)
    return 0 if ok else 1


def cli() -> None:
    ap = argparse.ArgumentParser(prog="python -m simulation.run", description=__doc__.splitlines()[0])
    ap.add_argument("--promoters", type=int, default=12)
    ap.add_argument("--customers", type=int, default=80)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--run-id", default=None)
    ap.add_argument("--base-port", type=int, default=int(os.environ.get("FENXIAO_DEMO_BASE_PORT", BASE_PORT)),
                    help="services on base+1.., WeChat stand-ins on base+99 (env FENXIAO_DEMO_BASE_PORT)")
    ap.add_argument("--wechat-port", type=int, default=None)
    sys.exit(asyncio.run(main(ap.parse_args())))


if __name__ == "__main__":
    cli()
