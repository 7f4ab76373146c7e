"""What the API, the notify endpoint and the sweeper do to an order, each inside the caller's
transaction: lock the order row, ask the domain, write the state and the events (outbox)
together. The relay publishes after commit."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

import asyncpg

from services.orders.domain import events as ev
from services.orders.domain import rules
from services.orders.domain.errors import (
    InvalidRefundError, NoticeRejectedError, OrderConflictError, OrderNotFoundError, OrderStateError,
    RefundConflictError,
)
from services.orders.store import orders as store
from shared.contracts.orders import OrderPlaced, RefundedLine
from shared.outbox import record_events
from shared.topics import ORDER_EVENTS


@dataclass(frozen=True)
class Placed:
    order_id: str
    created: bool


def _placed_payload(row: Mapping[str, Any], lines) -> OrderPlaced:
    return ev.placed(row["order_id"], row["buyer_id"], lines, row["postage_fen"], row["total_fen"],
                     row["promoter_code"], row["placed_at"])


async def place_order(conn: asyncpg.Connection, draft: rules.OrderDraft, *, now: datetime,
                      unpaid_timeout_minutes: int) -> Placed:
    """Idempotent on out_trade_no: the same content returns the existing order, other content 409."""
    lines = rules.validate_order(draft)
    fingerprint = draft.fingerprint()
    existing = await store.get_order_by_trade_no(conn, draft.out_trade_no)
    if existing is None:
        order_id, placed_event_id = str(uuid.uuid4()), uuid.uuid4()
        if await store.insert_order(
            conn, order_id=order_id, out_trade_no=draft.out_trade_no, buyer_id=draft.buyer_id,
            promoter_code=draft.promoter_code, postage_fen=draft.postage_fen, total_fen=draft.total_fen,
            fingerprint=fingerprint, placed_at=now, placed_event_id=placed_event_id,
            due_at=rules.unpaid_deadline(now, unpaid_timeout_minutes), lines=lines,
        ):
            payload = ev.placed(order_id, draft.buyer_id, lines, draft.postage_fen, draft.total_fen,
                                draft.promoter_code, now)
            await record_events(conn, ORDER_EVENTS, [ev.envelope(payload, placed_event_id, now=now)])
            return Placed(order_id, True)
        # lost a race for this number: fall through to the comparison
        existing = await store.get_order_by_trade_no(conn, draft.out_trade_no)
    assert existing is not None
    if existing["fingerprint"] != fingerprint:
        raise OrderConflictError(f"out_trade_no {draft.out_trade_no} was used for another order")
    return Placed(existing["order_id"], False)


async def _load_locked(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    row = await store.get_order(conn, order_id, lock=True)
    if row is None:
        raise OrderNotFoundError(f"no order {order_id}")
    return row


async def confirm_receipt(conn: asyncpg.Connection, order_id: str, *, now: datetime) -> bool:
    """Paid -> completed(receipt_confirmed). True if it changed; repeating it changes nothing."""
    row = await _load_locked(conn, order_id)
    if row["status"] == "completed":
        return False
    if row["status"] != "paid":
        raise OrderStateError(f"receipt can only be confirmed on a paid order; this one is {row['status']}",
                              code="order_not_paid")
    await _complete(conn, row, "receipt_confirmed", now)
    return True


async def cancel_unpaid(conn: asyncpg.Connection, order_id: str, *, reason: str, now: datetime) -> bool:
    """Placed -> cancelled. True if it changed; an already cancelled order is left alone."""
    row = await _load_locked(conn, order_id)
    if row["status"] == "cancelled":
        return False
    if row["status"] != "placed":
        raise OrderStateError(f"only an unpaid order can be cancelled; this one is {row['status']}",
                              code="order_already_paid")
    await _cancel(conn, row, reason, now)
    return True


async def _complete(conn: asyncpg.Connection, row: Mapping[str, Any], reason: str, now: datetime) -> None:
    await store.mark_completed(conn, row["order_id"], reason=reason, at=now)
    await record_events(conn, ORDER_EVENTS, [ev.envelope(ev.completed(row["order_id"], reason, now),
                                                         row["placed_event_id"], ev.COMPLETED, now=now)])


async def _cancel(conn: asyncpg.Connection, row: Mapping[str, Any], reason: str, now: datetime) -> None:
    await store.mark_cancelled(conn, row["order_id"], reason=reason, at=now)
    await record_events(conn, ORDER_EVENTS, [ev.envelope(ev.cancelled(row["order_id"], reason, now),
                                                         row["placed_event_id"], ev.CANCELLED, now=now)])


@dataclass(frozen=True)
class Swept:
    moved: int
    #: unpaid orders to close at WeChat, query, then settle (WeChat calls configured)
    to_close: tuple[asyncpg.Record, ...] = ()

    @property
    def taken(self) -> int:
        return self.moved + len(self.to_close)


async def sweep_due(conn: asyncpg.Connection, *, now: datetime, limit: int,
                    close_lease_until: datetime | None = None) -> Swept:
    """Complete the paid orders whose after-sale window closed and cancel the unpaid ones whose
    time ran out. With `close_lease_until` (WeChat calls configured), an unpaid order is not
    cancelled here: it is leased (due_at moved to the lease end) and returned, for the caller to
    close it at WeChat and query before deciding (its prepay may have been made anywhere)."""
    rows = await store.lock_due(conn, now, limit)
    moved, to_close = 0, []
    for row in rows:
        if row["status"] == "placed":
            if close_lease_until is not None:
                await store.bump_due(conn, row["order_id"], close_lease_until)
                to_close.append(row)
                continue
            await _cancel(conn, row, "unpaid_timeout", now)
        else:
            await _complete(conn, row, "after_sale_window_closed", now)
        moved += 1
    return Swept(moved, tuple(to_close))


async def cancel_after_close(conn: asyncpg.Connection, order_id: str, *, reason: str, now: datetime) -> bool:
    """Cancel an unpaid order once WeChat confirmed (by a query after the close) that it can no
    longer be paid. False if it is no longer placed (a notice got there first)."""
    row = await _load_locked(conn, order_id)
    if row["status"] != "placed":
        return False
    await _cancel(conn, row, reason, now)
    return True


# -- refunds -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefundRequested:
    out_refund_no: str
    created: bool


async def request_refund(conn: asyncpg.Connection, order_id: str, *, out_refund_no: str,
                         lines: Sequence[RefundedLine], reason: str | None, requested_by: str,
                         now: datetime) -> RefundRequested:
    """Store a pending refund if it fits what remains refundable on each line. The order row
    lock serializes concurrent requests, so two cannot both take the last fen."""
    if not rules.OUT_REFUND_NO_RE.match(out_refund_no or ""):
        raise InvalidRefundError("out_refund_no must be 1-64 of [0-9A-Za-z_-|*@]", code="bad_out_refund_no")
    row = await _load_locked(conn, order_id)
    fingerprint = rules.refund_fingerprint(order_id, lines)
    existing = await store.get_refund(conn, out_refund_no)
    if existing is not None:
        if existing["fingerprint"] != fingerprint:
            raise RefundConflictError(f"out_refund_no {out_refund_no} was used for another refund")
        return RefundRequested(out_refund_no, False)
    order_lines = await store.get_lines(conn, order_id)
    held = await store.held_refund_lines(conn, order_id, rules.HOLDING_REFUND_STATUSES)
    accepted = rules.check_refund(row["status"], order_lines, held, lines)
    if not await store.insert_refund(conn, out_refund_no=out_refund_no, order_id=order_id,
                                     amount_fen=sum(ln.amount_fen for ln in accepted), fingerprint=fingerprint,
                                     reason=reason, requested_by=requested_by, requested_at=now, lines=accepted):
        # the same number used concurrently on another order (this order is locked by us)
        raise RefundConflictError(f"out_refund_no {out_refund_no} was used for another refund")
    return RefundRequested(out_refund_no, True)


# -- WeChat Pay notices ------------------------------------------------------------------------
@dataclass(frozen=True)
class NoticeResult:
    outcome: str
    out_trade_no: str | None = None
    out_refund_no: str | None = None


async def apply_payment_notice(conn: asyncpg.Connection, notice_id: str, resource: Mapping[str, Any], *,
                               merchant: rules.Merchant, now: datetime, auto_complete_days: int) -> NoticeResult:
    """A verified TRANSACTION.SUCCESS: OrderPaid exactly once per order. The notification id
    is claimed first (unique key), then the order row is locked."""
    out_trade_no = resource.get("out_trade_no")
    if not isinstance(out_trade_no, str):
        raise NoticeRejectedError("out_trade_no missing", code="no_out_trade_no", status=400)
    if not await store.claim_notice(conn, notice_id, "payment"):
        return NoticeResult("duplicate_notice", out_trade_no)
    return await settle_payment(conn, out_trade_no, resource, merchant=merchant, now=now,
                                auto_complete_days=auto_complete_days)


async def settle_payment(conn: asyncpg.Connection, out_trade_no: str, resource: Mapping[str, Any], *,
                         merchant: rules.Merchant, now: datetime, auto_complete_days: int) -> NoticeResult:
    """A SUCCESS transaction, from a verified notice or from a verified query answer (a lost
    notice recovered, a payment that raced a close): judged and applied the same way, under
    the order row lock, so OrderPaid happens once whichever comes first."""
    row = await store.get_order_by_trade_no(conn, out_trade_no, lock=True)
    if row is None:
        raise NoticeRejectedError(f"no order with out_trade_no {out_trade_no}", code="unknown_order", status=404)
    facts = rules.OrderFacts(row["order_id"], out_trade_no, row["status"], row["total_fen"], row["transaction_id"])
    outcome = rules.judge_payment(facts, resource, merchant)
    transaction_id = resource["transaction_id"]
    if outcome == "paid":
        paid_at = rules.parse_wechat_time(resource.get("success_time"), now)
        await store.mark_paid(conn, row["order_id"], transaction_id=transaction_id, paid_at=paid_at,
                              due_at=rules.completion_deadline(paid_at, auto_complete_days))
        placed = _placed_payload(row, await store.get_lines(conn, row["order_id"]))
        await record_events(conn, ORDER_EVENTS, [ev.envelope(ev.paid(placed, transaction_id, paid_at),
                                                             row["placed_event_id"], ev.PAID, now=now)])
    elif outcome == "paid_after_cancel":
        await store.mark_late_payment(conn, row["order_id"], transaction_id)
    return NoticeResult(outcome, out_trade_no)


async def apply_refund_notice(conn: asyncpg.Connection, notice_id: str, resource: Mapping[str, Any], *,
                              merchant: rules.Merchant, now: datetime) -> NoticeResult:
    """A verified REFUND.*: SUCCESS confirms the pending refund (OrderRefunded, once per
    out_refund_no); ABNORMAL is recorded and stays open; CLOSED releases what it held."""
    out_refund_no = resource.get("out_refund_no")
    if not isinstance(out_refund_no, str):
        raise NoticeRejectedError("out_refund_no missing", code="no_out_refund_no", status=400)
    out_trade_no = resource.get("out_trade_no") if isinstance(resource.get("out_trade_no"), str) else None
    if not await store.claim_notice(conn, notice_id, "refund"):
        return NoticeResult("duplicate_notice", out_trade_no, out_refund_no)
    return await settle_refund(conn, out_refund_no, resource, merchant=merchant, now=now)


async def settle_refund(conn: asyncpg.Connection, out_refund_no: str, resource: Mapping[str, Any], *,
                        merchant: rules.Merchant, now: datetime) -> NoticeResult:
    """A final or ABNORMAL refund status, from a verified notice or a verified query/submit
    answer: judged and applied the same way (OrderRefunded once per out_refund_no)."""
    out_trade_no = resource.get("out_trade_no") if isinstance(resource.get("out_trade_no"), str) else None
    pending = await store.get_refund(conn, out_refund_no)
    if pending is None:
        # A refund made outside this service (e.g. the merchant console): an operator registers
        # it with its lines through the API, and WeChat's next retry confirms it.
        raise NoticeRejectedError(f"no refund requested with out_refund_no {out_refund_no}", code="unknown_refund",
                                  status=404)
    order = await _load_locked(conn, pending["order_id"])  # order first, then refund: one lock order everywhere
    refund = await store.get_refund(conn, out_refund_no, lock=True)
    assert refund is not None
    facts = rules.RefundFacts(out_refund_no, order["order_id"], order["out_trade_no"], refund["status"],
                              refund["amount_fen"], order["total_fen"])
    outcome = rules.judge_refund(facts, resource, merchant)
    if outcome == "duplicate":
        return NoticeResult("duplicate", order["out_trade_no"], out_refund_no)
    refund_id = resource.get("refund_id") if isinstance(resource.get("refund_id"), str) else None
    at = rules.parse_wechat_time(resource.get("success_time"), now) if outcome == "succeeded" else now
    await store.set_refund_status(conn, out_refund_no, status=outcome, refund_id=refund_id, at=at,
                                  final=outcome in ("succeeded", "closed"))
    if outcome in ("succeeded", "closed"):
        await store.update_refund_follow(conn, out_refund_no, next_check_at=None,
                                         wechat_status=str(resource.get("refund_status")))
    if outcome == "succeeded":
        lines = await store.get_refund_lines(conn, out_refund_no)
        await record_events(conn, ORDER_EVENTS, [ev.envelope(ev.refunded(order["order_id"], out_refund_no, lines, at),
                                                             order["placed_event_id"], ev.REFUNDED, out_refund_no,
                                                             now=now)])
    return NoticeResult(f"refund_{outcome}", order["out_trade_no"], out_refund_no)
