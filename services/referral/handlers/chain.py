"""The referral topic -> the chain read model: who referred whom, over which interval."""
from __future__ import annotations

import asyncpg

from services.referral.store import chain as chain_store
from shared.contracts.referral import ReferralBound, ReferralTakenOver
from shared.projector import Batch
from shared.topics import REFERRAL_EVENTS


class ChainProjection:
    name = "chain"
    topics = (REFERRAL_EVENTS,)
    event_types = frozenset({"ReferralBound", "ReferralTakenOver"})

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        for a in batch.events:
            p = a.payload
            if isinstance(p, (ReferralBound, ReferralTakenOver)):
                # a takeover closes the previous interval at the new bound_at (same partition: in order)
                await chain_store.open_link(conn, a.envelope.event_id, p.customer_id, p.promoter_id, p.bound_at)
