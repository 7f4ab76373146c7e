"""Request and response bodies of the engagement API (money in integer fen)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import Annotated

TemplateId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z_\-]+$")]
Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-.:]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoticePublic(BaseModel):
    notice_id: int
    kind: str
    title: str
    body: str
    amount_fen: int | None
    status: str
    ref: str | None
    occurred_at: datetime
    read_at: datetime | None = None


class NoticePage(BaseModel):
    items: list[NoticePublic]
    unread: int


class NoticesRead(Strict):
    up_to: int = Field(ge=0, le=10**12)


class SubscriptionsReport(Strict):
    """What `wx.requestSubscribeMessage` answered: the template ids the user accepted."""

    accepted: list[TemplateId] = Field(min_length=1, max_length=3)
    openid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-]+$")
    idempotency_key: str = Field(min_length=1, max_length=64)


class SubscriptionPublic(BaseModel):
    template_id: str
    accepted: int
    used: int
    remaining: int


class Sums(BaseModel):
    accrued_fen: int
    settled_fen: int
    reversed_fen: int
    withdrawn_fen: int


class PeriodSums(Sums):
    period: str
    label: str
    start: datetime
    end: datetime | None


class Balance(BaseModel):
    """All time: money still frozen, settled (net of reversals of settled money), withdrawn, reversed."""

    frozen_fen: int
    settled_fen: int
    withdrawn_fen: int
    reversed_fen: int


class DaySums(Sums):
    day: date


class ProductEarning(BaseModel):
    product_id: str
    orders: int
    earned_fen: int


class Funnel(BaseModel):
    source: str
    product_id: str | None
    shares: int
    visits: int
    binds: int
    paid_orders: int


class Dashboard(BaseModel):
    promoter_id: str
    timezone: str
    balance: Balance
    periods: list[PeriodSums]
    by_day: list[DaySums]
    top_products: list[ProductEarning]
    funnel: list[Funnel]


class BoardRow(BaseModel):
    rank: int
    nickname: str
    score: int
    me: bool = False


class Leaderboard(BaseModel):
    period: Literal["week", "month"]
    metric: Literal["settled", "new_customers"]
    label: str
    start: datetime
    end: datetime
    participants: int
    top: list[BoardRow]
    mine: BoardRow | None


class HonourPublic(BaseModel):
    honour_key: str
    title: str
    awarded_at: datetime


class Profile(BaseModel):
    promoter_id: str
    nickname: str
    tier: str | None
    honours: list[HonourPublic]


class AnnouncementCreate(Strict):
    kind: Literal["announcement", "training"] = "announcement"
    title: str = Field(min_length=1, max_length=100)
    body: str = Field(min_length=1, max_length=20_000)
    url: str | None = Field(None, max_length=1024, pattern=r"^https://[^\s]+$")


class AnnouncementPublic(BaseModel):
    announcement_id: str
    kind: str
    title: str
    body: str
    url: str | None
    published_at: datetime
    read_at: datetime | None = None


class AnnouncementStats(BaseModel):
    announcement_id: str
    kind: str
    title: str
    published_by: str
    published_at: datetime
    reads: int


class TemplatePut(Strict):
    template_id: TemplateId
    page: str = Field("", max_length=256, pattern=r"^([\w\-./]+(\?[^\s#]*)?)?$")
    #: WeChat data key -> what it shows: title | body | amount | time | status | ref
    fields: dict[Annotated[str, Field(max_length=32)], str] = Field(min_length=1, max_length=10)
    enabled: bool = True


class TemplatePublic(TemplatePut):
    model_config = ConfigDict(extra="ignore")
    kind: str
    updated_by: str
    updated_at: datetime


class HonourRuleCreate(Strict):
    rule_id: Slug
    title: str = Field(min_length=1, max_length=32)
    metric: Literal["sales", "accrued_fen", "settled_fen", "new_customers"]
    threshold: int = Field(gt=0, le=10**12)


class PerkCreate(Strict):
    perk_id: Slug
    tier: str = Field(min_length=1, max_length=64)
    kind: Literal["trial", "gift_pack", "coupon", "other"]
    title: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=2000)


class PerkGrantPublic(BaseModel):
    grant_id: str
    perk_id: str
    tier: str
    kind: str
    title: str
    description: str
    granted_at: datetime
    claimed_at: datetime | None


class PerkClaim(Strict):
    idempotency_key: str | None = Field(None, min_length=1, max_length=64)
