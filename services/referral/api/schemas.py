"""Request and response bodies. Every input is validated here before a rule sees it."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator
from typing_extensions import Annotated

from services.referral.domain.codes import SCENE_MAX

Text = Annotated[str, Field(min_length=1, max_length=500)]
Nickname = Annotated[str, Field(min_length=1, max_length=64)]
Url = Annotated[str, Field(max_length=1024, pattern=r"^https?://[^\s]+$")]
ProductId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-.:]+$")]


def _aware(v: datetime | None) -> datetime | None:
    if v is not None and v.tzinfo is None:
        raise ValueError("a time must carry its UTC offset")
    return v


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Profile(Strict):
    nickname: Nickname | None = None
    avatar_url: Url | None = None


class VisitPublic(BaseModel):
    user_id: str
    first_seen_at: datetime
    known_before: bool


class PromoterPublic(BaseModel):
    user_id: str
    code: str
    status: Literal["active", "suspended", "revoked"]
    status_reason: str | None = None
    suspended_until: datetime | None = None
    enrolled_by: str
    enrolled_at: datetime
    nickname: str | None = None
    share_url: str | None = None


class ApplicationPublic(BaseModel):
    user_id: str
    state: Literal["pending", "approved", "rejected"]
    submitted_at: datetime
    note: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str | None = None


class PromoterMe(BaseModel):
    enrolment_mode: str
    promoter: PromoterPublic | None = None
    application: ApplicationPublic | None = None


class PromoterByCode(BaseModel):
    promoter_id: str
    code: str
    nickname_masked: str
    active: bool


class ApplicationCreate(Profile):
    note: Text | None = None


class DecisionCreate(Strict):
    approved: bool
    reason: Text | None = None


class StatusChange(Strict):
    status: Literal["active", "suspended", "revoked"]
    reason: Text | None = None
    until: AwareDatetime | None = None


class BindingCreate(Profile):
    promoter_code: str = Field(min_length=1, max_length=SCENE_MAX)
    source: Literal["poster", "link", "qr"]
    product_id: ProductId | None = None


class BindingPublic(BaseModel):
    customer_id: str
    promoter_id: str
    promoter_code: str
    source: str
    product_id: str | None = None
    mode: str
    bound_at: datetime
    superseded_at: datetime | None = None


class BindingResult(BaseModel):
    outcome: Literal["bound", "taken_over", "unchanged"]
    binding: BindingPublic


class ChainLevel(BaseModel):
    level: int
    promoter_id: str
    bound_at: datetime
    until: datetime | None = None


class ChainPublic(BaseModel):
    user_id: str
    at: datetime
    level1: ChainLevel | None = None
    level2: ChainLevel | None = None


class TeamMemberPublic(BaseModel):
    nickname: str
    via_nickname: str | None = None
    bound_at: datetime
    paid_orders: int
    paid_fen: int
    refunded_fen: int
    net_paid_fen: int


class TeamPage(BaseModel):
    level: int
    page: int
    page_size: int
    total: int
    items: list[TeamMemberPublic]


class MerchantSettingsPublic(BaseModel):
    enrolment_mode: Literal["everyone", "first_order", "spend_threshold", "application", "operator"]
    spend_threshold_fen: int
    binding_mode: Literal["first_touch", "first_touch_window", "new_users_only", "last_touch"]
    protection_window_days: int
    enrolment_mode_since: datetime
    updated_at: datetime
    updated_by: str | None = None


class MerchantSettingsUpdate(Strict):
    enrolment_mode: Literal["everyone", "first_order", "spend_threshold", "application", "operator"] | None = None
    spend_threshold_fen: StrictInt | None = Field(None, ge=0, le=10**12)
    binding_mode: Literal["first_touch", "first_touch_window", "new_users_only", "last_touch"] | None = None
    protection_window_days: int | None = Field(None, ge=1, le=3650)


class ProductUpsert(Strict):
    title: str = Field(min_length=1, max_length=100)
    price_fen: StrictInt = Field(ge=0, le=10**10)
    image_base64: str | None = Field(None, max_length=8_000_000)
    image_url: Url | None = None

    @model_validator(mode="after")
    def _one_image(self) -> "ProductUpsert":
        if (self.image_base64 is None) == (self.image_url is None):
            raise ValueError("give exactly one of image_base64 or image_url")
        return self


class ProductPublic(BaseModel):
    product_id: str
    title: str
    price_fen: int
    image_url: str | None = None
    has_image: bool
    updated_at: datetime


class PosterCreate(Strict):
    """A registered product (`product_id`), or one described here: title, price and image."""

    product_id: ProductId | None = None
    title: str | None = Field(None, min_length=1, max_length=100)
    price_fen: StrictInt | None = Field(None, ge=0, le=10**10)
    image_base64: str | None = Field(None, max_length=8_000_000)
    image_url: Url | None = None

    @model_validator(mode="after")
    def _product_or_inline(self) -> "PosterCreate":
        inline = (self.title, self.price_fen, self.image_base64, self.image_url)
        if self.product_id is not None:
            if any(v is not None for v in inline):
                raise ValueError("give a product_id or an inline product, not both")
            return self
        if self.title is None or self.price_fen is None:
            raise ValueError("an inline product needs title and price_fen")
        if (self.image_base64 is None) == (self.image_url is None):
            raise ValueError("give exactly one of image_base64 or image_url")
        return self


class PromoterListed(PromoterPublic):
    team_size: int


class AdminTeamMember(BaseModel):
    customer_id: str
    nickname: str | None = None
    via_promoter_id: str | None = None
    bound_at: datetime
    paid_orders: int
    paid_fen: int
    refunded_fen: int


class AdminTeamPage(BaseModel):
    level: int
    page: int
    page_size: int
    total: int
    items: list[AdminTeamMember]


class ReferrerChange(Strict):
    promoter_id: str = Field(min_length=1, max_length=128)
    reason: Text


class ShareCreate(Strict):
    """A link or QR shared from the mini-program."""

    source: Literal["link", "qr"]
    product_id: ProductId | None = None
