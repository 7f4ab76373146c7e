"""The background follower: creates the bills of approved withdrawals and follows open bills
until they are final.

The one rule that keeps money safe: a bill number, once sent, is never replaced. After an
unknown outcome (timeout, 5xx, unverifiable answer, a crash mid-call) the bill is QUERIED
before anything else; if WeChat has it, it is followed; if not, the create is retried with
the SAME out_bill_no and body (WeChat returns the existing bill for a repeat). A withdrawal's
money returns only on a final FAIL/CANCELLED, or when WeChat refused the create outright and
a query confirms no bill exists."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import structlog

from services.payout import service_layer as sl
from services.payout.domain import withdrawal as rules
from services.payout.store import withdrawals as wd
from services.payout.transfer.client import BillFound, BillNotFound, CallResult, Refused, TransferClient, Unknown

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class TransferFollower:
    def __init__(self, pool: asyncpg.Pool, client: TransferClient, *, terms: rules.TransferTerms, mchid: str,
                 timing: sl.Timing, interval_s: float, lease_s: float, batch: int = 50, parallel: int = 8) -> None:
        self.pool, self.client, self.terms, self.mchid, self.timing = pool, client, terms, mchid, timing
        self.interval_s, self.lease_s, self.batch = interval_s, lease_s, batch
        self._parallel = asyncio.Semaphore(parallel)
        self._wake = asyncio.Event()

    def kick(self) -> None:
        """Look for due bills now (a withdrawal was just approved)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.tick() >= self.batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("transfer_follower_failed")
                await asyncio.sleep(min(self.interval_s, 1.0))

    async def tick(self) -> int:
        """Advance every due withdrawal once; returns how many were due."""
        now = _now()
        async with self.pool.acquire() as conn:
            due = await wd.claim_due(conn, now, now + timedelta(seconds=self.lease_s), self.batch)
        await asyncio.gather(*(self._guarded(w) for w in due))
        return len(due)

    async def _guarded(self, w: asyncpg.Record) -> None:
        async with self._parallel:
            try:
                await self.advance(w)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("transfer_advance_failed", withdrawal_id=str(w["withdrawal_id"]))
                # the lease lapses and the withdrawal is tried again; nothing was decided

    # -- one withdrawal ----------------------------------------------------------------------
    async def advance(self, w: asyncpg.Record) -> None:
        w_id, bill_no = w["withdrawal_id"], w["out_bill_no"]
        if w["status"] == "approved" and w["bill_state"] is None:
            if await self._mark_sending(w_id, bill_no):
                await self._create(w)
            return
        # transferring, or a create whose outcome is unknown/refused: query before anything else
        res = await self.client.query(bill_no)
        await self._record(w_id, bill_no, "query", res)
        if isinstance(res, BillFound):
            await self._apply(res.bill, bill_no)
        elif isinstance(res, BillNotFound) and w["status"] == "approved":
            if w["bill_state"] == rules.REFUSED:
                async with self.pool.acquire() as conn:
                    await sl.release_refused(conn, w_id, bill_no, now=_now())
            else:  # sent, never arrived: send the very same bill again
                await self._create(w)
        elif isinstance(res, BillNotFound):
            log.error("transfer_bill_vanished", withdrawal_id=str(w_id), out_bill_no=bill_no)
            await self._reschedule(w, error="bill not found while transferring", delay=self.timing.retry_max_s)
        else:
            await self._reschedule(w, error=_describe(res))

    async def _create(self, w: asyncpg.Record) -> None:
        w_id, bill_no = w["withdrawal_id"], w["out_bill_no"]
        body = rules.transfer_body(self.terms, bill_no=bill_no, openid=w["openid"], net_fen=w["net_fen"],
                                   user_name_cipher=w["user_name_cipher"])
        res = await self.client.create(body, name_serial=w["user_name_serial"])
        await self._record(w_id, bill_no, "create", res)
        if isinstance(res, BillFound):
            bill = {"out_bill_no": bill_no, **res.bill}
            await self._apply(bill, bill_no)
        elif isinstance(res, (Refused, BillNotFound)):
            log.warning("transfer_create_refused", withdrawal_id=str(w_id), out_bill_no=bill_no, result=_describe(res))
            await self._reschedule(w, error=_describe(res), bill_state=rules.REFUSED)
        else:
            log.warning("transfer_create_unknown", withdrawal_id=str(w_id), out_bill_no=bill_no, result=_describe(res))
            await self._reschedule(w, error=_describe(res))

    async def _apply(self, bill: dict[str, Any], bill_no: str) -> None:
        if str(bill.get("out_bill_no") or "") != bill_no:
            log.error("transfer_bill_number_mismatch", expected=bill_no, got=bill.get("out_bill_no"))
            return
        async with self.pool.acquire() as conn:
            await sl.apply_bill(conn, bill, mchid=self.mchid, timing=self.timing, now=_now())

    async def _mark_sending(self, w_id: uuid.UUID, bill_no: str) -> bool:
        """Record the intent before the call: if we crash mid-call, the next pass queries first."""
        async with self.pool.acquire() as conn, conn.transaction():
            w = await wd.lock(conn, w_id)
            if w is None or w["status"] != "approved" or w["bill_state"] is not None or w["out_bill_no"] != bill_no:
                return False
            await wd.update(conn, w_id, bill_state=rules.SENDING)
            return True

    async def _reschedule(self, w: asyncpg.Record, *, error: str, bill_state: str | None = None,
                          delay: float | None = None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            cur = await wd.lock(conn, w["withdrawal_id"])
            if cur is None or cur["status"] in rules.FINAL_STATUSES or cur["out_bill_no"] != w["out_bill_no"]:
                return
            checks = cur["checks"] + 1
            wait = delay if delay is not None else rules.next_check_delay(cur["checks"], self.timing.retry_base_s,
                                                                          self.timing.retry_max_s)
            fields: dict[str, Any] = {"checks": checks, "last_error": error[:500], "lease_until": None,
                                      "next_check_at": _now() + timedelta(seconds=wait)}
            if bill_state is not None and cur["status"] == "approved":
                fields["bill_state"] = bill_state
            await wd.update(conn, w["withdrawal_id"], **fields)

    async def _record(self, w_id: uuid.UUID, bill_no: str, operation: str, res: CallResult) -> None:
        result, status, code, state = "unknown", None, None, None
        if isinstance(res, BillFound):
            result, status, state = "found", res.http_status, res.bill.get("state")
        elif isinstance(res, BillNotFound):
            result, status = "not_found", res.http_status
        elif isinstance(res, Refused):
            result, status, code = "refused", res.http_status, res.code
        elif isinstance(res, Unknown):
            status, code = res.http_status, res.code
        async with self.pool.acquire() as conn:
            await wd.record_call(conn, withdrawal_id=w_id, out_bill_no=bill_no, operation=operation, result=result,
                                 http_status=status, code=code, state=state)


def _describe(res: CallResult) -> str:
    if isinstance(res, Refused):
        return f"refused {res.http_status} {res.code}: {res.message}"
    if isinstance(res, Unknown):
        return f"unknown outcome: {res.reason}"
    if isinstance(res, BillNotFound):
        return "not found"
    return "found"
