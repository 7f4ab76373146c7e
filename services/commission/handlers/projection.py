"""The one commission projection: referral, order and payout events, applied in one transaction
per batch by the shared exactly-once projector.

Per batch: copy bindings and promoter statuses first (their effect is keyed by time, not by
arrival), hold back orders the referral stream has not caught up with, load the state the
batch's orders need in a handful of `= ANY($1)` queries, fold the batch through the domain
`Ledger`, turn its decisions into events, and write rows with COPY/unnest, the balance deltas
with one upsert, and the events to the outbox, all in the batch's transaction.

Balances move by the same function (`domain.balance.delta_of`) applied to exactly the money
events recorded in the outbox in that transaction (and to payout's withdrawals as read), so a
balance is the fold of the money events of the log; `services.commission.replay` checks it."""
from __future__ import annotations

import json
from hashlib import sha1
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol

import asyncpg
import structlog
from pydantic_core import to_json
from prometheus_client import Counter

from services.commission.domain.accrual import Accrual, PaidLine, PaidOrder, Skip
from services.commission.domain.chain import History
from services.commission.domain.ledger import Ledger, PlanBook
from services.commission.domain.plan import Plan
from services.commission.store import state as store
from shared.contracts.commission import (
    CommissionAccrualSkipped, CommissionAccrued, CommissionReversed, CommissionSettled, PromoterTierChanged,
)
from shared.events import Envelope, EventPayload, catalog, derive_event_id
from shared.events.envelope import _DERIVED_NS
from shared.outbox import OutboxRecord
from shared.telemetry import inject_headers
from shared.projector import Applied, Batch, Projector
from shared.topics import COMMISSION_EVENTS, ORDER_EVENTS, PAYOUT_EVENTS, REFERRAL_EVENTS  # noqa: F401

log = structlog.get_logger(__name__)

LATE_BINDINGS = Counter("fenxiao_commission_late_bindings_total",
                        "Bindings that arrived after an order they should have applied to")
DEFERRED = Counter("fenxiao_commission_order_events_deferred_total",
                   "Order events held until the referral stream was read past their payment")
ACCRUALS = Counter("fenxiao_commission_accruals_total", "CommissionAccrued decided", ["level"])

_NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Held:
    """An order event released from the deferred table (same shape the fold reads from Applied)."""

    envelope: Envelope
    payload: EventPayload


class _Outgoing:
    """Caused events of one batch into its outbox records: the envelope `new_event(payload,
    event_id=..., cause=..., occurred_at=<batch time>)` builds (causation and correlation carried
    over), serialized in one `pydantic_core.to_json` call over plain values, with the batch's trace
    headers computed once: at thousands of accruals per second this is a large share of the CPU.
    The hot events (accrued, skipped) are built from the domain's decisions without a pydantic
    model per event (the domain guarantees what the contract would validate); unit tests check
    the bytes against `new_event(...).to_bytes()` for random inputs."""

    def __init__(self, batch: Batch, now: datetime | None = None) -> None:
        self.batch = batch
        self.now = now or datetime.now(timezone.utc)
        self.trace = inject_headers()
        self._headers: dict[str, dict[str, str]] = {}

    def money(self, ledger: Ledger, payload: EventPayload, event_id: Any, cause: Envelope) -> None:
        """A money event: it moves the balances in the transaction that records it."""
        ledger.on_money(payload.event_type, payload)
        self.add(payload, event_id, cause)

    def add(self, payload: EventPayload, event_id: Any, cause: Any) -> None:
        self._record(payload.event_type, payload.version, payload.aggregate_key(), payload, event_id, cause)

    def accrued(self, ledger: Ledger, a: Accrual, event_id: Any, cause: Any) -> None:
        """`CommissionAccrued` straight from the domain's accrual (a money event; `delta_of`
        reads the same two fields from it as from the contract payload)."""
        ledger.on_money(_ACCRUED, a)
        self._record(_ACCRUED, _ACCRUED_VERSION, a.beneficiary_id, {
            "accrual_id": a.accrual_id, "order_id": a.order_id, "line_id": a.line_id,
            "beneficiary_id": a.beneficiary_id, "buyer_id": a.buyer_id, "level": a.level, "base_fen": a.base_fen,
            "quantity": a.quantity, "rate_bp": a.rate_bp, "fixed_fen_per_unit": a.fixed_fen_per_unit,
            "amount_fen": a.amount_fen, "plan_version": a.plan_version, "tier": a.tier, "unfreeze": a.unfreeze,
            "paid_at": a.paid_at,
        }, event_id, cause)

    def skipped(self, s: Skip, event_id: Any, cause: Any) -> None:
        self._record(_SKIPPED, _SKIPPED_VERSION, s.beneficiary_id, {
            "order_id": s.order_id, "line_id": s.line_id, "beneficiary_id": s.beneficiary_id, "level": s.level,
            "reason": s.reason,
        }, event_id, cause)

    def _record(self, event_type: str, version: int, key: str, payload: Any, event_id: Any, cause: Any) -> None:
        corr = getattr(cause, "correlation_id", None) or cause.event_id
        value = to_json({"event_id": event_id, "event_type": event_type, "version": version, "occurred_at": self.now,
                         "key": key, "causation_id": cause.event_id, "correlation_id": corr, "payload": payload})
        headers = self._headers.get(event_type)
        if headers is None:
            headers = self._headers[event_type] = {"event_type": event_type, "event_version": str(version), **self.trace}
        self.batch.emitted.append(OutboxRecord(event_id, COMMISSION_EVENTS, key, value, headers))


