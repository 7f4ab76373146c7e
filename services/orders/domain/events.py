"""The events an order's life produces, with deterministic ids: every event after
OrderPlaced derives its id from the OrderPlaced event id, so doing the same thing twice
(a retried notice, a crashed sweep) yields the same id and consumers drop the repeat."""
from __future__ import annotations

import uuid
from datetime import datetime

from shared.contracts.orders import (
    OrderCancelled, OrderCompleted, OrderLine, OrderPaid, OrderPlaced, OrderRefunded, RefundedLine,
)
from shared.events import Envelope, EventPayload, derive_event_id, new_event


def envelope(payload: EventPayload, placed_event_id: uuid.UUID, *parts: object, now: datetime) -> Envelope:
    """Wrap an order event; its correlation id is the order's OrderPlaced id."""
    eid = placed_event_id if not parts else derive_event_id(placed_event_id, *parts)
    return new_event(payload, event_id=eid, occurred_at=now, correlation_id=placed_event_id)


def placed(order_id: str, buyer_id: str, lines: tuple[OrderLine, ...], postage_fen: int, total_fen: int,
           promoter_code: str | None, placed_at: datetime) -> OrderPlaced:
    return OrderPlaced(order_id=order_id, buyer_id=buyer_id, lines=lines, postage_fen=postage_fen, total_fen=total_fen,
                       promoter_code=promoter_code, placed_at=placed_at)


def paid(order: OrderPlaced, transaction_id: str, success_time: datetime) -> OrderPaid:
    """`paid_at` is the payment instant commission fixes the referral chain at. WeChat's
    `success_time` has whole-second precision, so it can read earlier than the order itself
    (and than a binding made in the same second, just before the order): the payment cannot
    have happened before the order was placed, so the later of the two is the instant."""
    paid_at = max(success_time, order.placed_at)
    return OrderPaid(order_id=order.order_id, buyer_id=order.buyer_id, lines=order.lines, postage_fen=order.postage_fen,
                     total_fen=order.total_fen, promoter_code=order.promoter_code, transaction_id=transaction_id,
                     paid_at=paid_at)


def refunded(order_id: str, out_refund_no: str, lines: tuple[RefundedLine, ...], refunded_at: datetime) -> OrderRefunded:
    return OrderRefunded(order_id=order_id, out_refund_no=out_refund_no, lines=lines,
                         amount_fen=sum(ln.amount_fen for ln in lines), refunded_at=refunded_at)


def completed(order_id: str, reason: str, at: datetime) -> OrderCompleted:
    return OrderCompleted(order_id=order_id, reason=reason, completed_at=at)  # type: ignore[arg-type]


def cancelled(order_id: str, reason: str, at: datetime) -> OrderCancelled:
    return OrderCancelled(order_id=order_id, reason=reason, cancelled_at=at)


# The id parts, fixed forever (changing one breaks dedupe).
PAID, REFUNDED, COMPLETED, CANCELLED = "paid", "refunded", "completed", "cancelled"
