"""What orders does with WeChat Pay beyond receiving notices:

- **prepay**: the JSAPI order and the `wx.requestPayment` parameters, idempotent per order;
- **close**: at the unpaid timeout or on cancellation, close at WeChat, then QUERY: only the
  query decides (a payment that raced the close makes the order paid, not cancelled);
- **payment recovery**: an order with a prepay and no notice is queried and a SUCCESS is
  settled exactly as the notice would settle it (`commands.settle_payment`);
- **refund submission**: pending refunds go to WeChat with their stable out_refund_no; an
  unknown outcome is settled by a query, never by another submission while WeChat may
  have the refund; PROCESSING / ABNORMAL refunds are queried until final.

Network calls happen outside database transactions; rows are leased first (FOR UPDATE SKIP
LOCKED, then a lease time in the row), so several replicas share the work without taking the
same order or refund at once."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Literal

import asyncpg
import structlog

from services.orders import commands
from services.orders.clock import Clock
from services.orders.domain import wechatpay as wx
from services.orders.domain.errors import (
    NoticeRejectedError, OrderNotFoundError, OrderStateError, PayerUnknownError, WeChatPayRefusedError,
    WeChatPayUnavailableError,
)
from services.orders.domain.rules import Merchant
from services.orders.settings import OrdersSettings
from services.orders.store import orders as store
from services.orders.wechatpay.calls import PayCalls
from shared.wechatpay.client import Found, NotFound, Refused, Unknown, describe

log = structlog.get_logger(__name__)

CloseOutcome = Literal["paid", "cancelled", "retry", "not_placed"]


class PayFollower:
    def __init__(self, pool: asyncpg.Pool, calls: PayCalls, *, settings: OrdersSettings, merchant: Merchant,
                 clock: Clock, kick: Callable[[], None]) -> None:
        self.pool, self.calls, self.settings, self.merchant = pool, calls, settings, merchant
        self.clock, self.kick = clock, kick
        self.lease = timedelta(seconds=settings.wechatpay_lease_s)
        self.batch = 50
        self._parallel = asyncio.Semaphore(8)

    @asynccontextmanager
    async def _conn(self, conn: asyncpg.Connection | None):
        """The caller's connection (an API request already holds one: taking a second from the
        pool under load would starve it), or one from the pool. Never inside a transaction
        across a network call."""
        if conn is not None:
            yield conn
        else:
            async with self.pool.acquire() as own:
                yield own

    async def watch(self, conn: asyncpg.Connection, order_id: str) -> None:
        """A newly placed order: if no notice has come after ORDERS_PAYMENT_QUERY_AFTER_S, query it
        (recovery), whether or not the prepay went through this service."""
        await conn.execute(
            "UPDATE orders SET next_query_at = $2 WHERE order_id = $1 AND next_query_at IS NULL AND status = 'placed'",
            order_id, self.clock() + timedelta(seconds=self.settings.payment_query_after_s))

    # -- prepay ----------------------------------------------------------------------------------
    async def prepay(self, order_id: str, *, buyer_id: str, openid: str | None,
                     conn: asyncpg.Connection | None = None) -> wx.PaymentParams:
        """The wx.requestPayment parameters for an unpaid order of `buyer_id`."""
        s, now = self.settings, self.clock()
        async with self._conn(conn) as c:
            return await self._prepay(c, order_id, buyer_id=buyer_id, openid=openid, now=now)

    async def _prepay(self, conn: asyncpg.Connection, order_id: str, *, buyer_id: str, openid: str | None,
                      now: datetime) -> wx.PaymentParams:
        s = self.settings
        async with conn.transaction():
            row = await store.get_order(conn, order_id, lock=True)
            if row is None or row["buyer_id"] != buyer_id:
                raise OrderNotFoundError(f"no order {order_id}")
            _payable(row, now)
            if wx.prepay_reusable(row["prepay_id"], row["prepay_expires_at"], now) and \
                    (openid is None or openid == row["payer_openid"]):
                return wx.payment_params(s.wechatpay_appid, row["prepay_id"], self.calls.sign, now=now)
            openid = openid or row["payer_openid"]
            if not openid:
                raise PayerUnknownError("the gateway identity carries no openid for this buyer")
            # Recorded BEFORE the call: from now on WeChat may know the order, so a timeout closes it.
            await store.update_order_follow(
                conn, order_id, payer_openid=openid, prepay_requested_at=row["prepay_requested_at"] or now,
                next_query_at=row["next_query_at"] or now + timedelta(seconds=s.payment_query_after_s))
            pay_before = row["due_at"]
            body = wx.jsapi_order(appid=s.wechatpay_appid, mchid=s.wechatpay_mchid, description=s.wechatpay_description,
                                  out_trade_no=row["out_trade_no"], order_id=order_id, total_fen=row["total_fen"],
                                  openid=openid, notify_url=s.wechatpay_notify_url, pay_before=pay_before)
        res = await self.calls.jsapi(body)
        if isinstance(res, Found) and isinstance(res.data.get("prepay_id"), str):
            prepay_id = res.data["prepay_id"]
            await store.update_order_follow(conn, order_id, prepay_id=prepay_id,
                                            prepay_expires_at=wx.prepay_expiry(now, pay_before))
            log.info("prepay_created", order_id=order_id, out_trade_no=body["out_trade_no"])
            return wx.payment_params(s.wechatpay_appid, prepay_id, self.calls.sign, now=now)
        log.warning("prepay_failed", order_id=order_id, result=describe(res))
        if isinstance(res, Refused) and res.code == "ORDERPAID":
            await store.update_order_follow(conn, order_id, next_query_at=now)
            raise OrderStateError("WeChat says this order is already paid", code="order_already_paid")
        if isinstance(res, Refused) and res.code == "ORDER_CLOSED":
            raise OrderStateError("WeChat has closed this order", code="order_closed")
        if isinstance(res, Refused):
            raise WeChatPayRefusedError(f"{res.code}: {res.message}")
        raise WeChatPayUnavailableError(f"prepay: {describe(res)}; the same request may be repeated")

    # -- close -----------------------------------------------------------------------------------
    async def close_then_settle(self, order_id: str, out_trade_no: str, *, reason: str,
                                conn: asyncpg.Connection | None = None) -> CloseOutcome:
        """Close at WeChat, query, then decide under the order lock: SUCCESS -> paid
        (OrderPaid); CLOSED / never known to WeChat -> cancelled(reason); otherwise retry."""
        closed = await self.calls.close(out_trade_no)
        if not isinstance(closed, Found):
            log.info("close_answer", out_trade_no=out_trade_no, result=describe(closed))  # decides nothing
        res = await self.calls.query_trade(out_trade_no)
        now = self.clock()
        async with self._conn(conn) as c:
            outcome = await self._settle_after_close(c, order_id, out_trade_no, res, reason=reason, now=now)
        if outcome in ("paid", "cancelled"):
            self.kick()  # after the commit: the relay publishes what the transaction wrote
        return outcome

    async def _settle_after_close(self, conn: asyncpg.Connection, order_id: str, out_trade_no: str, res,
                                  *, reason: str, now: datetime) -> CloseOutcome:
        async with conn.transaction():
            row = await store.get_order(conn, order_id, lock=True)
            if row is None or row["status"] != "placed":
                return "not_placed"
            if isinstance(res, Found):
                state = res.data.get("trade_state")
                if state == "SUCCESS":
                    return await self._settle_paid(conn, order_id, out_trade_no, res.data, now, source="close_query")
                if state in wx.TRADE_STATES_GONE:
                    await commands.cancel_after_close(conn, order_id, reason=reason, now=now)
                    return "cancelled"
                why = f"trade_state {state} after close"
            elif isinstance(res, NotFound):
                # WeChat never got the order (the prepay call never arrived): nothing can be paid
                await commands.cancel_after_close(conn, order_id, reason=reason, now=now)
                return "cancelled"
            else:
                why = describe(res)
            await store.update_order_follow(conn, order_id, wechat_last_error=why[:500])
        log.warning("close_not_settled", out_trade_no=out_trade_no, reason=why)
        return "retry"

    async def _settle_paid(self, conn: asyncpg.Connection, order_id: str, out_trade_no: str, resource: dict[str, Any],
                           now: datetime, *, source: str) -> CloseOutcome:
        try:
            result = await commands.settle_payment(conn, out_trade_no, resource, merchant=self.merchant, now=now,
                                                   auto_complete_days=self.settings.auto_complete_days)
        except NoticeRejectedError as exc:
            # WeChat's record contradicts ours (amount, merchant): never a payment, never a cancel
            log.error("queried_payment_rejected", out_trade_no=out_trade_no, code=exc.code, reason=str(exc))
            await store.update_order_follow(conn, order_id, wechat_last_error=f"{exc.code}: {exc}"[:500],
                                            next_query_at=now + timedelta(seconds=self.settings.query_max_interval_s))
            return "retry"
        log.info("payment_settled_by_query", out_trade_no=out_trade_no, outcome=result.outcome, source=source)
        return "paid" if result.outcome in ("paid", "duplicate") else "not_placed"

    async def cancel(self, order_id: str, *, reason: str, conn: asyncpg.Connection | None = None) -> CloseOutcome:
        """A buyer's or operator's cancellation of an order WeChat may know."""
        async with self._conn(conn) as c:
            row = await store.get_order(c, order_id)
            if row is None:
                raise OrderNotFoundError(f"no order {order_id}")
            return await self.close_then_settle(order_id, row["out_trade_no"], reason=reason, conn=c)

    async def close_due(self, rows) -> None:
        """Orders the sweeper leased at their unpaid timeout."""
        await asyncio.gather(*(self._guarded(self.close_then_settle(r["order_id"], r["out_trade_no"],
                                                                    reason="unpaid_timeout")) for r in rows))

    # -- payment recovery ------------------------------------------------------------------------
    async def recover_payments_once(self) -> int:
        now = self.clock()
        async with self.pool.acquire() as conn:
            due = await store.claim_query_due(conn, now, now + self.lease, self.batch)
        await asyncio.gather(*(self._guarded(self._recover(r)) for r in due))
        return len(due)

    async def _recover(self, r: asyncpg.Record) -> None:
        if await self._recover_in_tx(r):
            self.kick()

    async def _recover_in_tx(self, r: asyncpg.Record) -> bool:
        res = await self.calls.query_trade(r["out_trade_no"])
        now = self.clock()
        settled = False
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.get_order(conn, r["order_id"], lock=True)
            if row is None or row["status"] != "placed":
                return False
            if isinstance(res, Found) and res.data.get("trade_state") == "SUCCESS":
                if await self._settle_paid(conn, r["order_id"], r["out_trade_no"], res.data, now,
                                           source="recovery") == "paid":
                    settled = True
            if settled:
                return True
            checks = row["query_checks"] + 1
            wait = wx.next_delay(checks, self.settings.payment_query_after_s, self.settings.query_max_interval_s)
            fields: dict[str, Any] = {"query_checks": checks, "next_query_at": now + wait}
            if not isinstance(res, Found):
                fields["wechat_last_error"] = describe(res)[:500]
            await store.update_order_follow(conn, r["order_id"], **fields)
        return False

    # -- refunds ---------------------------------------------------------------------------------
    async def submit_refunds_once(self) -> int:
        now = self.clock()
        async with self.pool.acquire() as conn:
            due = await store.claim_due_refunds(conn, now, now + self.lease, self.batch)
        await asyncio.gather(*(self._guarded(self._advance_refund(r)) for r in due))
        return len(due)

    async def _advance_refund(self, r: asyncpg.Record) -> None:
        no = r["out_refund_no"]
        if r["status"] == "pending" and r["submit_state"] is None:
            if await self._mark_sending(no):
                await self._submit(r)
            return
        # sent before (outcome maybe unknown), PROCESSING, or ABNORMAL: ask WeChat, never resend blindly
        res = await self.calls.query_refund(no)
        if isinstance(res, Found):
            await self._apply_refund_answer(r, res.data)
        elif isinstance(res, NotFound) and r["submit_state"] == "sending" and r["status"] == "pending":
            # WeChat has no refund with this number: the earlier submission never arrived. Sending the
            # very same request again cannot refund twice (out_refund_no is idempotent at WeChat).
            log.warning("refund_not_found_after_unknown_submission", out_refund_no=no)
            await self._submit(r)
        else:
            await self._reschedule(r, error=describe(res))

    async def _mark_sending(self, no: str) -> bool:
        """Record the intent before the call: after a crash mid-call the next pass queries first."""
        async with self.pool.acquire() as conn:
            return (await conn.execute(
                "UPDATE refunds SET submit_state = 'sending' WHERE out_refund_no = $1 AND submit_state IS NULL "
                "AND status = 'pending'", no)).endswith(" 1")

    async def _submit(self, r: asyncpg.Record) -> None:
        no = r["out_refund_no"]
        async with self.pool.acquire() as conn:
            lines = await store.get_refund_lines(conn, no)
            order_lines = await store.get_lines(conn, r["order_id"])
            await conn.execute("UPDATE refunds SET submissions = submissions + 1 WHERE out_refund_no = $1", no)
        body = wx.refund_request(out_trade_no=r["out_trade_no"], out_refund_no=no, reason=r["reason"],
                                 notify_url=self.settings.wechatpay_notify_url, refund_fen=r["amount_fen"],
                                 total_fen=r["total_fen"], lines=lines, order_lines=order_lines)
        res = await self.calls.submit_refund(body)
        if isinstance(res, Found):
            await self._apply_refund_answer(r, res.data)
        elif isinstance(res, Refused):
            # a definite refusal: WeChat holds no refund; it will not move money, so it releases its share
            log.error("refund_refused", out_refund_no=no, code=res.code, message=res.message)
            now = self.clock()
            async with self.pool.acquire() as conn, conn.transaction():
                await store.update_refund_follow(conn, no, submit_state="refused", next_check_at=None,
                                                 last_error=describe(res)[:500])
                await store.set_refund_status(conn, no, status="closed", refund_id=None, at=now, final=True)
        else:
            log.warning("refund_submission_unknown", out_refund_no=no, result=describe(res))
            await self._reschedule(r, error=describe(res), first_s=min(5.0, self.settings.refund_query_after_s))

    async def _apply_refund_answer(self, r: asyncpg.Record, answer: dict[str, Any]) -> None:
        no, status, now = r["out_refund_no"], wx.refund_status_of(answer), self.clock()
        if answer.get("out_refund_no") not in (None, no):
            log.error("refund_number_mismatch", expected=no, got=answer.get("out_refund_no"))
            await self._reschedule(r, error="answer for another out_refund_no")
            return
        async with self.pool.acquire() as conn, conn.transaction():
            order = await store.get_order(conn, r["order_id"], lock=True)  # order first, then refund: one lock order
            cur = await store.get_refund(conn, no, lock=True)
            if order is None or cur is None or cur["status"] in ("succeeded", "closed"):
                # a notice settled it while the answer was on its way: keep WeChat's final word
                await store.update_refund_follow(conn, no, submit_state="submitted")
                return
            await store.update_refund_follow(conn, no, submit_state="submitted", wechat_status=status)
            if status in ("SUCCESS", "CLOSED", "ABNORMAL"):
                try:
                    result = await commands.settle_refund(conn, no, wx.as_refund_resource(answer, self.merchant.mchid),
                                                          merchant=self.merchant, now=now)
                    log.info("refund_settled_by_answer", out_refund_no=no, outcome=result.outcome)
                except NoticeRejectedError as exc:
                    log.error("refund_answer_rejected", out_refund_no=no, code=exc.code, reason=str(exc))
                    status = None
        if status in ("SUCCESS", "CLOSED"):
            self.kick()
            return
        await self._reschedule(r, error=None if status else "unreadable refund answer")

    async def _reschedule(self, r: asyncpg.Record, *, error: str | None, first_s: float | None = None) -> None:
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            cur = await store.get_refund(conn, r["out_refund_no"], lock=True)
            if cur is None or cur["status"] not in ("pending", "abnormal"):
                return
            wait = wx.next_delay(cur["checks"], first_s or self.settings.refund_query_after_s,
                                 self.settings.query_max_interval_s)
            fields: dict[str, Any] = {"checks": cur["checks"] + 1, "next_check_at": now + wait}
            if error:
                fields["last_error"] = error[:500]
            await store.update_refund_follow(conn, r["out_refund_no"], **fields)

    # -- loops -----------------------------------------------------------------------------------
    async def _guarded(self, coro) -> Any:
        async with self._parallel:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wechatpay_follow_failed")  # the lease lapses; it is tried again

    async def run(self) -> None:
        interval = self.settings.wechatpay_follow_interval_s
        while True:
            try:
                while await self.submit_refunds_once() >= self.batch:
                    pass
                while await self.recover_payments_once() >= self.batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wechatpay_follow_loop_failed")
            await asyncio.sleep(interval)


def _payable(row, now: datetime) -> None:
    if row["status"] in ("paid", "completed"):
        raise OrderStateError("this order is already paid", code="order_already_paid")
    if row["status"] == "cancelled":
        raise OrderStateError("this order is cancelled", code="order_cancelled")
    if row["due_at"] is None or row["due_at"] <= now:
        raise OrderStateError("the time to pay this order has run out", code="order_expired")
