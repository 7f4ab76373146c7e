"""The reference data projection: bindings and promoter statuses from the referral stream.

It runs in every commission process, in a consumer group of its own (`commission_reference`),
so each referral partition is read by exactly one process; its positions live in PostgreSQL
(`projector_offsets`, projection `commission_reference`) like every projection's. That stored
position, with the event-time watermark written in the same transaction, is what every order
worker's ordering guard reads: how far the referral stream has been applied, whoever applied it.

Writes are serialised by one advisory lock per schema, so that the `seq` of the rows commits in
order: an order worker that has read rows up to seq N has seen every row with a smaller seq,
which lets it keep the reference state in memory and read only the new rows each batch."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from services.commission.store import state as store
from shared.projector import Batch
from shared.topics import REFERRAL_EVENTS

log = structlog.get_logger(__name__)

LATE_BINDINGS = Counter("fenxiao_commission_late_bindings_total",
                        "Bindings that arrived after an order they should have applied to")

REFERRAL_TYPES = frozenset({"PromoterEnrolled", "PromoterStatusChanged", "ReferralBound", "ReferralTakenOver"})
NAME = "commission_reference"


class ReferenceProjection:
    name = NAME
    topics = (REFERRAL_EVENTS,)
    event_types = REFERRAL_TYPES

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        statuses: list[tuple] = []
        bindings: list[tuple] = []
        marks: dict[tuple[str, int], datetime] = {}
        for a in batch.events:
            et, p, env = a.envelope.event_type, a.payload, a.envelope
            k = (a.topic, a.partition)
            if k not in marks or env.occurred_at > marks[k]:
                marks[k] = env.occurred_at
            q: Any = p
            if et == "ReferralBound" or et == "ReferralTakenOver":
                bindings.append((q.customer_id, q.promoter_id, q.bound_at, env.event_id))
            elif et == "PromoterEnrolled":
                statuses.append((q.promoter_id, "active", None, q.enrolled_at, "enrolled", env.event_id))
            else:
                statuses.append((q.promoter_id, q.status, q.until, q.changed_at, q.reason, env.event_id))
        if statuses or bindings:
            await store.lock_reference(conn)
        await store.insert_statuses(conn, statuses)
        await store.insert_bindings(conn, bindings)
        if bindings:
            late = await store.record_late_bindings(conn, [(c, p, t) for c, p, t, _ in bindings])
            if late:
                LATE_BINDINGS.inc(late)
                log.warning("late_bindings", orders=late)
        if marks:
            await store.advance_watermarks(conn, [(t, p, at) for (t, p), at in marks.items()])
