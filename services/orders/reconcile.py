"""Daily reconciliation with WeChat Pay's bills.

For one bill date (a calendar day in Asia/Shanghai, WeChat's day): ask for the trade bill
(`GET /v3/bill/tradebill?bill_type=ALL&tar_type=GZIP`) and the fund-flow bill
(`GET /v3/bill/fundflowbill?account_type=BASIC&tar_type=GZIP`), download each `download_url`
(a signed GET whose answer is not signed), gunzip, check the SHA1 `hash_value`, parse, and
compare with orders' own records: payments and refunds missing from the bill, extra in the bill,
different amounts, money taken for a cancelled order, and fund-flow totals against the trade
bill. The result is stored in `reconciliations` (one row per date) and printed.

    python -m services.orders.reconcile --date 2026-12-01 [--schema orders] [--json]

exit 0: no differences; 1: differences (listed); 2: the bills could not be fetched or checked.
The service also runs it by itself each day at ORDERS_RECONCILE_AT (local time) for the
previous day; with several replicas the date's row is claimed by one of them."""
from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog

from services.orders.domain import reconcile as rec
from services.orders.store import orders as store
from services.orders.wechatpay.calls import PayCalls
from shared.wechatpay.client import Found, describe

log = structlog.get_logger(__name__)


class BillUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Report:
    bill_date: date
    status: str                      # matched / differences / failed
    summary: dict[str, Any]
    findings: tuple[rec.Finding, ...]


async def fetch_bill(calls: PayCalls, kind: str, bill_date: date) -> rec.Bill:
    res = await calls.bill(kind, bill_date.isoformat())
    if not isinstance(res, Found):
        raise BillUnavailable(f"{kind} bill {bill_date}: {describe(res)}")
    url, hash_type, hash_value = (res.data.get(k) for k in ("download_url", "hash_type", "hash_value"))
    if not isinstance(url, str) or hash_type != "SHA1" or not isinstance(hash_value, str):
        raise BillUnavailable(f"{kind} bill {bill_date}: unexpected answer {sorted(res.data)}")
    data = await calls.download(url)
    if not isinstance(data, bytes):
        raise BillUnavailable(f"{kind} bill {bill_date}: download {describe(data)}")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise BillUnavailable(f"{kind} bill {bill_date}: bad gzip ({exc})") from exc
    # hash_value is the SHA1 of the bill itself (before compression)
    if hashlib.sha1(data).hexdigest().lower() != hash_value.lower():
        raise BillUnavailable(f"{kind} bill {bill_date}: SHA1 does not match hash_value (corrupt or altered download)")
    try:
        return rec.parse_bill(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, rec.BillFormatError) as exc:
        raise BillUnavailable(f"{kind} bill {bill_date}: {exc}") from exc


def day_window(bill_date: date, tz: str) -> tuple[datetime, datetime]:
    start = datetime.combine(bill_date, dtime(0), ZoneInfo(tz))
    return start, start + timedelta(days=1)


async def reconcile_day(conn: asyncpg.Connection, calls: PayCalls, bill_date: date, *, tz: str = "Asia/Shanghai") -> Report:
    try:
        trade = await fetch_bill(calls, "trade", bill_date)
        fund = await fetch_bill(calls, "fund_flow", bill_date)
    except BillUnavailable as exc:
        log.error("reconciliation_failed", bill_date=str(bill_date), reason=str(exc))
        return Report(bill_date, "failed", {"error": str(exc)}, ())
    start, end = day_window(bill_date, tz)
    trade_nos, refund_nos = rec.trade_numbers(trade)
    day_pay = {r["out_trade_no"]: _payment(r) for r in await store.paid_between(conn, start, end)}
    known_pay = {no: _payment(r) for no, r in (await store.orders_by_trade_nos(conn, trade_nos)).items()}
    day_ref = {r["out_refund_no"]: rec.OurRefund(r["out_refund_no"], r["amount_fen"], "succeeded")
               for r in await store.refunds_succeeded_between(conn, start, end)}
    known_ref = {no: rec.OurRefund(no, r["amount_fen"], r["status"])
                 for no, r in (await store.refunds_by_nos(conn, refund_nos)).items()}
    findings = rec.compare_trade_bill(trade, day_payments=day_pay, known_payments=known_pay, day_refunds=day_ref,
                                      known_refunds=known_ref)
    findings += rec.compare_fund_flow(fund, trade_bill=trade)
    summary = rec.summarize(findings, (trade, fund))
    summary.update(our_payments=len(day_pay), our_refunds=len(day_ref))
    status = "differences" if findings else "matched"
    log.info("reconciled", bill_date=str(bill_date), status=status, **summary)
    for f in findings:
        log.warning("reconciliation_difference", bill_date=str(bill_date), **f.as_dict())
    return Report(bill_date, status, summary, tuple(findings))


