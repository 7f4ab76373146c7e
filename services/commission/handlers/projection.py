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

import asyncio
import json
from hashlib import sha1
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic_core import to_json
from prometheus_client import Counter

from services.commission.domain.accrual import Accrual, PaidLine, PaidOrder, Skip
from services.commission.domain.chain import History
from services.commission.domain.ledger import Ledger, PlanBook, TierChange
from services.commission.domain.plan import Plan
from services.commission.domain.tiers import PromoterRecord, epoch_of, epoch_start, tier_reached
from services.commission.handlers.reference import NAME as REFERENCE
from services.commission.handlers.reference import REFERRAL_TYPES  # noqa: F401 - re-exported
from services.commission.store import state as store
from shared.kafka_security import kafka_options
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

DEFERRED = Counter("fenxiao_commission_order_events_deferred_total",
                   "Order events held until the referral stream was read past their payment")
ACCRUALS = Counter("fenxiao_commission_accruals_total", "CommissionAccrued decided", ["level"])

_NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Held:
    """An order event released from the deferred table (same shape the fold reads from Applied)."""

    envelope: Envelope
    payload: EventPayload
    topic: str
    partition: int


class _Outgoing:
    """Caused events of one batch into its outbox records: the envelope `new_event(payload,
    event_id=..., cause=..., occurred_at=<batch time>)` builds (causation and correlation carried
    over), serialized in one `pydantic_core.to_json` call over plain values, with the batch's trace
    headers computed once: at thousands of accruals per second this is a large share of the CPU.
    The hot events (accrued, skipped) are built from the domain's decisions without a pydantic
    model per event (the domain guarantees what the contract would validate); unit tests check
    the bytes against `new_event(...).to_bytes()` for random inputs.

    Two steps: recording an event moves the balances at once (the batch's write needs the deltas
    and ids), its bytes are made by `finish()`, which the projection runs while PostgreSQL executes
    the batch's write (`write_back(meanwhile=...)`): the serialization is pure CPU, the write is
    the longest wait of a backlog batch. `finish()` appends to the batch's outbox records in the
    order the events were recorded."""

    def __init__(self, batch: Batch, now: datetime | None = None) -> None:
        self.batch = batch
        self.now = now or datetime.now(timezone.utc)
        self.trace = inject_headers()
        self._headers: dict[str, dict[str, str]] = {}
        #: recorded, not yet serialized: (event type, version, key, payload, event id, cause)
        self._todo: list[tuple[str, int, str, Any, Any, Any]] = []

    def money(self, ledger: Ledger, payload: EventPayload, event_id: Any, cause: Envelope) -> None:
        """A money event: it moves the balances in the transaction that records it."""
        ledger.on_money(payload.event_type, payload)
        self.add(payload, event_id, cause)

    def add(self, payload: EventPayload, event_id: Any, cause: Any) -> None:
        self._todo.append((payload.event_type, payload.version, payload.aggregate_key(), payload, event_id, cause))

    def accrued(self, ledger: Ledger, a: Accrual, event_id: Any, cause: Any) -> None:
        """`CommissionAccrued` straight from the domain's accrual (a money event; `delta_of`
        reads the same two fields from it as from the contract payload)."""
        ledger.on_money(_ACCRUED, a)
        self._todo.append((_ACCRUED, _ACCRUED_VERSION, a.beneficiary_id, a, event_id, cause))

    def skipped(self, s: Skip, event_id: Any, cause: Any) -> None:
        self._todo.append((_SKIPPED, _SKIPPED_VERSION, s.beneficiary_id, s, event_id, cause))

    def finish(self) -> None:
        """Serialize what was recorded into the batch's outbox records (in recording order)."""
        todo, self._todo = self._todo, []
        emitted, now, headers_of = self.batch.emitted, self.now, self._headers
        for event_type, version, key, payload, event_id, cause in todo:
            if event_type is _ACCRUED:
                a = payload
                payload = {
                    "accrual_id": a.accrual_id, "order_id": a.order_id, "line_id": a.line_id,
                    "beneficiary_id": a.beneficiary_id, "buyer_id": a.buyer_id, "level": a.level, "base_fen": a.base_fen,
                    "quantity": a.quantity, "rate_bp": a.rate_bp, "fixed_fen_per_unit": a.fixed_fen_per_unit,
                    "amount_fen": a.amount_fen, "plan_version": a.plan_version, "tier": a.tier, "unfreeze": a.unfreeze,
                    "paid_at": a.paid_at, "kind": a.kind,
                }
            elif event_type is _SKIPPED:
                sk = payload
                payload = {"order_id": sk.order_id, "line_id": sk.line_id, "beneficiary_id": sk.beneficiary_id,
                           "level": sk.level, "reason": sk.reason}
            corr = getattr(cause, "correlation_id", None) or cause.event_id
            value = to_json({"event_id": event_id, "event_type": event_type, "version": version, "occurred_at": now,
                             "key": key, "causation_id": cause.event_id, "correlation_id": corr, "payload": payload})
            headers = headers_of.get(event_type)
            if headers is None:
                headers = headers_of[event_type] = {"event_type": event_type, "event_version": str(version), **self.trace}
            emitted.append(OutboxRecord(event_id, COMMISSION_EVENTS, key, value, headers))


