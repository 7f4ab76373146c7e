"""Events published by the orders service (topic shared.topics.ORDER_EVENTS), keyed by order id."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import EventPayload, register


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # tolerant reader
    line_id: str
    product_id: str
    category_id: str | None = None
    sku: str | None = None
    quantity: int = Field(gt=0)
    unit_price_fen: int = Field(ge=0)
    #: what the buyer actually paid for the whole line after discounts (all units), fen
    paid_fen: int = Field(ge=0)


class RefundedLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # tolerant reader
    line_id: str
    quantity: int = Field(ge=0)
    amount_fen: int = Field(ge=0)


@register
class OrderPlaced(EventPayload):
    event_type = "OrderPlaced"
    key_field = "order_id"
    order_id: str
    buyer_id: str
    lines: tuple[OrderLine, ...]
    postage_fen: int = Field(ge=0)
    total_fen: int = Field(ge=0)
    promoter_code: str | None = None
    placed_at: datetime


@register
class OrderPaid(EventPayload):
    """Emitted once per order, only after a verified WeChat Pay notice matching the order."""

    event_type = "OrderPaid"
    key_field = "order_id"
    order_id: str
    buyer_id: str
    lines: tuple[OrderLine, ...]
    postage_fen: int = Field(ge=0)
    total_fen: int = Field(ge=0)
    promoter_code: str | None = None
    transaction_id: str
    paid_at: datetime


@register
class OrderRefunded(EventPayload):
    event_type = "OrderRefunded"
    key_field = "order_id"
    order_id: str
    out_refund_no: str
    lines: tuple[RefundedLine, ...]
    amount_fen: int = Field(ge=0)
    refunded_at: datetime


@register
class OrderCompleted(EventPayload):
    """The after-sale window has closed (or receipt confirmed and window elapsed): what
    settlement waits for."""

    event_type = "OrderCompleted"
    key_field = "order_id"
    order_id: str
    reason: Literal["receipt_confirmed", "after_sale_window_closed"]
    completed_at: datetime


@register
class OrderCancelled(EventPayload):
    event_type = "OrderCancelled"
    key_field = "order_id"
    order_id: str
    reason: str
    cancelled_at: datetime
