"""The overview projection: order, commission and referral events -> daily figures and tiers.
Exactly-once by the shared projector; the fold is in domain.overview."""
from __future__ import annotations

from zoneinfo import ZoneInfo

import asyncpg

from services.console.domain.overview import EVENT_TYPES, fold
from services.console.store import figures
from shared.projector import Batch
from shared.topics import COMMISSION_EVENTS, ORDER_EVENTS, REFERRAL_EVENTS


class OverviewProjection:
    name = "overview"
    topics = (ORDER_EVENTS, COMMISSION_EVENTS, REFERRAL_EVENTS)
    event_types = EVENT_TYPES

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        f = fold(((a.envelope.event_type, a.payload) for a in batch.events), self.tz)
        await figures.add_days(conn, f.days)
        await figures.set_tiers(conn, f.tiers)
