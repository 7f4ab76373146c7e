"""Order events -> what each customer paid; in the first-order and spend-threshold modes, the
order that qualifies a customer enrols them (PromoterEnrolled, caused by that order event)."""
from __future__ import annotations

import asyncpg
import structlog

from services.referral import flows
from services.referral.domain import codes
from services.referral.domain import promoters as enrolment
from services.referral.store import merchant as merchant_store
from services.referral.store import orders as orders_store
from services.referral.store import promoters as promoters_store
from shared.contracts.orders import OrderPaid, OrderRefunded
from shared.events import derive_event_id
from shared.projector import Applied, Batch
from shared.topics import ORDER_EVENTS, REFERRAL_EVENTS

log = structlog.get_logger(__name__)


class OrderSpendProjection:
    name = "order_spend"
    topics = (ORDER_EVENTS,)
    event_types = frozenset({"OrderPaid", "OrderRefunded"})

    def __init__(self, code_key: bytes, personal_data_key: bytes) -> None:
        self.code_key = code_key
        self.personal_data_key = personal_data_key  # seals the enrolled promoter's nickname

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        for a in batch.events:
            p = a.payload
            if isinstance(p, OrderPaid):
                goods_fen = sum(line.paid_fen for line in p.lines)
                if await orders_store.record_paid(conn, p.order_id, p.buyer_id, goods_fen, p.paid_at):
                    await self.on_paid(conn, batch, a, p)
            elif isinstance(p, OrderRefunded):
                goods_fen = sum(line.amount_fen for line in p.lines)
                await orders_store.record_refund(conn, p.order_id, p.out_refund_no, goods_fen, p.refunded_at)

    async def on_paid(self, conn: asyncpg.Connection, batch: Batch, a: Applied, p: OrderPaid) -> None:
        ms = await merchant_store.load(conn)
        # Switching the mode on does not enrol every past buyer at once; they may still ask.
        if p.paid_at < ms.enrolment_mode_since:
            return
        how = enrolment.earned_enrolment(ms.enrolment_mode, await orders_store.spend(conn, p.buyer_id),  # type: ignore[arg-type]
                                         ms.spend_threshold_fen)
        if how is None:
            return
        await promoters_store.lock_user(conn, p.buyer_id)
        if await promoters_store.get(conn, p.buyer_id) is not None:
            return
        # the code and event id derive from the order event: a replay enrols identically
        code = codes.derived_code(self.code_key, f"enrol:{a.envelope.event_id}")
        _, events = await flows.enrol(conn, p.buyer_id, how, p.paid_at, code=code, master=self.personal_data_key,
                                      event_id=derive_event_id(a.envelope.event_id, "PromoterEnrolled"), cause=a.envelope)
        for env in events:
            batch.emit(REFERRAL_EVENTS, env)
        log.info("promoter_enrolled_by_order", promoter_id=p.buyer_id, enrolled_by=how, order_id=p.order_id)
