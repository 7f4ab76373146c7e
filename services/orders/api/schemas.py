"""Request and response bodies. Money is integer fen; strict ints refuse `1.5` and `"2"`."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from services.orders.domain import rules
from shared.limits import MAX_LINES, Count, Fen


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: str | None = Field(None, max_length=64, description="defaults to the 1-based position")
    product_id: str = Field(max_length=64)
    category_id: str | None = Field(None, max_length=64)
    sku: str | None = Field(None, max_length=64)
    quantity: Count
    unit_price_fen: Fen
    paid_fen: Fen = Field(description="what the buyer paid for the whole line after discounts")


class OrderCreate(BaseModel):
    """An order as the gateway sends it; the buyer is the identity's user."""

    model_config = ConfigDict(extra="forbid")
    out_trade_no: str = Field(max_length=32, description="merchant order number given to WeChat Pay (6-32 of [0-9A-Za-z_-|*])")
    lines: list[LineIn] = Field(max_length=MAX_LINES, description=f"at most {MAX_LINES} lines")
    postage_fen: Fen = 0
    total_fen: Fen = Field(description="must equal sum(paid_fen) + postage_fen")
    promoter_code: str | None = Field(None, max_length=32, description="code of the share that led to the order")

    def draft(self, buyer_id: str) -> rules.OrderDraft:
        return rules.OrderDraft(
            out_trade_no=self.out_trade_no, buyer_id=buyer_id, postage_fen=self.postage_fen, total_fen=self.total_fen,
            promoter_code=self.promoter_code or None,
            lines=tuple(rules.LineDraft(product_id=ln.product_id, quantity=ln.quantity, unit_price_fen=ln.unit_price_fen,
                                        paid_fen=ln.paid_fen, category_id=ln.category_id, sku=ln.sku,
                                        line_id=ln.line_id) for ln in self.lines),
        )


class LinePublic(BaseModel):
    line_id: str
    product_id: str
    category_id: str | None
    sku: str | None
    quantity: int
    unit_price_fen: int
    paid_fen: int
    refunded_fen: int = Field(description="confirmed by WeChat (REFUND.SUCCESS)")
    refunded_quantity: int
    refundable_fen: int = Field(description="paid minus refunds pending or confirmed")
    refundable_quantity: int


class OrderPublic(BaseModel):
    order_id: str
    out_trade_no: str
    buyer_id: str
    status: str
    lines: list[LinePublic]
    postage_fen: int
    total_fen: int
    refunded_fen: int
    promoter_code: str | None
    placed_at: datetime
    pay_before: datetime | None = Field(description="when an unpaid order will be cancelled")
    paid_at: datetime | None
    transaction_id: str | None
    completed_at: datetime | None
    completion_reason: str | None
    auto_complete_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    late_transaction_id: str | None = Field(description="money that arrived after cancellation; refund it")
    payment: "PaymentParamsPublic | None" = Field(
        None, description="wx.requestPayment parameters (on placement when the prepay could be made at once)")


class PaymentParamsPublic(BaseModel):
    """Pass as-is to `wx.requestPayment` (with success/fail callbacks)."""

    appId: str
    timeStamp: str
    nonceStr: str
    package: str = Field(description="prepay_id=...")
    signType: str = Field(description="RSA")
    paySign: str


class PaymentPublic(BaseModel):
    order_id: str
    out_trade_no: str
    total_fen: int
    pay_before: datetime
    params: PaymentParamsPublic


class OrderList(BaseModel):
    orders: list[OrderPublic]
    next_before: datetime | None


class RefundLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: str = Field(max_length=64)
    quantity: Count = Field(0, description="units returned; 0 for a price-only refund")
    amount_fen: Fen


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_refund_no: str = Field(max_length=64, description="merchant refund number given to WeChat Pay (1-64 of [0-9A-Za-z_-|*@])")
    lines: list[RefundLineIn] = Field(max_length=MAX_LINES)
    reason: str | None = Field(None, max_length=80)


class RefundLinePublic(BaseModel):
    line_id: str
    quantity: int
    amount_fen: int


class RefundPublic(BaseModel):
    out_refund_no: str
    order_id: str
    status: str = Field(description="pending | abnormal (not final) | succeeded | closed (final failure)")
    amount_fen: int
    lines: list[RefundLinePublic]
    reason: str | None
    requested_by: str
    requested_at: datetime
    refund_id: str | None
    finished_at: datetime | None


class PromoterOrderLine(BaseModel):
    line_id: str
    product_id: str
    category_id: str | None
    quantity: int
    paid_fen: int


class PromoterOrder(BaseModel):
    """An attributed order as its promoter sees it: the buyer masked."""

    order_id: str
    buyer: str
    status: str
    promoter_code: str
    lines: list[PromoterOrderLine]
    total_fen: int
    refunded_fen: int
    placed_at: datetime
    paid_at: datetime | None
    completed_at: datetime | None


class PromoterOrderList(BaseModel):
    promoter_codes: list[str]
    orders: list[PromoterOrder]
    next_before: datetime | None


def order_public(row: Mapping[str, Any], lines: Sequence[Mapping[str, Any]],
                 refund_rows: Sequence[Mapping[str, Any]]) -> OrderPublic:
    """`refund_rows`: (line_id, quantity, amount_fen, status) of this order's refunds."""
    done: dict[str, list[int]] = {}
    held: dict[str, list[int]] = {}
    for r in refund_rows:
        if r["status"] == "succeeded":
            d = done.setdefault(r["line_id"], [0, 0])
            d[0] += r["amount_fen"]; d[1] += r["quantity"]
        if r["status"] in rules.HOLDING_REFUND_STATUSES:
            h = held.setdefault(r["line_id"], [0, 0])
            h[0] += r["amount_fen"]; h[1] += r["quantity"]
    out_lines = []
    for ln in lines:
        d, h = done.get(ln["line_id"], [0, 0]), held.get(ln["line_id"], [0, 0])
        out_lines.append(LinePublic(
            line_id=ln["line_id"], product_id=ln["product_id"], category_id=ln["category_id"], sku=ln["sku"],
            quantity=ln["quantity"], unit_price_fen=ln["unit_price_fen"], paid_fen=ln["paid_fen"],
            refunded_fen=d[0], refunded_quantity=d[1],
            refundable_fen=ln["paid_fen"] - h[0], refundable_quantity=ln["quantity"] - h[1],
        ))
    return OrderPublic(
        order_id=row["order_id"], out_trade_no=row["out_trade_no"], buyer_id=row["buyer_id"], status=row["status"],
        lines=out_lines, postage_fen=row["postage_fen"], total_fen=row["total_fen"],
        refunded_fen=sum(x.refunded_fen for x in out_lines), promoter_code=row["promoter_code"],
        placed_at=row["placed_at"], pay_before=row["due_at"] if row["status"] == "placed" else None,
        paid_at=row["paid_at"], transaction_id=row["transaction_id"], completed_at=row["completed_at"],
        completion_reason=row["completion_reason"],
        auto_complete_at=row["due_at"] if row["status"] == "paid" else None,
        cancelled_at=row["cancelled_at"], cancel_reason=row["cancel_reason"],
        late_transaction_id=row["late_transaction_id"],
    )


OrderPublic.model_rebuild()