_ACCRUED, _ACCRUED_VERSION = CommissionAccrued.event_type, CommissionAccrued.version
_SKIPPED, _SKIPPED_VERSION = CommissionAccrualSkipped.event_type, CommissionAccrualSkipped.version


class StreamProgress(Protocol):
    async def lagging(self, topics: set[str]) -> list[tuple[str, int]]:
        """This consumer's partitions of `topics` not yet read to their end."""
        ...


class ProjectorProgress:
    """Progress from the projector's consumer: the position after the records handed out, against
    the partition's high watermark (live) or the replay's stop offsets."""

    def __init__(self, projector_of: Callable[[], Projector | None], ends: dict[Any, int] | None = None) -> None:
        self.projector_of, self.ends = projector_of, ends

    async def lagging(self, topics: set[str]) -> list[tuple[str, int]]:
        projector = self.projector_of()
        if projector is None:
            return []
        consumer = projector._consumer()  # noqa: SLF001 - the projector owns the one consumer
        out = []
        for tp in list(projector.positions):
            if tp.topic not in topics:
                continue
            end = self.ends.get(tp) if self.ends is not None else consumer.highwater(tp)
            try:
                pos = await consumer.position(tp)
            except Exception:
                pos = projector.positions.get(tp, 0)
            if end is None or pos < end:
                out.append((tp.topic, tp.partition))
        return out


REFERRAL_TYPES = frozenset({"PromoterEnrolled", "PromoterStatusChanged", "ReferralBound", "ReferralTakenOver"})
ORDER_TYPES = frozenset({"OrderPaid", "OrderRefunded", "OrderCompleted"})
PAYOUT_TYPES = frozenset({"WithdrawalRequested", "WithdrawalRejected", "WithdrawalReleased", "WithdrawalPaid"})


