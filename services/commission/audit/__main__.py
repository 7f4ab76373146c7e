"""`python -m services.commission.audit <command>`: see each command's --help."""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone


def _instant(s: str) -> datetime:
    t = datetime.fromisoformat(s)
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def _rederive(args: argparse.Namespace) -> int:
    from services.commission.audit.rederive import rederive, report
    from services.commission.settings import CommissionSettings

    settings = CommissionSettings()
    into = None if args.no_store else (args.into or "audit_" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S"))
    r = asyncio.run(rederive(settings, args.schema or settings.db_schema, period=(args.from_, args.to), into=into,
                             progress=not args.quiet, clock_offset_s=args.clock_offset_s, grace_s=args.grace_s))
    report(r, sys.stdout)
    if r.undrained:
        return 2
    return 0 if r.equal else 1


def _as_of(args: argparse.Namespace) -> int:
    import json

    from services.commission.audit.asof import as_json, as_of
    from services.commission.settings import CommissionSettings

    settings = CommissionSettings()
    r = asyncio.run(as_of(settings.kafka_bootstrap_servers, args.promoter, args.at, progress=not args.quiet))
    if args.json:
        print(json.dumps(as_json(r), ensure_ascii=False, indent=1))
        return 0
    print(f"promoter {r.promoter_id} as of {r.at.isoformat()} ({r.events} money events)")
    print("balance: " + ", ".join(f"{k}={v}" for k, v in r.balance.items()))
    for rec in r.records:
        print(f"  {rec['paid_at'].isoformat()} order {rec['order_id']} line {rec['line_id']} {rec['level']}: "
              f"{rec['amount_fen']} fen, reversed {rec['reversed_fen']}, {rec['status']}"
              + (f" ({rec['settled_fen']} settled {rec['settled_at'].isoformat()})" if rec["settled_at"] else ""))
    for w in r.withdrawals:
        print(f"  withdrawal {w['withdrawal_id']}: {w['amount_fen']} fen, {w['status']} at {w['at'].isoformat()}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import json

    from services.commission.audit.simulate import load_source, origin_of, report, simulate
    from services.commission.domain.errors import PlanRefusedError
    from services.commission.domain.plan import parse_plan
    from services.commission.settings import CommissionSettings

    try:
        draft = parse_plan(json.loads(open(args.plan).read()))
    except PlanRefusedError as exc:
        print(f"draft refused ({exc.code}): {exc}", file=sys.stderr)
        return 2
    settings = CommissionSettings()
    origin = asyncio.run(origin_of(settings.database_url, args.schema or settings.db_schema))
    src = asyncio.run(load_source(settings.kafka_bootstrap_servers, until=args.to, progress=not args.quiet, origin=origin))
    from datetime import timedelta

    epoch = getattr(settings, "tier_epoch_s", None)
    sim = simulate(src, draft, args.from_, args.to, tier_epoch=timedelta(seconds=epoch) if epoch else None)
    if args.json:
        print(json.dumps(sim.as_json(args.top), indent=1, ensure_ascii=False))
    else:
        report(sim, sys.stdout, args.top)
    return 0


def _compliance(args: argparse.Namespace) -> int:
    from pathlib import Path

    from services.commission.audit import compliance
    from services.commission.audit.rederive import Published
    from services.commission.audit.simulate import load_source, origin_of
    from services.commission.settings import CommissionSettings

    settings = CommissionSettings()
    pub = Published()
    origin = asyncio.run(origin_of(settings.database_url, args.schema or settings.db_schema))
    src = asyncio.run(load_source(settings.kafka_bootstrap_servers, progress=not args.quiet, published=pub, origin=origin))
    report = compliance.check(src, pub, (args.from_, args.to), top=args.top)
    compliance.text(report, sys.stdout)
    for path in compliance.write(report, Path(args.out)):
        print(f"wrote {path}")
    return 0 if report.passed else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.commission.audit", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rederive", help="recompute every accrual, reversal and settlement from the source events and "
                       "compare with the published events and the live balances (exit 0 only when equal)")
    p.add_argument("--schema", help="the live commission schema (default: COMMISSION_SCHEMA or 'commission')")
    p.add_argument("--from", dest="from_", type=_instant, help="compare the lines of orders paid at or after (ISO 8601)")
    p.add_argument("--to", type=_instant, help="... and before this instant (ISO 8601); default: the whole log")
    p.add_argument("--into", help="the fresh schema the re-derivation is written to (default audit_<UTC time>)")
    p.add_argument("--no-store", action="store_true", help="do not write the re-derivation to a schema")
    p.add_argument("--clock-offset-s", type=float, default=None,
                   help="the live settlement clock's offset (default COMMISSION_CLOCK_OFFSET_S)")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="settlements due this shortly before the cut are compared only when made")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_rederive)

    p = sub.add_parser("as-of", help="one promoter's balance and commission records as of a past instant, from the log")
    p.add_argument("--promoter", required=True)
    p.add_argument("--at", type=_instant, required=True, help="the instant (ISO 8601; UTC when no offset)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_as_of)

    p = sub.add_parser("simulate", help="the cost of a draft plan over a past period of real events, per promoter, "
                       "product and tier, against the plans in force then")
    p.add_argument("--plan", required=True, help="the draft plan (JSON file, as for PUT /v1/admin/plan)")
    p.add_argument("--from", dest="from_", type=_instant, required=True)
    p.add_argument("--to", type=_instant, required=True)
    p.add_argument("--top", type=int, default=20, help="rows per dimension (largest differences first)")
    p.add_argument("--schema", help="the commission schema whose log origin to use (default COMMISSION_SCHEMA)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("compliance", help="levels, cap, backing payments, recruitment, refunds and team sizes for a "
                       "period: CSV + HTML (exit 0 only when every check passes)")
    p.add_argument("--from", dest="from_", type=_instant, help="orders paid (refunds made) at or after")
    p.add_argument("--to", type=_instant, help="... and before (teams: bindings in force at this instant)")
    p.add_argument("--out", default="compliance-report", help="directory for compliance.csv, teams.csv, compliance.html")
    p.add_argument("--top", type=int, default=10, help="teams listed by size and by depth")
    p.add_argument("--schema", help="the commission schema whose log origin to use (default COMMISSION_SCHEMA)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_compliance)

    args = ap.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
