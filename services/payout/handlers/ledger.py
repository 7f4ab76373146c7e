"""The available-balance projection: commission events -> `balances`.

Live it reads only the commission stream (this service's own withdrawals change the ledger
in the withdrawal's transaction). The audit rebuild (`include_withdrawals=True`) also reads
the payout stream, so the same algebra rebuilds what the live ledger holds from events only."""
from __future__ import annotations

import asyncpg

from services.payout.domain.ledger import COMMISSION_TYPES, WITHDRAWAL_TYPES, fold
from services.payout.store import ledger as ledger_store
from shared.projector import Batch
from shared.topics import COMMISSION_EVENTS, PAYOUT_EVENTS


class LedgerProjection:
    name = "ledger"

    def __init__(self, *, include_withdrawals: bool = False) -> None:
        self.topics = (COMMISSION_EVENTS, PAYOUT_EVENTS) if include_withdrawals else (COMMISSION_EVENTS,)
        self.event_types = COMMISSION_TYPES | WITHDRAWAL_TYPES if include_withdrawals else COMMISSION_TYPES

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        await ledger_store.apply_deltas(conn, fold([a.payload for a in batch.events]))