class CommissionProjection:
    name = "commission"
    topics = (REFERRAL_EVENTS, ORDER_EVENTS, PAYOUT_EVENTS)
    event_types = REFERRAL_TYPES | ORDER_TYPES | PAYOUT_TYPES

    def __init__(self, *, emit: bool = True, due_channel: str | None = None, progress: "StreamProgress | None" = None,
                 skew: timedelta = timedelta(seconds=1),
                 on_batch: Callable[[dict[str, Any]], None] | None = None) -> None:
        #: False in the audit replay: decisions are recomputed but never published again
        self.emit = emit
        self.due_channel = due_channel
        self.on_batch = on_batch
        self._plan_cache: dict[int, Plan] = {}  # plan versions never change once published
        #: how far this consumer has read the streams orders wait for (None: never wait)
        self.progress = progress
        #: allowance for events of one partition published slightly out of event-time order
        self.skew = skew
        self._maybe_held = True  # unknown at start
        self._held_checked = 0.0

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        t0 = time.perf_counter()
        events = batch.events
        statuses: list[tuple] = []
        bindings: list[tuple] = []
        flow: list[Any] = []
        for a in events:
            et = a.envelope.event_type
            p: Any = a.payload
            if et in REFERRAL_TYPES:
                if et == "ReferralBound" or et == "ReferralTakenOver":
                    bindings.append((p.customer_id, p.promoter_id, p.bound_at, a.envelope.event_id))
                elif et == "PromoterEnrolled":
                    statuses.append((p.promoter_id, "active", None, p.enrolled_at, "enrolled", a.envelope.event_id))
                else:
                    statuses.append((p.promoter_id, p.status, p.until, p.changed_at, p.reason, a.envelope.event_id))
            else:
                flow.append(a)

        # 1. time-keyed reference data first: arrival order within the batch does not matter
        await store.insert_statuses(conn, statuses)
        await store.insert_bindings(conn, bindings)
        if bindings:
            late = await store.record_late_bindings(conn, [(c, p, t) for c, p, t, _ in bindings])
            if late:
                LATE_BINDINGS.inc(late)
                log.warning("late_bindings", orders=late)

        # the ordering guard: an order waits until the streams it depends on were read past its paid_at
        rest = await self._guard(conn, events, flow)
        if not rest:
            return

        # 2. load what the decisions need, batch-sized
        history = History()
        paid = [a for a in rest if a.envelope.event_type == "OrderPaid"]
        plans = await plan_book(conn, self._plan_cache) if paid else PlanBook()
        buyers = {a.payload.buyer_id for a in paid}  # type: ignore[attr-defined]
        users: set[str] = set(buyers)
        if buyers:
            rows = await store.load_bindings(conn, buyers)
            ups = {r["promoter_id"] for r in rows} - users
            users |= ups
            if ups:
                rows += await store.load_bindings(conn, ups)
                users |= {r["promoter_id"] for r in rows}
            for r in rows:
                history.add_binding(r["customer_id"], r["bound_at"], r["seq"], r["promoter_id"])
        refund_or_done = [a.payload.order_id for a in rest if a.envelope.event_type in ("OrderRefunded", "OrderCompleted")]  # type: ignore[attr-defined]
        states = await store.load_accruals(conn, refund_or_done, []) if refund_or_done else []
        by_order: dict[str, list] = {}
        for st in states:
            by_order.setdefault(st.order_id, []).append(st)
        if users:
            for r in await store.load_statuses(conn, users):
                history.add_status(r["promoter_id"], r["changed_at"], r["seq"], r["status"], r["until"])
            for r in await store.load_tiers(conn, users):
                history.add_tier(r["promoter_id"], r["effective_at"], r["seq"], r["to_tier"])
        pairs = []
        for a in paid:
            p = a.payload
            r1 = history.referrer_at(p.buyer_id, p.paid_at)  # type: ignore[attr-defined]
            if r1 is not None:
                pairs.append((r1, p.buyer_id))  # type: ignore[attr-defined]
        refund_keys = [(a.payload.order_id, a.payload.out_refund_no) for a in rest if a.envelope.event_type == "OrderRefunded"]  # type: ignore[attr-defined]
        ledger = Ledger(
            history=history, plans=plans, accruals=by_order,
            known_orders=await store.known_orders(conn, [a.payload.order_id for a in paid]) if paid else set(),  # type: ignore[attr-defined]
            records=await store.load_records(conn, users) if users else {},
            direct_pairs=await store.load_pairs(conn, pairs), refunds_seen=await store.refunds_seen(conn, refund_keys),
        )

        # 3. fold the batch in event-time order (stable: one order's events keep their sequence), so
        #    that a tier reached by one order applies to the orders of the batch paid after it
        rest.sort(key=lambda a: a.envelope.occurred_at)
        for a in rest:
            et, p = a.envelope.event_type, a.payload
            if et == "OrderPaid":
                ledger.on_paid(PaidOrder(p.order_id, p.buyer_id, p.paid_at, tuple(  # type: ignore[attr-defined]
                    PaidLine(l.line_id, l.product_id, l.category_id, l.quantity, l.paid_fen) for l in p.lines)), a.envelope)  # type: ignore[attr-defined]
            elif et == "OrderRefunded":
                ledger.on_refund(p.order_id, p.out_refund_no, [(l.line_id, l.amount_fen) for l in p.lines],  # type: ignore[attr-defined]
                                 p.refunded_at, a.envelope)  # type: ignore[attr-defined]
            elif et == "OrderCompleted":
                ledger.on_completed(p.order_id, p.completed_at, a.envelope.event_id)  # type: ignore[attr-defined]
            elif et in PAYOUT_TYPES:
                ledger.on_money(et, p)

        # 4. decisions -> events (their money moves the balances) -> rows, balances, outbox
        out = _Outgoing(batch if self.emit else Batch(events=[]))
        accrual_rows = publish(ledger, out)
        await write_back(conn, ledger, accrual_rows)
        if ledger.dues and self.due_channel:
            await store.notify_due(conn, self.due_channel)
        if self.on_batch is not None:
            self.on_batch({"events": len(events), "folded": len(rest), "accruals": len(ledger.accruals),
                           "seconds": time.perf_counter() - t0})

    async def _guard(self, conn: asyncpg.Connection, events: list[Applied], flow: list[Any]) -> list[Any]:
        """Hold back order events whose OrderPaid was paid after what the referral stream has
        been read to; release held orders once it has. Returns the events to fold now: the
        released ones first (they are older), then this batch's."""
        marks: dict[tuple[str, int], datetime] = {}
        for a in events:
            if a.topic == REFERRAL_EVENTS:
                k = (a.topic, a.partition)
                if k not in marks or a.envelope.occurred_at > marks[k]:
                    marks[k] = a.envelope.occurred_at
        if marks:
            await store.advance_watermarks(conn, [(t, p, at) for (t, p), at in marks.items()])
        lagging = await self.progress.lagging({REFERRAL_EVENTS}) if self.progress is not None else []
        cutoff: datetime | None = None  # None: every order is ready
        if lagging:
            watermarks = await store.watermarks(conn)
            for tp in lagging:
                mark = watermarks.get(tp)
                edge = mark - self.skew if mark is not None else _NEVER
                cutoff = edge if cutoff is None else min(cutoff, edge)
        work: list[Any] = []
        held: set[str] = set()
        # the held table is nearly always empty: look at it when something may be there, and
        # at least every second (a rolled-back release must not strand what it took)
        now = time.monotonic()
        if self._maybe_held or now - self._held_checked > 1.0:
            self._held_checked = now
            order_ids = [a.payload.order_id for a in flow if a.envelope.event_type in ORDER_TYPES]
            held = await store.deferred_orders(conn, order_ids)
            for r in await store.release_deferred(conn, cutoff):
                env = Envelope.from_bytes(r["envelope"])
                work.append(_Held(env, catalog.payload(env)))
                held.discard(r["order_id"])
            self._maybe_held = cutoff is not None and bool(await store.any_deferred(conn))
        else:
            # a refund or completion never overtakes its held payment
            followups = [a.payload.order_id for a in flow if a.envelope.event_type in ("OrderRefunded", "OrderCompleted")]
            if followups:
                held = await store.deferred_orders(conn, followups)
        to_defer: list[tuple[str, datetime | None, bytes]] = []
        for a in flow:
            et = a.envelope.event_type
            if et in ORDER_TYPES:
                oid = a.payload.order_id
                late = et == "OrderPaid" and cutoff is not None and a.payload.paid_at > cutoff
                if oid in held or late:
                    held.add(oid)
                    to_defer.append((oid, a.payload.paid_at if et == "OrderPaid" else None, a.envelope.to_bytes()))
                    continue
            work.append(a)
        if to_defer:
            DEFERRED.inc(len(to_defer))
            self._maybe_held = True
            await store.defer(conn, to_defer)
        return work

