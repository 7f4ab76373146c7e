"""Order rules: intake (lines add up), the refundable remainder per line, and what a verified
WeChat Pay notice may do to an order. Values in, values (or a domain error) out."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Literal, Mapping, Sequence

from shared.contracts.orders import OrderLine, RefundedLine
from services.orders.domain.errors import (
    BadQuantityError, InvalidOrderError, InvalidRefundError, LinePaidExceedsPriceError, LinesDoNotAddUpError,
    NoticeRejectedError, OrderStateError, RefundExceedsRemainderError,
)

# WeChat Pay's documented shapes for merchant numbers.
OUT_TRADE_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
OUT_REFUND_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")

OrderStatus = Literal["placed", "paid", "cancelled", "completed"]
RefundStatus = Literal["pending", "abnormal", "succeeded", "closed"]
#: refunds that hold (or have taken) part of a line: a CLOSED refund gives its share back
HOLDING_REFUND_STATUSES: frozenset[str] = frozenset({"pending", "abnormal", "succeeded"})


# -- intake ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineDraft:
    """One line as the gateway sends it; `line_id` defaults to its 1-based position."""

    product_id: str
    quantity: int
    unit_price_fen: int
    paid_fen: int
    category_id: str | None = None
    sku: str | None = None
    line_id: str | None = None


@dataclass(frozen=True)
class OrderDraft:
    out_trade_no: str
    buyer_id: str
    lines: tuple[LineDraft, ...]
    postage_fen: int
    total_fen: int
    promoter_code: str | None = None

    def fingerprint(self) -> str:
        """Hash of the content, so that a repeat of the same out_trade_no can be told apart
        from a different order reusing the number."""
        canon = {
            "buyer_id": self.buyer_id, "postage_fen": self.postage_fen, "total_fen": self.total_fen,
            "promoter_code": self.promoter_code or None,
            "lines": [[ln.line_id or str(i + 1), ln.product_id, ln.category_id, ln.sku, ln.quantity,
                       ln.unit_price_fen, ln.paid_fen] for i, ln in enumerate(self.lines)],
        }
        return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def validate_order(draft: OrderDraft) -> tuple[OrderLine, ...]:
    """The lines of a valid order, or InvalidOrderError naming the broken rule:
    quantities > 0, amounts >= 0, paid_fen <= unit_price_fen * quantity,
    total_fen == sum(paid_fen) + postage_fen, and something to pay (WeChat's minimum is 1 fen)."""
    if not OUT_TRADE_NO_RE.match(draft.out_trade_no or ""):
        raise InvalidOrderError("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]", code="bad_out_trade_no")
    if not draft.buyer_id:
        raise InvalidOrderError("buyer_id is required", code="no_buyer")
    if not draft.lines:
        raise InvalidOrderError("an order needs at least one line", code="no_lines")
    if draft.promoter_code is not None and not (0 < len(draft.promoter_code) <= 32):
        raise InvalidOrderError("promoter_code must be 1-32 characters", code="bad_promoter_code")
    lines: list[OrderLine] = []
    seen: set[str] = set()
    for i, ln in enumerate(draft.lines):
        line_id = ln.line_id or str(i + 1)
        if line_id in seen:
            raise InvalidOrderError(f"line_id {line_id!r} appears twice", code="duplicate_line_id")
        seen.add(line_id)
        if not ln.product_id:
            raise InvalidOrderError(f"line {line_id}: product_id is required", code="no_product")
        if ln.quantity <= 0:
            raise BadQuantityError(f"line {line_id}: quantity must be > 0, got {ln.quantity}")
        if ln.unit_price_fen < 0 or ln.paid_fen < 0:
            raise InvalidOrderError(f"line {line_id}: amounts must be >= 0", code="negative_amount")
        if ln.paid_fen > ln.unit_price_fen * ln.quantity:
            raise LinePaidExceedsPriceError(
                f"line {line_id}: paid_fen {ln.paid_fen} > unit_price_fen {ln.unit_price_fen} x quantity {ln.quantity}")
        lines.append(OrderLine(line_id=line_id, product_id=ln.product_id, category_id=ln.category_id, sku=ln.sku,
                               quantity=ln.quantity, unit_price_fen=ln.unit_price_fen, paid_fen=ln.paid_fen))
    if draft.postage_fen < 0:
        raise InvalidOrderError("postage_fen must be >= 0", code="negative_amount")
    lines_sum = sum(ln.paid_fen for ln in lines)
    if draft.total_fen != lines_sum + draft.postage_fen:
        raise LinesDoNotAddUpError(
            f"total_fen {draft.total_fen} != sum(paid_fen) {lines_sum} + postage_fen {draft.postage_fen}")
    if draft.total_fen <= 0:
        raise InvalidOrderError("total_fen must be at least 1 fen", code="nothing_to_pay")
    return tuple(lines)


# -- refunds -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Remainder:
    """What is still refundable on one line."""

    line_id: str
    amount_fen: int
    quantity: int


def refundable(lines: Sequence[OrderLine], taken: Iterable[RefundedLine]) -> dict[str, Remainder]:
    """Per line: paid minus what refunds already hold (pending, abnormal or succeeded)."""
    out = {ln.line_id: Remainder(ln.line_id, ln.paid_fen, ln.quantity) for ln in lines}
    for t in taken:
        r = out[t.line_id]
        out[t.line_id] = Remainder(r.line_id, r.amount_fen - t.amount_fen, r.quantity - t.quantity)
    return out


def check_refund(status: str, lines: Sequence[OrderLine], taken: Iterable[RefundedLine],
                 requested: Sequence[RefundedLine]) -> tuple[RefundedLine, ...]:
    """A refund request that fits what remains, or a domain error. Each requested line moves
    money (amount_fen > 0) and may return units (quantity >= 0, 0 = a price-only refund)."""
    if status not in ("paid", "completed"):
        raise OrderStateError(f"only a paid order can be refunded; this one is {status}", code="order_not_paid")
    if not requested:
        raise InvalidRefundError("a refund needs at least one line", code="no_lines")
    remain = refundable(lines, taken)
    seen: set[str] = set()
    for rq in requested:
        if rq.line_id not in remain:
            raise InvalidRefundError(f"line {rq.line_id!r} is not on this order", code="unknown_line")
        if rq.line_id in seen:
            raise InvalidRefundError(f"line {rq.line_id!r} appears twice", code="duplicate_line_id")
        seen.add(rq.line_id)
        if rq.quantity < 0:
            raise InvalidRefundError(f"line {rq.line_id}: quantity must be >= 0", code="bad_quantity")
        if rq.amount_fen <= 0:
            raise InvalidRefundError(f"line {rq.line_id}: amount_fen must be > 0", code="nothing_to_refund")
        r = remain[rq.line_id]
        if rq.amount_fen > r.amount_fen:
            raise RefundExceedsRemainderError(
                f"line {rq.line_id}: refund {rq.amount_fen} fen > refundable {r.amount_fen} fen")
        if rq.quantity > r.quantity:
            raise RefundExceedsRemainderError(
                f"line {rq.line_id}: refund quantity {rq.quantity} > refundable quantity {r.quantity}")
    return tuple(requested)


def refund_fingerprint(order_id: str, lines: Sequence[RefundedLine]) -> str:
    canon = [order_id, sorted([ln.line_id, ln.quantity, ln.amount_fen] for ln in lines)]
    return hashlib.sha256(json.dumps(canon, separators=(",", ":")).encode()).hexdigest()


# -- WeChat Pay notices ------------------------------------------------------------------------
@dataclass(frozen=True)
class Merchant:
    mchid: str
    appid: str


@dataclass(frozen=True)
class OrderFacts:
    """What a notice is checked against."""

    order_id: str
    out_trade_no: str
    status: str
    total_fen: int
    transaction_id: str | None


PaymentOutcome = Literal["paid", "duplicate", "paid_after_cancel"]


def parse_wechat_time(value: Any, default: datetime) -> datetime:
    """RFC 3339 (`2018-06-08T10:34:56+08:00`) as WeChat sends it; `default` if absent or odd."""
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
            if dt.tzinfo is not None:
                return dt
        except ValueError:
            pass
    return default


def _amount(resource: Mapping[str, Any], field: str) -> int | None:
    amount = resource.get("amount")
    value = amount.get(field) if isinstance(amount, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def judge_payment(order: OrderFacts, resource: Mapping[str, Any], merchant: Merchant) -> PaymentOutcome:
    """What a decrypted TRANSACTION.SUCCESS resource does to `order`. Raises
    NoticeRejectedError when it must not count as a payment of this order."""
    if resource.get("mchid") != merchant.mchid:
        raise NoticeRejectedError(f"mchid {resource.get('mchid')!r} is not ours", code="mchid_mismatch")
    if resource.get("appid") != merchant.appid:
        raise NoticeRejectedError(f"appid {resource.get('appid')!r} is not ours", code="appid_mismatch")
    if resource.get("trade_state") != "SUCCESS":
        raise NoticeRejectedError(f"trade_state {resource.get('trade_state')!r} is not SUCCESS", code="not_paid")
    transaction_id = resource.get("transaction_id")
    if not isinstance(transaction_id, str) or not transaction_id:
        raise NoticeRejectedError("transaction_id missing", code="no_transaction_id")
    total = _amount(resource, "total")
    if total != order.total_fen:
        raise NoticeRejectedError(f"amount.total {total} != order total_fen {order.total_fen}", code="amount_mismatch")
    if order.status in ("paid", "completed"):
        if order.transaction_id != transaction_id:
            # out_trade_no is unique at WeChat, so this is not a second payment of ours.
            raise NoticeRejectedError(
                f"order already paid by transaction {order.transaction_id}", code="transaction_mismatch", status=409)
        return "duplicate"
    if order.status == "cancelled":
        # Money was taken after we gave up on the order: acknowledged so WeChat stops, recorded
        # for an operator to refund, never a commission base.
        return "paid_after_cancel"
    return "paid"


@dataclass(frozen=True)
class RefundFacts:
    out_refund_no: str
    order_id: str
    out_trade_no: str
    status: str
    amount_fen: int
    order_total_fen: int


RefundOutcome = Literal["succeeded", "closed", "abnormal", "duplicate"]


def judge_refund(refund: RefundFacts, resource: Mapping[str, Any], merchant: Merchant) -> RefundOutcome:
    """What a decrypted REFUND.* resource does to a requested refund. Only SUCCESS moves
    money; ABNORMAL is recorded and stays open; CLOSED is a final failure."""
    if resource.get("mchid") != merchant.mchid:
        raise NoticeRejectedError(f"mchid {resource.get('mchid')!r} is not ours", code="mchid_mismatch")
    if resource.get("out_trade_no") != refund.out_trade_no:
        raise NoticeRejectedError("out_trade_no does not match the refund's order", code="order_mismatch")
    if _amount(resource, "refund") != refund.amount_fen:
        raise NoticeRejectedError(
            f"amount.refund {_amount(resource, 'refund')} != requested {refund.amount_fen}", code="amount_mismatch")
    if _amount(resource, "total") != refund.order_total_fen:
        raise NoticeRejectedError(
            f"amount.total {_amount(resource, 'total')} != order total_fen {refund.order_total_fen}", code="amount_mismatch")
    new = resource.get("refund_status")
    if new not in ("SUCCESS", "CLOSED", "ABNORMAL"):
        raise NoticeRejectedError(f"unknown refund_status {new!r}", code="bad_refund_status")
    target = {"SUCCESS": "succeeded", "CLOSED": "closed", "ABNORMAL": "abnormal"}[new]
    if refund.status == target:
        return "duplicate"
    if refund.status in ("succeeded", "closed"):
        # Final states do not move again; a contradicting notice needs a human.
        raise NoticeRejectedError(f"refund is already {refund.status}, notice says {new}", code="refund_final", status=409)
    return target  # type: ignore[return-value]


# -- time --------------------------------------------------------------------------------------
def unpaid_deadline(placed_at: datetime, timeout_minutes: int) -> datetime:
    return placed_at + timedelta(minutes=timeout_minutes)


def completion_deadline(paid_at: datetime, auto_complete_days: int) -> datetime:
    return paid_at + timedelta(days=auto_complete_days)


def mask_buyer(buyer_id: str) -> str:
    """What a promoter may see of a buyer: enough to tell orders apart, not who it is."""
    if len(buyer_id) <= 4:
        return "*" * len(buyer_id)
    return buyer_id[:2] + "*" * (len(buyer_id) - 4) + buyer_id[-2:]