def _payment(r) -> rec.OurPayment:
    """A cancelled order counts as paid-after-cancel only with a late payment on record."""
    status = r["status"]
    if status == "cancelled" and "late_transaction_id" in r.keys() and not r["late_transaction_id"]:
        status = "placed"
    return rec.OurPayment(r["out_trade_no"], r["total_fen"], r["transaction_id"], status)


async def run_and_store(pool: asyncpg.Pool, calls: PayCalls, bill_date: date, *, now: datetime,
                        tz: str = "Asia/Shanghai") -> Report:
    async with pool.acquire() as conn:
        report = await reconcile_day(conn, calls, bill_date, tz=tz)
        await store.finish_reconciliation(conn, bill_date, now, status=report.status, summary=report.summary,
                                          findings=[f.as_dict() for f in report.findings])
    return report


# -- the scheduled task ----------------------------------------------------------------------------
def due_bill_date(now: datetime, reconcile_at: str, tz: str) -> date | None:
    """The bill date to reconcile at `now`: yesterday (local), once the local time has passed
    `reconcile_at` (WeChat's bill for a day is ready from about 10:00 the next day)."""
    if not reconcile_at:
        return None
    hh, mm = (int(x) for x in reconcile_at.split(":"))
    local = now.astimezone(ZoneInfo(tz))
    if (local.hour, local.minute) < (hh, mm):
        return None
    return local.date() - timedelta(days=1)


async def reconcile_scheduler(rt) -> None:
    """A background task of the orders service: once a day, for the previous day."""
    settings = rt.settings
    while True:
        try:
            calls = rt.extras.get("pay_calls")
            now = rt.extras["clock"]()
            day = due_bill_date(now, settings.reconcile_at, settings.reconcile_timezone)
            if calls is not None and day is not None:
                async with rt.pool.acquire() as conn:
                    claimed = await store.claim_reconciliation(conn, day, now, retry_failed=True)
                if claimed:
                    await run_and_store(rt.pool, calls, day, now=now, tz=settings.reconcile_timezone)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile_scheduler_failed")
        await asyncio.sleep(getattr(settings, "reconcile_poll_s", 300.0))


# -- the command -----------------------------------------------------------------------------------
async def _main(args) -> int:
    import os

    from services.orders.main import build_calls
    from services.orders.settings import OrdersSettings
    from shared import db, telemetry

    settings = OrdersSettings()
    telemetry.configure("orders", settings.log_level, settings.log_json, "")
    if not settings.calls_configured:
        print("WeChat Pay calls are not configured (ORDERS_WECHATPAY_BASE_URL, _MERCHANT_SERIAL, _MERCHANT_KEY, "
              "_PLATFORM_KEYS)", file=sys.stderr)
        return 2
    schema = args.schema or os.environ.get("ORDERS_SCHEMA") or "orders"
    pool = await db.create_pool(settings.database_url, schema, min_size=1, max_size=2)
    calls = build_calls(settings)
    try:
        report = await run_and_store(pool, calls, date.fromisoformat(args.date), now=datetime.now().astimezone(),
                                     tz=settings.reconcile_timezone)
    finally:
        await calls.aclose()
        await pool.close()
    if args.json:
        print(json.dumps({"bill_date": str(report.bill_date), "status": report.status, "summary": report.summary,
                          "findings": [f.as_dict() for f in report.findings]}, ensure_ascii=False))
    else:
        print(f"{report.bill_date}: {report.status} {json.dumps(report.summary, ensure_ascii=False)}")
        for f in report.findings:
            print(f"  {f.kind:18} {f.subject:9} {f.key:32} ours={f.ours_fen} wechat={f.wechat_fen} {f.note}")
    return {"matched": 0, "differences": 1}.get(report.status, 2)


def cli() -> None:
    ap = argparse.ArgumentParser(prog="python -m services.orders.reconcile", description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, help="bill date YYYY-MM-DD (Asia/Shanghai)")
    ap.add_argument("--schema", default=None, help="orders' schema (default $ORDERS_SCHEMA or 'orders')")
    ap.add_argument("--json", action="store_true")
    sys.exit(asyncio.run(_main(ap.parse_args())))


if __name__ == "__main__":
    cli()