async def plan_book(conn: asyncpg.Connection, cache: dict[int, Plan]) -> PlanBook:
    """Every plan version by publication time (the parsed plans are cached: a version never changes)."""
    rows = await store.plan_versions(conn)
    missing = [r["plan_version"] for r in rows if r["plan_version"] not in cache]
    if missing:
        for v, data in (await store.plans_by_version(conn, missing)).items():
            cache[v] = Plan.model_validate(data)
    book = PlanBook()
    for r in rows:
        book.add(r["published_at"], r["plan_version"], cache[r["plan_version"]])
    return book


# `derive_event_id` without its per-call overhead (namespace bytes, UUID(bytes=, version=), the
# cause's str): the same uuid5 (sha1 of namespace + "cause:part:part", version 5, RFC 4122
# variant); a unit test checks it equals the shared function for random inputs.
_NS_BYTES = _DERIVED_NS.bytes
_UUID5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID5_SET = (5 << 76) | (0x8000 << 48)


def _derive(cause: str, *parts: object) -> uuid.UUID:
    digest = sha1(_NS_BYTES + f"{cause}:{':'.join(map(str, parts))}".encode()).digest()
    return uuid.UUID(int=int.from_bytes(digest[:16], "big") & _UUID5_CLEAR | _UUID5_SET)


