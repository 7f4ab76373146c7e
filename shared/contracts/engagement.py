"""Events published by the engagement service (topic shared.topics.ENGAGEMENT_EVENTS): what
a promoter was told, awarded, granted and claimed. Keyed by promoter (announcements by their id)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events import EventPayload, register


@register
class SubscribeMessageSent(EventPayload):
    """A WeChat subscribe message for a notice was handed to WeChat (`sent`), refused by it
    (`refused`: no subscription left on WeChat's side; `failed`: a bad template or parameter),
    or its outcome is unknown (`unknown`: never retried, so never sent twice)."""

    event_type = "SubscribeMessageSent"
    key_field = "promoter_id"
    promoter_id: str
    notice_id: int = Field(ge=1)
    source_event_id: str
    template_id: str
    outcome: Literal["sent", "refused", "failed", "unknown"]
    errcode: int | None = None
    at: datetime


@register
class HonourAwarded(EventPayload):
    """A milestone reached, awarded once per promoter and honour key."""

    event_type = "HonourAwarded"
    key_field = "promoter_id"
    promoter_id: str
    honour_key: str = Field(max_length=128)     # e.g. first_sale, settled_100_yuan, top10_month:2026-11, op:<id>
    title: str = Field(max_length=64)
    source_event_id: str | None = None
    awarded_at: datetime


@register
class PerkGranted(EventPayload):
    """A tier's perk became the promoter's on reaching the tier; claimable once."""

    event_type = "PerkGranted"
    key_field = "promoter_id"
    promoter_id: str
    grant_id: str
    perk_id: str
    tier: str
    kind: Literal["trial", "gift_pack", "coupon", "other"]
    title: str = Field(max_length=64)
    granted_at: datetime


@register
class PerkClaimed(EventPayload):
    event_type = "PerkClaimed"
    key_field = "promoter_id"
    promoter_id: str
    grant_id: str
    perk_id: str
    idempotency_key: str = Field(max_length=64)
    claimed_at: datetime


@register
class AnnouncementPublished(EventPayload):
    """An operator published an announcement or training material for promoters."""

    event_type = "AnnouncementPublished"
    key_field = "announcement_id"
    announcement_id: str
    kind: Literal["announcement", "training"]
    title: str = Field(max_length=100)
    published_by: str
    published_at: datetime
