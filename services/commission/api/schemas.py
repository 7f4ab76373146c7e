"""Request and response shapes of the HTTP API (money in integer fen)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shared.limits import MAX_COUNT, MAX_FEN, MAX_LINES


class BalancePublic(BaseModel):
    promoter_id: str
    frozen_fen: int
    available_fen: int
    reserved_fen: int
    withdrawn_fen: int
    reversed_fen: int


class CommissionPublic(BaseModel):
    accrual_id: str
    order_id: str
    line_id: str
    level: Literal["level1", "level2", "self_purchase"]
    product_id: str
    base_fen: int
    quantity: int
    rate_bp: int | None
    fixed_fen_per_unit: int | None
    amount_fen: int
    reversed_fen: int
    net_fen: int
    status: Literal["frozen", "settled", "reversed"]
    settled_fen: int | None
    settled_at: datetime | None
    due_at: datetime | None
    plan_version: int
    tier: str
    unfreeze: str
    paid_at: datetime


class CommissionPage(BaseModel):
    items: list[CommissionPublic]
    next_cursor: str | None


class PlanPublic(BaseModel):
    plan_version: int
    published_by: str
    published_at: datetime
    plan: dict[str, Any]
    hard_cap_bp: int


class EstimateLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: str | None = Field(None, max_length=64)
    product_id: str = Field(max_length=64)
    category_id: str | None = Field(None, max_length=64)
    quantity: StrictInt = Field(1, gt=0, le=MAX_COUNT)
    #: what the buyer would pay for the whole line (all units, after discounts), fen
    paid_fen: StrictInt = Field(ge=0, le=MAX_FEN)


class EstimateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[EstimateLine] = Field(min_length=1, max_length=MAX_LINES)


class EstimateLinePublic(BaseModel):
    line_id: str | None
    product_id: str
    share_earn_fen: int
    self_purchase_fen: int


class EstimatePublic(BaseModel):
    promoter_id: str
    promoter_status: str | None
    plan_version: int
    tier: str
    #: what the caller earns (level 1) when a customer buys these lines through their share
    share_earn_fen: int
    #: the self-purchase rebate if the caller buys them
    self_purchase_fen: int
    lines: list[EstimateLinePublic]
