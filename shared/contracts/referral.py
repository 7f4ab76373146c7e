"""Events published by the referral service (topic shared.topics.REFERRAL_EVENTS)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.display import mask_nickname
from shared.events import EventPayload, catalog, register

BindingSource = Literal["poster", "link", "qr", "operator"]  # operator: changed by an operator with a reason
BindingMode = Literal["first_touch", "first_touch_window", "new_users_only", "last_touch"]


@register
class PromoterEnrolled(EventPayload):
    """v2: the nickname is sealed with the person's key, which only referral holds (crypto-shredding:
    erasing the person shreds the key and the log's copy becomes unreadable, docs/audit.md). Other
    services show `nickname_masked`, what every user is shown of another (first character, stars)."""

    event_type = "PromoterEnrolled"
    version = 2
    key_field = "promoter_id"
    promoter_id: str
    promoter_code: str = Field(max_length=32)
    enrolled_by: Literal["everyone", "first_order", "spend_threshold", "application", "operator"]
    enrolled_at: datetime
    #: the nickname sealed with the person's key (shared.shredding.seal_text, field "nickname"): base64 of
    #: nonce and AES-256-GCM ciphertext; None when the mini-program passed none
    nickname_sealed: str | None = Field(None, max_length=512)
    #: what the boards show: 张三丰 -> 张** (shared.display.mask_nickname); None without a nickname
    nickname_masked: str | None = Field(None, max_length=128)
    #: only in events written as v1 (in clear, before crypto-shredding); a v2 producer never sets it
    nickname: str | None = None


@catalog.upcaster("PromoterEnrolled", 1)
def _enrolled_v1_to_v2(data: dict) -> dict:
    """v1 carried the nickname in clear: kept as it was (the log cannot be rewritten), masked for display."""
    nick = data.get("nickname")
    return {**data, "nickname_masked": mask_nickname(nick) if nick else None}


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
    """v2: the applicant's free-text note is sealed with their key (it may say anything about them)."""

    event_type = "PromoterApplicationSubmitted"
    version = 2
    key_field = "user_id"
    user_id: str
    submitted_at: datetime
    #: the note sealed with the person's key (field "note"); None without a note
    note_sealed: str | None = Field(None, max_length=4096)
    #: only in events written as v1 (in clear); a v2 producer never sets it
    note: str | None = None


@catalog.upcaster("PromoterApplicationSubmitted", 1)
def _application_v1_to_v2(data: dict) -> dict:
    return dict(data)


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
