"""Events published by the referral service (topic shared.topics.REFERRAL_EVENTS)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events import EventPayload, register

BindingSource = Literal["poster", "link", "qr", "operator"]  # operator: changed by an operator with a reason
BindingMode = Literal["first_touch", "first_touch_window", "new_users_only", "last_touch"]


@register
class PromoterEnrolled(EventPayload):
    event_type = "PromoterEnrolled"
    key_field = "promoter_id"
    promoter_id: str
    promoter_code: str = Field(max_length=32)
    enrolled_by: Literal["everyone", "first_order", "spend_threshold", "application", "operator"]
    nickname: str | None = None
    enrolled_at: datetime


@register
class PromoterStatusChanged(EventPayload):
    """Promoter became active, suspended (temporary with `until`, or permanent) or revoked."""

    event_type = "PromoterStatusChanged"
    key_field = "promoter_id"
    promoter_id: str
    status: Literal["active", "suspended", "revoked"]
    reason: str | None = None
    until: datetime | None = None
    changed_at: datetime
    changed_by: str | None = None


@register
class PromoterApplicationSubmitted(EventPayload):
    event_type = "PromoterApplicationSubmitted"
    key_field = "user_id"
    user_id: str
    submitted_at: datetime
    note: str | None = None


@register
class PromoterApplicationDecided(EventPayload):
    event_type = "PromoterApplicationDecided"
    key_field = "user_id"
    user_id: str
    approved: bool
    reason: str | None = None
    decided_by: str
    decided_at: datetime


@register
class ReferralBound(EventPayload):
    """A customer now belongs to `promoter_id` (their level-1 referrer) from `bound_at`."""

    event_type = "ReferralBound"
    key_field = "customer_id"
    customer_id: str
    promoter_id: str
    promoter_code: str
    source: BindingSource
    product_id: str | None = None
    mode: BindingMode
    bound_at: datetime
    #: set when an operator changed the referrer (source operator): why, and who
    reason: str | None = None
    changed_by: str | None = None


@register
class ReferralTakenOver(EventPayload):
    """A binding moved to another promoter (protection window lapsed, or last-touch mode)."""

    event_type = "ReferralTakenOver"
    key_field = "customer_id"
    customer_id: str
    promoter_id: str
    previous_promoter_id: str
    promoter_code: str
    source: BindingSource
    product_id: str | None = None
    mode: BindingMode
    bound_at: datetime
    #: set when an operator changed the referrer (source operator): why, and who
    reason: str | None = None
    changed_by: str | None = None


@register
class BindingRefused(EventPayload):
    """Kept for audit: who tried to bind whom, and why it was refused."""

    event_type = "BindingRefused"
    key_field = "customer_id"
    customer_id: str
    promoter_code: str
    promoter_id: str | None = None
    source: BindingSource
    reason: Literal["self_binding", "cycle", "unknown_promoter", "inactive_promoter", "already_bound", "not_new_user"]
    refused_at: datetime


@register
class PromoterShareMade(EventPayload):
    """A promoter prepared a share: a poster made (`poster`), or a link / QR the mini-program
    reports as shared. The first step of a share's conversion (shares -> visits -> binds -> paid)."""

    event_type = "PromoterShareMade"
    key_field = "promoter_id"
    promoter_id: str
    source: BindingSource
    product_id: str | None = None
    made_at: datetime


@register
class PromoterLinkVisited(EventPayload):
    """Someone opened a promoter's poster, link or QR (recorded where referral records the
    arrival through a share, whatever the bind decided). The promoter's own visits are not recorded."""

    event_type = "PromoterLinkVisited"
    key_field = "promoter_id"
    promoter_id: str
    promoter_code: str
    visitor_id: str
    source: BindingSource
    product_id: str | None = None
    #: the visitor was unknown before this visit
    first_visit: bool
    visited_at: datetime