_ACCRUED, _ACCRUED_VERSION = CommissionAccrued.event_type, CommissionAccrued.version
_SKIPPED, _SKIPPED_VERSION = CommissionAccrualSkipped.event_type, CommissionAccrualSkipped.version


ORDER_TYPES = frozenset({"OrderPaid", "OrderRefunded", "OrderCompleted"})
PAYOUT_TYPES = frozenset({"WithdrawalRequested", "WithdrawalRejected", "WithdrawalReleased", "WithdrawalPaid"})
_FOREVER = datetime.max.replace(tzinfo=timezone.utc)
_TICK = timedelta(microseconds=1)


class EndOffsets:
    """The current end of a topic's partitions, asked of Kafka (a consumer without a group)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: dict[str, list[TopicPartition]] = {}

    async def __call__(self, topic: str) -> dict[int, int]:
        if self._consumer is None:
            c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **kafka_options())
            await c.start()
            self._consumer = c
        tps = self._tps.get(topic)
        if not tps:
            parts = (await self._consumer._client.fetch_all_metadata()).partitions_for_topic(topic)  # noqa: SLF001
            tps = self._tps[topic] = [TopicPartition(topic, p) for p in sorted(parts or ())]
        ends = await self._consumer.end_offsets(tps)
        return {tp.partition: o for tp, o in ends.items()}

    def known(self, topic: str) -> list[int]:
        return [tp.partition for tp in self._tps.get(topic, ())]

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class Reference:
    """The reference data in memory: every binding and status row the reference projection has
    committed, read incrementally by `seq` (its writes are serialised, so seq order is commit
    order), plus the tiers by epoch computed so far."""

    def __init__(self) -> None:
        self.history = History()
        self.binding_seq = 0
        self.status_seq = 0
        #: (promoter, epoch, plan version) -> tier in force in that epoch
        self.tiers: dict[tuple[str, int, int], str] = {}
        #: (promoter, tier) already announced by a PromoterTierChanged
        self.announced: set[tuple[str, str]] = set()

    def take(self, r: asyncpg.Record) -> None:
        """One 'b' or 's' row of `store.batch_context`."""
        if r["kind"] == "b":
            self.history.add_binding(r["a"], r["t1"], r["n1"], r["b"])
            self.binding_seq = max(self.binding_seq, r["n1"])
        else:
            self.history.add_status(r["a"], r["t1"], r["n1"], r["c"], r["t2"])
            self.status_seq = max(self.status_seq, r["n1"])


class CommissionProjection:
    """The order worker: order and payout events, in the consumer group `commission`; any number
    of processes share the order partitions. Reference data comes from `ReferenceProjection`
    through PostgreSQL (see `Reference`); the ordering guard reads that projection's stored
    positions, so it holds whoever applied the referral stream."""

    name = "commission"
    topics = (ORDER_EVENTS, PAYOUT_EVENTS)
    event_types = ORDER_TYPES | PAYOUT_TYPES

    def __init__(self, *, emit: bool = True, due_channel: str | None = None, bootstrap: str | None = None,
                 skew: timedelta = timedelta(seconds=1), tier_epoch: timedelta = timedelta(hours=1),
                 owned: Callable[[], list[int] | None] | None = None,
                 on_batch: Callable[[dict[str, Any]], None] | None = None, release_max: int | None = None) -> None:
        #: False: decisions are recomputed but never published (a dry run)
        self.emit = emit
        self.due_channel = due_channel
        self.on_batch = on_batch
        self._plan_cache: dict[int, Plan] = {}  # plan versions never change once published
        self._plans: PlanBook | None = None
        self._plan_count = -1
        #: Kafka's end offsets (None: never wait for the referral stream, e.g. a unit test)
        self.end_offsets = EndOffsets(bootstrap) if bootstrap else None
        #: allowance for events of one partition published slightly out of event-time order
        self.skew = skew
        self.tier_epoch = tier_epoch
        #: the order partitions this process owns (None: all, a single process or a test)
        self.owned = owned or (lambda: None)
        self.reference = Reference()
        #: every order partition has been folded up to this time (for tiers by epoch)
        self._orders_complete = _NEVER
        self._maybe_held = True  # unknown at start
        #: the last batch's payments were all covered by the referral watermarks (no end offsets needed)
        self._covered = False
        self._held_checked = 0.0
        self._lock = asyncio.Lock()
        self._pending_tiers: list[tuple[str, int, Plan, str]] = []
        #: held orders released per batch at most (None: all that may go): a backlog held at start
        #: (thousands of orders, until every partition has been read) then goes in batch-sized steps
        self.release_max = release_max

    async def close(self) -> None:
        if self.end_offsets is not None:
            await self.end_offsets.close()

    @property
    def may_hold(self) -> bool:
        return self._maybe_held

    async def tick(self, pool: asyncpg.Pool) -> Batch:
        """Release held orders when nothing else comes (their partitions may be idle): the same
        fold as a batch of no new events, in a transaction of its own."""
        from shared.outbox import record as record_outbox

        batch = Batch(events=[])
        async with pool.acquire() as conn, conn.transaction():
            await self.apply(conn, batch)
            await record_outbox(conn, batch.emitted)
        return batch

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        async with self._lock:
            await self._apply(conn, batch)

    async def _apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        t0 = time.perf_counter()
        events = batch.events
        # the ordering guard: what may be decided now, what waits (and what waited and may go)
        rest, plans, known = await self._guard(conn, events)
        if not rest:
            return
        with_tiers = any(p.upgrade_ladder for _, _, p in plans.versions)

        paid = [a for a in rest if a.envelope.event_type == "OrderPaid"]
        refund_or_done = [a.payload.order_id for a in rest if a.envelope.event_type in ("OrderRefunded", "OrderCompleted")]  # type: ignore[attr-defined]
        states = await store.load_accruals(conn, refund_or_done, []) if refund_or_done else []
        by_order: dict[str, list] = {}
        for st in states:
            by_order.setdefault(st.order_id, []).append(st)
        ref = self.reference.history
        history = History(bindings=ref.bindings, statuses=ref.statuses, tiers={})
        if paid and with_tiers:
            await self._tiers_for(conn, paid, plans, history)
        refund_keys = [(a.payload.order_id, a.payload.out_refund_no) for a in rest if a.envelope.event_type == "OrderRefunded"]  # type: ignore[attr-defined]
        ledger = Ledger(
            history=history, plans=plans, accruals=by_order,
            known_orders=known,
            records={}, direct_pairs=set(),
            refunds_seen=await store.refunds_seen(conn, refund_keys) if refund_keys else set(),
            tier_epoch=self.tier_epoch,
        )

        # fold in event-time order (stable: one order's events keep their sequence)
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

        # decisions -> events (their money moves the balances) -> rows, balances, outbox
        out = _Outgoing(batch if self.emit else Batch(events=[]))
        accrual_rows = publish(ledger, out)
        if self._pending_tiers:
            await self._announce_tiers(conn, out)
        await write_back(conn, ledger, accrual_rows, self.tier_epoch, meanwhile=out.finish)
        if ledger.dues and self.due_channel:
            await store.notify_due(conn, self.due_channel)
        if self.on_batch is not None:
            self.on_batch({"events": len(events), "folded": len(rest), "accruals": len(ledger.accruals),
                           "seconds": time.perf_counter() - t0})

    async def _plan_book(self, conn: asyncpg.Connection, n: int) -> PlanBook:
        if self._plans is None or n != self._plan_count:
            self._plans = await plan_book(conn, self._plan_cache)
            self._plan_count = n
        return self._plans

    # -- tiers by epoch -------------------------------------------------------------------------
    async def _tiers_for(self, conn: asyncpg.Connection, paid: list[Any], plans: PlanBook, history: History) -> None:
        """Put into `history` the tier in force, in its epoch, for everyone these orders may pay
        (whoever is a promoter at the payment): from the contributions of the epochs before
        (cached; they no longer change once every order partition has been folded past the
        epoch's start, which the guard waits for)."""
        ref = self.reference.history
        wanted: dict[tuple[str, int, int], tuple[Plan, datetime]] = {}
        use: list[tuple[str, int, int]] = []
        for a in paid:
            p = a.payload
            found = plans.in_force(p.paid_at)
            if found is None or not found[1].upgrade_ladder:
                continue
            version, plan = found
            e = epoch_of(p.paid_at, self.tier_epoch)
            r1 = ref.referrer_at(p.buyer_id, p.paid_at)
            r2 = ref.referrer_at(r1, p.paid_at) if r1 is not None else None
            for who in (p.buyer_id, r1, r2):
                # a tier is read only for a slot whose promoter is active at the payment, so nobody
                # who is not a promoter then needs one (most buyers: no query for their record)
                if who is None or ref.status_at(who, p.paid_at) is None:
                    continue
                k = (who, e, version)
                use.append(k)
                if k not in self.reference.tiers and k not in wanted:
                    wanted[k] = (plan, epoch_start(e, self.tier_epoch))
        if wanted:
            keys = list(wanted)
            rows = await store.records_before(conn, [k[0] for k in keys], [k[1] for k in keys],
                                              [wanted[k][1] for k in keys])
            for k, r in zip(keys, rows):
                plan = wanted[k][0]
                tier, _ = tier_reached(plan, PromoterRecord(r["orders"], r["direct_buyers"], r["settled_sales_fen"]))
                self.reference.tiers[k] = tier
                if tier != plan.tiers[0].name and (k[0], tier) not in self.reference.announced:
                    self._pending_tiers.append((k[0], k[1], plan, tier))
        seen: set[tuple[str, int, int]] = set()
        for k in use:
            if k in seen:
                continue
            seen.add(k)
            history.add_tier(k[0], epoch_start(k[1], self.tier_epoch), k[1], self.reference.tiers[k])

    async def _announce_tiers(self, conn: asyncpg.Connection, out: "_Outgoing") -> None:
        """PromoterTierChanged for each tier step first in force in an epoch: effective at the
        start of the first epoch whose earlier contributions reach it, whichever worker notices
        first (one row per promoter and tier; the event id is derived from both)."""
        pending, self._pending_tiers = self._pending_tiers, []
        changes: list[TierChange] = []
        histories = await store.record_histories(
            conn, [(promoter, epoch, epoch_start(epoch, self.tier_epoch)) for promoter, epoch, _, _ in pending])
        for (promoter, epoch, plan, _), (buckets, firsts) in zip(pending, histories):
            by_epoch: dict[int, list[int]] = {}
            for b, orders, sales in buckets:
                v = by_epoch.setdefault(b, [0, 0, 0])
                v[0] += orders
                v[2] += sales
            for t in firsts:
                b = epoch_of(t, self.tier_epoch) if t is not None else 0
                by_epoch.setdefault(b, [0, 0, 0])[1] += 1
            total = [0, 0, 0]
            current = plan.tiers[0].name
            for b in sorted(by_epoch):
                v = by_epoch[b]
                total = [total[0] + v[0], total[1] + v[1], total[2] + v[2]]
                tier, rule = tier_reached(plan, PromoterRecord(total[0], total[1], total[2]))
                if tier != current and rule is not None:
                    # in force from the next epoch on: its start is this epoch's end
                    changes.append(TierChange(promoter, current, tier, rule, epoch_start(b + 1, self.tier_epoch), None))
                    current = tier
        done = await store.insert_tier_changes(conn, changes)
        for c in changes:
            self.reference.announced.add((c.promoter_id, c.to_tier))
            if (c.promoter_id, c.to_tier) not in done:
                continue
            eid = _derive(f"tier:{c.promoter_id}", c.to_tier, c.effective_at.isoformat())
            out.add(PromoterTierChanged(promoter_id=c.promoter_id, from_tier=c.from_tier, to_tier=c.to_tier, rule=c.rule,
                                        effective_at=c.effective_at), eid, _Cause(eid))

    # -- the cross-topic ordering guard ---------------------------------------------------------
    async def _guard(self, conn: asyncpg.Connection, events: list[Applied]) -> tuple[list[Any], PlanBook, set[str]]:
        """Hold back order events whose OrderPaid was paid after what the referral stream has
        been applied to (by whichever process), or, with tier rules, in an epoch whose earlier
        epochs not every order partition has been folded through; release held orders once they
        may go. Returns the events to fold now (the released ones first, then this batch's), the
        plans and the orders among them already decided."""
        flow = [a for a in events if a.envelope.event_type in ORDER_TYPES]
        payouts = [a for a in events if a.envelope.event_type in PAYOUT_TYPES]
        # an order partition's watermark is the latest paid_at folded there: only payments count
        # towards tiers, and a refund or completion of an old order is stamped hours after its
        # payment, which would claim the partition complete up to now
        marks: dict[int, datetime] = {}
        for a in flow:
            if a.envelope.event_type != "OrderPaid":
                continue
            at = a.payload.paid_at  # type: ignore[attr-defined]
            if a.partition not in marks or at > marks[a.partition]:
                marks[a.partition] = at
        owned = self.owned()
        now = time.monotonic()
        check_held = self._maybe_held or now - self._held_checked > 1.0
        if not flow and not check_held:
            return payouts, self._plans or PlanBook(), set()
        paid_ats = [a.payload.paid_at for a in flow if a.envelope.event_type == "OrderPaid"]  # type: ignore[attr-defined]
        ref = self.reference
        # Kafka's end of the referral stream, asked beside the batch's read (the two answers do not
        # depend on each other, and both come after the batch's orders were read), unless the
        # last batch found the watermarks past its payments and did not need it.
        ends = asyncio.ensure_future(self.end_offsets(REFERRAL_EVENTS)) \
            if self.end_offsets is not None and not self._covered else None
        try:
            rows = await store.batch_context(
                conn, [(ORDER_EVENTS, p, at) for p, at in marks.items()], REFERENCE, REFERRAL_EVENTS, self.name, ORDER_EVENTS,
                ref.binding_seq, ref.status_seq,
                [a.payload.order_id for a in flow if a.envelope.event_type == "OrderPaid"])  # type: ignore[attr-defined]
            streams, known, n_plans = [], set(), 0
            for r in rows:
                k = r["kind"]
                if k == "p":
                    streams.append(r)
                elif k == "k":
                    known.add(r["a"])
                elif k == "n":
                    n_plans = r["n1"]
                else:
                    ref.take(r)  # the same snapshot as the positions: at least as new as they say
            plans = await self._plan_book(conn, n_plans)
        except BaseException:
            if ends is not None:
                ends.add_done_callback(_retrieved)
            raise
        with_tiers = any(p.upgrade_ladder for _, _, p in plans.versions)
        cutoff = await self._cutoff(streams, paid_ats, with_tiers, ends)
        work: list[Any] = []
        held: set[str] = set()
        if check_held:
            self._held_checked = now
            held = await store.deferred_orders(conn, [a.payload.order_id for a in flow])  # type: ignore[attr-defined]
            released = []
            for r in await store.release_deferred(conn, cutoff, owned, self.release_max):
                env = Envelope.from_bytes(r["envelope"])
                work.append(_Held(env, catalog.payload(env), ORDER_EVENTS, r["partition"]))
                held.discard(r["order_id"])
                if env.event_type == "OrderPaid":
                    released.append(work[-1].payload.order_id)  # type: ignore[attr-defined]
            if released:
                known |= await store.known_orders(conn, released)
            self._maybe_held = await store.any_deferred(conn, owned)
        else:
            followups = [a.payload.order_id for a in flow if a.envelope.event_type != "OrderPaid"]  # type: ignore[attr-defined]
            if followups:
                held = await store.deferred_orders(conn, followups)
        to_defer: list[Any] = []
        for a in flow:
            oid = a.payload.order_id  # type: ignore[attr-defined]
            late = a.envelope.event_type == "OrderPaid" and cutoff is not None and a.payload.paid_at > cutoff  # type: ignore[attr-defined]
            if oid in held or late:
                held.add(oid)
                to_defer.append(a)
                continue
            work.append(a)
        if with_tiers:
            # one epoch per transaction: the tiers of a later epoch count this one's contributions
            epochs = {epoch_of(a.payload.paid_at, self.tier_epoch) for a in work if a.envelope.event_type == "OrderPaid"}  # type: ignore[attr-defined]
            if len(epochs) > 1:
                first = min(epochs)
                keep, later = [], set()
                for a in work:
                    et = a.envelope.event_type
                    oid = a.payload.order_id  # type: ignore[attr-defined]
                    if oid in later or (et == "OrderPaid" and epoch_of(a.payload.paid_at, self.tier_epoch) > first):  # type: ignore[attr-defined]
                        later.add(oid)
                        to_defer.append(a)
                        continue
                    keep.append(a)
                work = keep
        if to_defer:
            await self._defer(conn, to_defer)
        return work + payouts, plans, known

    async def _defer(self, conn: asyncpg.Connection, events: list[Any]) -> None:
        DEFERRED.inc(len(events))
        self._maybe_held = True
        await store.defer(conn, [(a.payload.order_id, a.payload.paid_at if a.envelope.event_type == "OrderPaid" else None,  # type: ignore[attr-defined]
                                  a.envelope.to_bytes(), a.partition) for a in events])

    async def _cutoff(self, streams: list[asyncpg.Record], paid_ats: list[datetime], with_tiers: bool,
                      ends: "asyncio.Future[dict[int, int]] | None" = None) -> datetime | None:
        """The latest paid_at that may be decided now (None: any). `ends`: the referral stream's
        end offsets already asked for this batch."""
        ref = [r for r in streams if r["a"] == REFERENCE]
        cutoff: datetime | None = None
        if self.end_offsets is not None:
            latest = max(paid_ats) if paid_ats else _FOREVER
            marks = {r["n1"]: (r["n2"], r["t1"]) for r in ref}
            # cheap case first: every referral partition's watermark is past every payment here
            parts = self.end_offsets.known(REFERRAL_EVENTS)
            covered = latest != _FOREVER and bool(parts) and all(
                p in marks and marks[p][1] is not None and marks[p][1] - self.skew >= latest for p in parts)
            self._covered = covered
            if ends is not None and covered:
                await asyncio.wait([ends])  # not needed after all: let it finish (it ran beside the read)
                ends.add_done_callback(_retrieved)
                ends = None
            if not covered:
                for p, end in (await (ends if ends is not None else self.end_offsets(REFERRAL_EVENTS))).items():
                    pos, mark = marks.get(p, (0, None))
                    if pos >= end:
                        continue
                    edge = mark - self.skew if mark is not None else _NEVER
                    cutoff = edge if cutoff is None else min(cutoff, edge)
        if with_tiers and self.end_offsets is not None:
            latest_start = max((epoch_start(epoch_of(t, self.tier_epoch), self.tier_epoch) for t in paid_ats), default=_NEVER)
            if latest_start > self._orders_complete or self._maybe_held:
                orders = {r["n1"]: r for r in streams if r["a"] == self.name}
                ends = await self.end_offsets(ORDER_EVENTS)
                complete = _FOREVER
                for p, end in ends.items():
                    r = orders.get(p)
                    pos, mark, held_from = (r["n2"], r["t1"], r["t2"]) if r else (0, None, None)
                    edge = _FOREVER if pos >= end else (mark - self.skew if mark is not None else _NEVER)
                    if held_from is not None:
                        edge = min(edge, held_from - _TICK)
                    complete = min(complete, edge)
                if complete != _FOREVER:
                    self._orders_complete = max(self._orders_complete, complete)
                # an order may go when its epoch started at or before `complete`
                if complete != _FOREVER:
                    e = epoch_of(complete, self.tier_epoch)
                    last_ok = epoch_start(e + 1, self.tier_epoch)
                    if complete == epoch_start(e + 1, self.tier_epoch):
                        last_ok = epoch_start(e + 2, self.tier_epoch)
                    cutoff = last_ok if cutoff is None else min(cutoff, last_ok)
        return cutoff


def _retrieved(f: "asyncio.Future[Any]") -> None:
    if not f.cancelled():
        f.exception()  # an unused answer's error is not this batch's


class _Cause:
    __slots__ = ("event_id", "correlation_id")

    def __init__(self, event_id: Any) -> None:
        self.event_id, self.correlation_id = event_id, None


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
        # a management bonus shares its line and level with that level's commission, not its id
        eid = _derive(cause_id, acc.line_id, acc.level) if acc.kind == "commission" else \
            _derive(cause_id, acc.line_id, acc.level, acc.kind)
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


async def write_back(conn: asyncpg.Connection, ledger: Ledger, accrual_rows: list, tier_epoch: timedelta | None = None,
                     meanwhile: Callable[[], None] | None = None) -> None:
    """Everything the ledger changed, in the caller's transaction: what only some batches change
    (existing accruals, refunds, settlement dues, tier changes) by a statement each when there is
    any, then what every batch adds in one statement (`store.write_batch`: new orders, accruals
    and skips, record buckets, first purchases, balances; records before balances, the lock order
    the settlement scheduler uses too). `meanwhile`: CPU work run here while PostgreSQL executes
    that statement (the event bytes: `_Outgoing.finish`), else before returning: always run once."""
    await store.update_accruals(conn, [s for s in ledger.by_id.values() if s.dirty and not s.new])
    await store.write_refunds_applied(conn, ledger.refunds_applied)
    await store.write_dues(conn, ledger.dues)
    await store.delete_dues(conn, [st.accrual_id for st, _, _, _ in ledger.settlements])
    await store.write_tier_changes(conn, ledger.tier_changes)
    buckets: dict[tuple[str, int], list[int]] = {}
    firsts: dict[tuple[str, str], datetime] = {}
    if tier_epoch is None:
        await store.write_records(conn, {k: ledger.records[k] for k in ledger.touched_records})
        await store.write_pairs(conn, ledger.new_pairs)
    else:
        for promoter, at, orders, buyer, sales in ledger.contributions:
            if orders or sales:
                v = buckets.setdefault((promoter, epoch_of(at, tier_epoch)), [0, 0])
                v[0] += orders
                v[1] += sales
            if buyer is not None and ((promoter, buyer) not in firsts or at < firsts[(promoter, buyer)]):
                firsts[(promoter, buyer)] = at
    if ledger.new_orders or accrual_rows or ledger.skips or buckets or firsts or ledger.deltas:
        await alongside(store.write_batch(conn, ledger.new_orders, accrual_rows,
                                          [s + (at,) for s, at, _ in ledger.skips],
                                          buckets, firsts, ledger.deltas), meanwhile)
    elif meanwhile is not None:
        meanwhile()


async def alongside(statement: Awaitable[Any], work: Callable[[], None] | None) -> Any:
    """Await `statement` (a query on the batch's connection) with `work` (pure CPU) done while the
    server executes it: the statement's task goes first and sends the query (one turn of the event
    loop; asyncpg encodes and writes it in that step), `work` runs, then its answer is awaited.
    If `work` fails or the caller is cancelled meanwhile, the statement is cancelled and settled
    before the error goes on, so the connection is free for the transaction's rollback."""
    if work is None:
        return await statement
    task = asyncio.ensure_future(statement)
    try:
        await asyncio.sleep(0)
        work()
    except BaseException:
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the error that goes on is the first one
        raise
    return await task


def plan_json(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.model_dump_json())
