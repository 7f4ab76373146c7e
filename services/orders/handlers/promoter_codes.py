"""Projection of referral's PromoterEnrolled into code -> promoter, so that a promoter's
identity finds the orders carrying their code."""
from __future__ import annotations

import asyncpg

from services.orders.store import orders as store
from shared.contracts.referral import PromoterEnrolled
from shared.projector import Batch
from shared.topics import REFERRAL_EVENTS


class PromoterCodes:
    name = "promoter_codes"
    topics = (REFERRAL_EVENTS,)
    event_types = frozenset({"PromoterEnrolled"})

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        rows = []
        for a in batch.events:
            p = a.payload
            assert isinstance(p, PromoterEnrolled)
            rows.append((p.promoter_code, p.promoter_id, p.enrolled_at))
        await store.upsert_promoter_codes(conn, rows)
