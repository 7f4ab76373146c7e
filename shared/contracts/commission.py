"""Events published by the commission service (topic shared.topics.COMMISSION_EVENTS).
Money events are keyed by the beneficiary promoter, so one promoter's balance stays ordered."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.events import EventPayload, register

AccrualLevel = Literal["level1", "level2", "self_purchase"]


@register
class CommissionPlanPublished(EventPayload):
    event_type = "CommissionPlanPublished"
    key_field = "plan_id"
    plan_id: str = "default"
    plan_version: int = Field(ge=1)
    plan: dict[str, Any]
    published_by: str
    published_at: datetime


@register
class CommissionAccrued(EventPayload):
    event_type = "CommissionAccrued"
    key_field = "beneficiary_id"
    accrual_id: str
    order_id: str
    line_id: str
    beneficiary_id: str
    buyer_id: str
    level: AccrualLevel
    base_fen: int = Field(ge=0)
    quantity: int = Field(gt=0)
    rate_bp: int | None = Field(default=None, ge=0)   # basis points when percent, None when fixed
    fixed_fen_per_unit: int | None = Field(default=None, ge=0)
    amount_fen: int = Field(ge=0)
    plan_version: int
    tier: str
    unfreeze: str  # e.g. "order_completed+7d"
    paid_at: datetime
    #: a management bonus (管理奖) is a separate accrual to the level-1 or level-2 promoter of the
    #: line (`level` says which), on top of that level's commission; settled and reversed alike
    kind: Literal["commission", "management_bonus"] = "commission"


@register
class CommissionAccrualSkipped(EventPayload):
    """A would-be beneficiary got nothing (suspended, revoked...); recorded for explanation."""

    event_type = "CommissionAccrualSkipped"
    key_field = "beneficiary_id"
    order_id: str
    line_id: str | None = None
    beneficiary_id: str
    level: AccrualLevel
    reason: str


@register
class CommissionReversed(EventPayload):
    event_type = "CommissionReversed"
    key_field = "beneficiary_id"
    accrual_id: str
    order_id: str
    line_id: str
    beneficiary_id: str
    out_refund_no: str
    amount_fen: int = Field(ge=0)
    #: which bucket the reversed money is taken from at the moment of reversal
    from_status: Literal["frozen", "settled"]
    reversed_at: datetime


@register
class CommissionSettled(EventPayload):
    event_type = "CommissionSettled"
    key_field = "beneficiary_id"
    accrual_id: str
    order_id: str
    beneficiary_id: str
    amount_fen: int = Field(ge=0)  # net of reversals before settlement
    settled_at: datetime


@register
class PromoterTierChanged(EventPayload):
    event_type = "PromoterTierChanged"
    key_field = "promoter_id"
    promoter_id: str
    from_tier: str
    to_tier: str
    rule: str
    effective_at: datetime