def publish(ledger: Ledger, out: "_Outgoing") -> list[tuple[Any, Any]]:
    """Turn the ledger's decisions into events: each money event moves the balances by
    `delta_of` (folded into `ledger.deltas`) and goes to the outbox. Returns (accrual state,
    event id) rows for the accruals table."""
    accrual_rows = []
    levels: dict[str, int] = {}
    last_cause, cause_id = None, ""
    for acc, cause in ledger.accruals:
        if cause is not last_cause:  # one order's accruals share their cause
            last_cause, cause_id = cause, str(cause.event_id)
        eid = _derive(cause_id, acc.line_id, acc.level)
        accrual_rows.append((ledger.by_id[acc.accrual_id], eid))
        levels[acc.level] = levels.get(acc.level, 0) + 1
        out.accrued(ledger, acc, eid, cause)
    for level, n in levels.items():
        ACCRUALS.labels(level).inc(n)
    for s, _, cause in ledger.skips:
        out.skipped(s, _derive(str(cause.event_id), "skip", s.line_id or "-", s.level), cause)
    for r in ledger.reversals:
        st = r.state
        out.money(ledger, CommissionReversed(
            accrual_id=st.accrual_id, order_id=st.order_id, line_id=st.line_id, beneficiary_id=st.beneficiary_id,
            out_refund_no=r.out_refund_no, amount_fen=r.amount_fen, from_status=r.from_status,  # type: ignore[arg-type]
            reversed_at=r.reversed_at,
        ), derive_event_id(r.cause.event_id, st.accrual_id, "reversed"), r.cause)
    for st, amount, at, cause in ledger.settlements:
        out.money(ledger, CommissionSettled(
            accrual_id=st.accrual_id, order_id=st.order_id, beneficiary_id=st.beneficiary_id, amount_fen=amount, settled_at=at,
        ), derive_event_id(cause.event_id, st.accrual_id, "settled"), cause)
    for c in ledger.tier_changes:
        out.add(PromoterTierChanged(
            promoter_id=c.promoter_id, from_tier=c.from_tier, to_tier=c.to_tier, rule=c.rule, effective_at=c.effective_at,
        ), derive_event_id(c.cause.event_id, "tier", c.promoter_id, c.to_tier), c.cause)
    return accrual_rows


async def write_back(conn: asyncpg.Connection, ledger: Ledger, accrual_rows: list) -> None:
    """Everything the ledger changed, in the caller's transaction (records before balances, the
    lock order the settlement scheduler uses too)."""
    await store.write_new_orders(conn, ledger.new_orders)
    await store.write_new_accruals(conn, accrual_rows)
    await store.update_accruals(conn, [s for s in ledger.by_id.values() if s.dirty and not s.new])
    await store.write_skips(conn, [(s.order_id, s.line_id, s.beneficiary_id, s.level, s.reason, at) for s, at, _ in ledger.skips])
    await store.write_refunds_applied(conn, ledger.refunds_applied)
    await store.write_dues(conn, ledger.dues)
    await store.delete_dues(conn, [st.accrual_id for st, _, _, _ in ledger.settlements])
    await store.write_tier_changes(conn, ledger.tier_changes)
    await store.write_records(conn, {k: ledger.records[k] for k in ledger.touched_records})
    await store.write_pairs(conn, ledger.new_pairs)
    await store.add_to_balances(conn, ledger.deltas)


def plan_json(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.model_dump_json())
