"""Re-deriving audit: every accrual, reversal and settlement recomputed from the SOURCE events
alone, compared line by line with what commission published and with the live balances.

`services.commission.replay` proves that the balances are the sum of commission's own claims;
this proves the claims. It reads, from the log:

* referral: PromoterEnrolled, PromoterStatusChanged, ReferralBound, ReferralTakenOver (the chain
  and statuses as time-keyed histories);
* orders: OrderPaid, OrderRefunded, OrderCompleted;
* commission: CommissionPlanPublished only (the operators' input, with its `published_at`);
* payout: WithdrawalRequested / Rejected / Released / Paid (they move balances);

and folds the order events in event-time order through the domain's pure `Ledger` (the same
`accrue`, `reversal_amount`, `settlement_amount`, tier `upgrade` functions the service uses, not
its handlers or tables). A settlement is made when the event clock passes the accrual's due time
(`completed_at + freeze_days`), as the live scheduler does. The result is written to a fresh
schema (`--into`, default `audit_<UTC time>`) for inspection, then compared with:

* commission's published CommissionAccrued / CommissionReversed / CommissionSettled (the ones the
  live service had recorded at the audit's cut), line by line: accrual id (order:line:level),
  beneficiary, amount, plan version, tier; reversal (accrual, refund) amount and bucket; settlement;
* the live balances, per promoter and column (whole-log runs only).

Cut: one snapshot of the live schema (balances, projector positions, outbox position). Source
topics are read up to the positions the live projection had applied; commission's events recorded
by then are compared. Settlements due within `--grace-s` before the cut may or may not have been
made yet by the live scheduler: they are compared only when published (counted as in flight).

A period (`--from`, `--to`) restricts the comparison to the lines of orders paid in [from, to);
the whole log before `to` is still folded (tiers depend on earlier orders).
"""
from __future__ import annotations

import heapq
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import asyncpg
from aiokafka import TopicPartition

import shared.contracts  # noqa: F401  (registers every event type)
from shared import logread
from services.commission.domain.accrual import Accrual, PaidLine, PaidOrder
from services.commission.domain.balance import COLUMNS, Deltas, delta_of
from services.commission.domain.chain import History
from services.commission.domain.ledger import Ledger, PlanBook
from services.commission.domain.plan import Plan
from services.commission.domain.tiers import PromoterRecord, epoch_of, epoch_start, tier_reached
from shared import db
from shared.events import Envelope, catalog
from shared.topics import COMMISSION_EVENTS, ORDER_EVENTS, PAYOUT_EVENTS, REFERRAL_EVENTS

REFERRAL_TYPES = frozenset({"PromoterEnrolled", "PromoterStatusChanged", "ReferralBound", "ReferralTakenOver"})
ORDER_TYPES = frozenset({"OrderPaid", "OrderRefunded", "OrderCompleted"})
PAYOUT_MONEY = frozenset({"WithdrawalRequested", "WithdrawalRejected", "WithdrawalReleased", "WithdrawalPaid"})
PUBLISHED_MONEY = frozenset({"CommissionAccrued", "CommissionReversed", "CommissionSettled"})
PLAN_TYPES = frozenset({"CommissionPlanPublished"})
WANTED = {REFERRAL_EVENTS: REFERRAL_TYPES, ORDER_EVENTS: ORDER_TYPES, PAYOUT_EVENTS: PAYOUT_MONEY,
          COMMISSION_EVENTS: PUBLISHED_MONEY | PLAN_TYPES}


# -- what is derived ---------------------------------------------------------------------------
class DReversal(NamedTuple):
    accrual_id: str
    order_id: str
    line_id: str
    beneficiary_id: str
    out_refund_no: str
    amount_fen: int
    from_status: str
    reversed_at: datetime


class DSettlement(NamedTuple):
    accrual_id: str
    order_id: str
    beneficiary_id: str
    amount_fen: int
    due_at: datetime


@dataclass
class Source:
    """The source events of the log, parsed (and de-duplicated by event id)."""

    history: History = field(default_factory=History)
    plans: PlanBook = field(default_factory=PlanBook)
    #: (event time, arrival sequence, envelope, payload) of order events
    orders: list[tuple[datetime, int, Envelope, Any]] = field(default_factory=list)
    withdrawals: list[tuple[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    unparseable: int = 0
    _seq: int = 0
    _seen: set[uuid.UUID] = field(default_factory=set)

    def add(self, env: Envelope, payload: Any) -> None:
        if env.event_id in self._seen:
            return  # a resend: the live projector applies an event once
        self._seen.add(env.event_id)
        self._seq += 1
        et, p, seq = env.event_type, payload, self._seq
        self.counts[et] = self.counts.get(et, 0) + 1
        if et in ("ReferralBound", "ReferralTakenOver"):
            self.history.add_binding(p.customer_id, p.bound_at, seq, p.promoter_id)
        elif et == "PromoterEnrolled":
            self.history.add_status(p.promoter_id, p.enrolled_at, seq, "active", None)
        elif et == "PromoterStatusChanged":
            self.history.add_status(p.promoter_id, p.changed_at, seq, p.status, p.until)
        elif et == "CommissionPlanPublished":
            self.plans.add(p.published_at, p.plan_version, Plan.model_validate(p.plan))
        elif et in ORDER_TYPES:
            self.orders.append((env.occurred_at, seq, env, p))
        elif et in PAYOUT_MONEY:
            self.withdrawals.append((et, p))


@dataclass
class Derived:
    accruals: dict[str, Accrual] = field(default_factory=dict)
    reversals: dict[tuple[str, str], DReversal] = field(default_factory=dict)
    settlements: dict[str, DSettlement] = field(default_factory=dict)
    #: settlements due so shortly before the cut that the live scheduler may not have made them yet
    in_flight: set[str] = field(default_factory=set)
    tier_changes: int = 0
    skips: int = 0


class EpochTiers:
    """Tiers by epoch (the service's scale-out rule, `domain.tiers`): the tier in force for an order
    paid in epoch e is the one the promoter's record reaches from the contributions made at or
    before the start of e (orders and settled sales by bucket, direct buyers by their first
    purchase), under the plan in force for that order."""

    def __init__(self, length: timedelta) -> None:
        self.length = length
        #: promoter -> [(at, orders, settled sales)], and direct buyer -> first purchase
        self.contributions: dict[str, list[tuple[datetime, int, int]]] = {}
        self.first_buys: dict[str, dict[str, datetime]] = {}
        self.cache: dict[tuple[str, int, int], str] = {}
        self.added: set[tuple[str, int, int]] = set()

    def add(self, promoter: str, at: datetime, orders: int, buyer: str | None, sales: int) -> None:
        self.contributions.setdefault(promoter, []).append((at, orders, sales))
        if buyer is not None:
            firsts = self.first_buys.setdefault(promoter, {})
            if buyer not in firsts or at < firsts[buyer]:
                firsts[buyer] = at

    def put_in(self, history: History, plans: PlanBook, buyer_id: str, paid_at: datetime) -> None:
        found = plans.in_force(paid_at)
        if found is None or not found[1].upgrade_ladder:
            return
        version, plan = found
        e = epoch_of(paid_at, self.length)
        start = epoch_start(e, self.length)
        r1 = history.referrer_at(buyer_id, paid_at)
        r2 = history.referrer_at(r1, paid_at) if r1 is not None else None
        for who in (buyer_id, r1, r2):
            if who is None:
                continue
            k = (who, e, version)
            if k in self.added:
                continue
            tier = self.cache.get(k)
            if tier is None:
                rows = [c for c in self.contributions.get(who, ()) if c[0] <= start]
                buyers = sum(1 for t in self.first_buys.get(who, {}).values() if t <= start)
                tier = self.cache[k] = tier_reached(plan, PromoterRecord(sum(c[1] for c in rows), buyers,
                                                                         sum(c[2] for c in rows)))[0]
            self.added.add(k)
            history.add_tier(who, start, e, tier)


def derive(src: Source, *, settle_until: datetime | None, clock_offset: timedelta = timedelta(0),
           grace: timedelta = timedelta(seconds=30), progress: bool = False,
           tier_epoch: timedelta | None = None) -> Derived:
    """Fold the source order events in event-time order through the domain `Ledger` (pure).

    A due accrual settles before the first order event whose time plus `clock_offset` (the live
    scheduler's clock offset) reaches its due time, and at the end when due by `settle_until`
    (None: settle nothing more at the end). `tier_epoch`: tiers move at epoch boundaries, as the
    service does with `COMMISSION_TIER_EPOCH_S` (None: right after the order that reaches them)."""
    out = Derived()
    ledger = Ledger(history=src.history, plans=src.plans, accruals={}, known_orders=set(), records={},
                    direct_pairs=set(), refunds_seen=set(), tier_epoch=tier_epoch)
    epochs = EpochTiers(tier_epoch) if tier_epoch is not None else None
    due: list[tuple[datetime, int, str, Any]] = []
    n = 0

    def harvest() -> None:
        nonlocal n
        for a, _ in ledger.accruals:
            out.accruals[a.accrual_id] = a
        for r in ledger.reversals:
            st = r.state
            out.reversals[(st.accrual_id, r.out_refund_no)] = DReversal(
                st.accrual_id, st.order_id, st.line_id, st.beneficiary_id, r.out_refund_no, r.amount_fen, r.from_status,
                r.reversed_at)
        for d in ledger.dues:
            n += 1
            heapq.heappush(due, (d.due_at, n, d.accrual_id, d.cause_event_id))
        for st, amount, at, _ in ledger.settlements:
            out.settlements[st.accrual_id] = DSettlement(st.accrual_id, st.order_id, st.beneficiary_id, amount, at)
        out.tier_changes += len(ledger.tier_changes)
        out.skips += len(ledger.skips)
        if epochs is not None:
            for c in ledger.contributions:
                epochs.add(*c)
            ledger.contributions.clear()
        for lst in (ledger.accruals, ledger.reversals, ledger.dues, ledger.settlements, ledger.tier_changes,
                    ledger.skips, ledger.new_orders, ledger.new_pairs, ledger.refunds_applied):
            lst.clear()
        ledger.touched_records.clear()

    def settle_until_(t: datetime) -> None:
        while due and due[0][0] <= t:
            at, _, aid, cause = heapq.heappop(due)
            ledger.settle(aid, at, cause)
        harvest()

    events = sorted(src.orders, key=lambda e: (e[0], e[1]))
    bar = logread.progress_bar(len(events), "rederive", progress)
    for i, (t, _, env, p) in enumerate(events):
        if due and due[0][0] <= t + clock_offset:
            settle_until_(t + clock_offset)
        et = env.event_type
        if et == "OrderPaid":
            if epochs is not None:
                epochs.put_in(src.history, src.plans, p.buyer_id, p.paid_at)
            ledger.on_paid(PaidOrder(p.order_id, p.buyer_id, p.paid_at, tuple(
                PaidLine(l.line_id, l.product_id, l.category_id, l.quantity, l.paid_fen) for l in p.lines)), env)
        elif et == "OrderRefunded":
            ledger.on_refund(p.order_id, p.out_refund_no, [(l.line_id, l.amount_fen) for l in p.lines], p.refunded_at, env)
        else:
            ledger.on_completed(p.order_id, p.completed_at, env.event_id)
        harvest()
        if bar is not None and i % 1000 == 999:
            bar.update(1000)
    if bar is not None:
        bar.update(len(events) % 1000)
        bar.close()
    if settle_until is not None:
        flight_from = settle_until - grace
        for at, _, aid, _ in due:
            if flight_from < at <= settle_until:
                out.in_flight.add(aid)
        settle_until_(settle_until)
    return out


# -- what was published ------------------------------------------------------------------------
@dataclass
class Published:
    accruals: dict[str, Any] = field(default_factory=dict)
    reversals: dict[tuple[str, str], Any] = field(default_factory=dict)
    settlements: dict[str, Any] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    #: accrual id -> the event that caused it (an OrderPaid)
    causes: dict[str, uuid.UUID | None] = field(default_factory=dict)
    _seen: set[uuid.UUID] = field(default_factory=set)

    def add(self, env: Envelope, p: Any) -> None:
        if env.event_id in self._seen:
            return
        self._seen.add(env.event_id)
        et = env.event_type
        if et == "CommissionAccrued":
            if p.accrual_id in self.accruals:
                self.duplicates.append(f"CommissionAccrued {p.accrual_id} published twice under different event ids")
            self.accruals[p.accrual_id] = p
            self.causes[p.accrual_id] = env.causation_id
        elif et == "CommissionReversed":
            k = (p.accrual_id, p.out_refund_no)
            if k in self.reversals:
                self.duplicates.append(f"CommissionReversed {p.accrual_id} refund {p.out_refund_no} published twice")
                p = p.model_copy(update={"amount_fen": self.reversals[k].amount_fen + p.amount_fen})
            self.reversals[k] = p
        elif et == "CommissionSettled":
            if p.accrual_id in self.settlements:
                self.duplicates.append(f"CommissionSettled {p.accrual_id} published twice under different event ids")
            self.settlements[p.accrual_id] = p


# -- comparison --------------------------------------------------------------------------------
class Difference(NamedTuple):
    kind: str  # accrual | reversal | settlement | balance | log
    order_id: str
    beneficiary_id: str
    amount_log_fen: int | None    # what commission published (None: nothing)
    amount_derived_fen: int | None  # what the source events give (None: nothing)
    detail: str

    def __str__(self) -> str:
        def f(v: int | None) -> str:
            return "none" if v is None else f"{v} fen"
        return (f"{self.kind}: order {self.order_id or '-'} beneficiary {self.beneficiary_id or '-'}: "
                f"published {f(self.amount_log_fen)}, re-derived {f(self.amount_derived_fen)}"
                + (f" ({self.detail})" if self.detail else ""))


def _in(period: tuple[datetime | None, datetime | None], t: datetime | None) -> bool:
    lo, hi = period
    if t is None:
        return lo is None and hi is None
    return (lo is None or t >= lo) and (hi is None or t < hi)


def compare_lines(d: Derived, pub: Published,
                  period: tuple[datetime | None, datetime | None] = (None, None)) -> list[Difference]:
    """Every line where the log and the re-derivation disagree."""
    diffs: list[Difference] = []

    def paid_at(aid: str) -> datetime | None:
        a = d.accruals.get(aid) or pub.accruals.get(aid)
        return a.paid_at if a is not None else None

    for aid in sorted(set(d.accruals) | set(pub.accruals)):
        if not _in(period, paid_at(aid)):
            continue
        mine, theirs = d.accruals.get(aid), pub.accruals.get(aid)
        ref = mine or theirs
        if mine is None or theirs is None:
            diffs.append(Difference("accrual", ref.order_id, ref.beneficiary_id, theirs and theirs.amount_fen,
                                    mine and mine.amount_fen,
                                    f"line {ref.line_id} {ref.level}: "
                                    + ("published, not owed by the source events" if mine is None else "owed, not published")))
            continue
        fields = ("beneficiary_id", "level", "amount_fen", "base_fen", "quantity", "rate_bp", "fixed_fen_per_unit",
                  "plan_version", "tier")
        fields += ("kind",)  # commission or management_bonus (管理奖)
        bad = [f"{k} published {getattr(theirs, k, None)!r} re-derived {getattr(mine, k, None)!r}" for k in fields
               if getattr(theirs, k, None) != getattr(mine, k, None)]
        if bad:
            diffs.append(Difference("accrual", mine.order_id, mine.beneficiary_id, theirs.amount_fen, mine.amount_fen,
                                    f"line {mine.line_id} {mine.level}: " + "; ".join(bad)))
    for k in sorted(set(d.reversals) | set(pub.reversals)):
        if not _in(period, paid_at(k[0])):
            continue
        mine, theirs = d.reversals.get(k), pub.reversals.get(k)
        ref = mine or theirs
        if mine is None or theirs is None or (mine.amount_fen, mine.beneficiary_id, mine.from_status) != (
                theirs.amount_fen, theirs.beneficiary_id, theirs.from_status):
            detail = f"accrual {k[0]} refund {k[1]}"
            if mine is not None and theirs is not None:
                detail += f", from {theirs.from_status} published, from {mine.from_status} re-derived"
            diffs.append(Difference("reversal", ref.order_id, ref.beneficiary_id, theirs and theirs.amount_fen,
                                    mine and mine.amount_fen, detail))
    for aid in sorted(set(d.settlements) | set(pub.settlements)):
        if not _in(period, paid_at(aid)):
            continue
        mine, theirs = d.settlements.get(aid), pub.settlements.get(aid)
        if theirs is None and aid in d.in_flight:
            continue  # due moments before the cut: the live scheduler may not have run yet
        ref = mine or theirs
        if mine is None or theirs is None or (mine.amount_fen, mine.beneficiary_id) != (theirs.amount_fen, theirs.beneficiary_id):
            diffs.append(Difference("settlement", ref.order_id, ref.beneficiary_id, theirs and theirs.amount_fen,
                                    mine and mine.amount_fen, f"accrual {aid}"
                                    + ("" if mine is not None else ", settled before it was due or never owed")))
    return diffs


def derived_balances(d: Derived, withdrawals: list[tuple[str, Any]], pub: Published) -> dict[str, tuple[int, ...]]:
    """Balances from the re-derived money events and payout's withdrawals (`delta_of`). A settlement
    in flight counts only when the live service had made it."""
    acc = Deltas()
    for a in d.accruals.values():
        acc.add(*delta_of("CommissionAccrued", a))  # type: ignore[misc]
    for r in d.reversals.values():
        acc.add(*delta_of("CommissionReversed", r))  # type: ignore[misc]
    for aid, s in d.settlements.items():
        if aid in d.in_flight and aid not in pub.settlements:
            continue
        acc.add(*delta_of("CommissionSettled", s))  # type: ignore[misc]
    for et, p in withdrawals:
        found = delta_of(et, p)
        if found is not None:
            acc.add(*found)
    return {pid: delta.as_tuple() for pid, delta in acc.items().items()}


def compare_balances(mine: dict[str, tuple[int, ...]], live: dict[str, tuple[int, ...]]) -> list[Difference]:
    diffs = []
    zero = (0,) * len(COLUMNS)
    for pid in sorted(set(mine) | set(live)):
        a, b = live.get(pid, zero), mine.get(pid, zero)
        for c, x, y in zip(COLUMNS, a, b):
            if x != y:
                diffs.append(Difference("balance", "", pid, x, y, f"{c}: live {x}, re-derived {y}"))
    return diffs


# -- the run against a live schema and the log -----------------------------------------------
@dataclass
class Result:
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source_events: int = 0
    events_read: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    accruals: int = 0
    reversals: int = 0
    settlements: int = 0
    in_flight: int = 0
    promoters: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0
    into: str | None = None
    undrained: int = 0
    balances_compared: bool = False

    @property
    def equal(self) -> bool:
        return not self.differences and not self.undrained

    @property
    def events_per_s(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0


async def _reference_positions(dsn: str, schema: str) -> dict[TopicPartition, int]:
    """Where the live service has read the referral stream (its reference-data projection, when
    it has one, which every order worker reads)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": db.check_schema(schema)})
    try:
        rows = await conn.fetch("SELECT topic, partition, next_offset FROM projector_offsets WHERE topic = $1",
                                REFERRAL_EVENTS)
    finally:
        await conn.close()
    return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def _held_event_ids(dsn: str, schema: str) -> set[uuid.UUID]:
    """Order events the live projection has read but holds back (the cross-topic ordering guard):
    they are not decided yet, so the audit leaves them out too."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": db.check_schema(schema)})
    try:
        rows = await conn.fetch("SELECT envelope FROM deferred_order_events")
    except asyncpg.UndefinedTableError:
        rows = []
    finally:
        await conn.close()
    return {Envelope.from_bytes(r["envelope"]).event_id for r in rows}


async def rederive(settings: Any, live_schema: str, *, period: tuple[datetime | None, datetime | None] = (None, None),
                   into: str | None = None, progress: bool = False, clock_offset_s: float | None = None,
                   grace_s: float = 30.0, drain_timeout_s: float = 60.0) -> Result:
    from services.commission import replay as cut  # the live snapshot and its drained outbox

    dsn, bootstrap = settings.database_url, settings.kafka_bootstrap_servers
    offset = timedelta(seconds=settings.clock_offset_s if clock_offset_s is None else clock_offset_s)
    result = Result()
    started = time.perf_counter()
    snap = await cut.snapshot(dsn, live_schema)
    cut_at = datetime.now(timezone.utc)
    deadline = time.monotonic() + drain_timeout_s
    while (n := await cut._undrained(dsn, live_schema, snap.last_seq)) and time.monotonic() < deadline:  # noqa: SLF001
        await asyncio_sleep(0.2)
    if n:
        result.undrained = n
        return result
    recorded = await cut._recorded_ids(dsn, live_schema, snap.last_seq)  # noqa: SLF001
    held = await _held_event_ids(dsn, live_schema)

    parts = await logread.partitions_of(bootstrap, [COMMISSION_EVENTS])
    tps = [TopicPartition(COMMISSION_EVENTS, p) for p in parts[COMMISSION_EVENTS]]
    _, ends = await logread.offsets(bootstrap, tps)
    ranges: logread.Ranges = {tp: (snap.origin.get(tp, 0), end) for tp, end in ends.items()}
    for tp, off in (snap.offsets | await _reference_positions(dsn, live_schema)).items():
        if tp.topic in (REFERRAL_EVENTS, ORDER_EVENTS, PAYOUT_EVENTS):
            ranges[tp] = (snap.origin.get(tp, 0), off)

    src, pub = Source(), Published()
    t0 = time.perf_counter()
    stop = period[1]
    result.events_read = await read_source(bootstrap, ranges, src, until=stop, published=pub, recorded=recorded,
                                           held=held, progress=progress)
    result.read_seconds = time.perf_counter() - t0
    if src.unparseable:
        result.notes.append(f"{src.unparseable} unparseable records skipped (the live service dead-letters them)")
    if held:
        result.notes.append(f"{len(held)} order events held back by the live ordering guard: left out")
    settle_until = (min(cut_at, stop) if stop is not None else cut_at) + offset
    epoch_s = getattr(settings, "tier_epoch_s", None)
    derived = derive(src, settle_until=settle_until, clock_offset=offset, grace=timedelta(seconds=grace_s),
                     progress=progress, tier_epoch=timedelta(seconds=epoch_s) if epoch_s else None)
    result.differences = compare_lines(derived, pub, period)
    result.differences += [Difference("log", "", "", None, None, m) for m in pub.duplicates]
    mine = derived_balances(derived, src.withdrawals, pub)
    if period == (None, None):
        result.balances_compared = True
        result.differences += compare_balances(mine, snap.balances)
    result.source_events = sum(src.counts.values())
    result.counts = dict(sorted(src.counts.items()))
    result.accruals, result.reversals, result.settlements = len(derived.accruals), len(derived.reversals), len(derived.settlements)
    result.in_flight = len(derived.in_flight)
    result.promoters = len([b for b in mine.values() if any(b)])
    if into is not None:
        await store(dsn, into, derived, mine, result.differences)
        result.into = into
    result.seconds = time.perf_counter() - started
    return result


async def read_source(bootstrap: str, ranges: logread.Ranges, src: Source, *, until: datetime | None = None,
                      published: Published | None = None, recorded: set[uuid.UUID] | None = None,
                      held: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(), progress: bool = False) -> int:
    """Read the source events of `ranges` into `src` (the one loader of the re-deriving audit,
    the plan simulator and the compliance report); returns the records read.

    Only the WANTED types are parsed; an unparseable record is counted (the live projection
    dead-letters it). Order events that occurred at or after `until` are left out, and so are
    the events in `held` (held back by the live ordering guard at the audit's cut). Commission's
    plans go to `src`; its money events go to `published` when given (only those in `recorded`,
    when given: what the live service had recorded at the cut), else they are not read."""

    def on_record(tp: TopicPartition, rec: Any) -> None:
        wanted = WANTED[tp.topic]
        if tp.topic == COMMISSION_EVENTS and published is None:
            wanted = PLAN_TYPES
        et = logread.header(rec, "event_type")
        if et is not None and et not in wanted:
            return
        try:
            env = Envelope.from_bytes(rec.value)
            if env.event_type not in wanted:
                return
            payload = catalog.payload(env)
        except Exception:
            src.unparseable += 1  # the live projection dead-letters these
            return
        if env.event_type in PUBLISHED_MONEY:
            if published is not None and (recorded is None or env.event_id in recorded):
                published.add(env, payload)
            return
        if env.event_id in held:
            return
        if until is not None and env.event_type in ORDER_TYPES and env.occurred_at >= until:
            return
        src.add(env, payload)

    return await logread.read(bootstrap, ranges, on_record, progress=progress, desc="read log")


async def asyncio_sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


# -- the fresh schema --------------------------------------------------------------------------
_DDL = """
CREATE TABLE derived_accruals (accrual_id text PRIMARY KEY, order_id text, line_id text, level text,
    beneficiary_id text, buyer_id text, product_id text, base_fen bigint, quantity int, rate_bp int,
    fixed_fen_per_unit bigint, amount_fen bigint, plan_version int, tier text, paid_at timestamptz);
CREATE TABLE derived_reversals (accrual_id text, out_refund_no text, order_id text, line_id text, beneficiary_id text,
    amount_fen bigint, from_status text, reversed_at timestamptz, PRIMARY KEY (accrual_id, out_refund_no));
CREATE TABLE derived_settlements (accrual_id text PRIMARY KEY, order_id text, beneficiary_id text, amount_fen bigint,
    due_at timestamptz);
CREATE TABLE derived_balances (promoter_id text PRIMARY KEY, frozen_fen bigint, available_fen bigint,
    reserved_fen bigint, withdrawn_fen bigint, reversed_fen bigint);
CREATE TABLE differences (n int PRIMARY KEY, kind text, order_id text, beneficiary_id text,
    amount_published_fen bigint, amount_derived_fen bigint, detail text);
"""


async def store(dsn: str, schema: str, d: Derived, balances: dict[str, tuple[int, ...]], diffs: list[Difference]) -> None:
    """The re-derivation into a fresh schema (refused if it exists: never mixed with other data)."""
    db.check_schema(schema)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            await conn.execute(f'SET LOCAL search_path = "{schema}"')
            await conn.execute(_DDL)
            await conn.copy_records_to_table("derived_accruals", schema_name=schema, records=[
                (a.accrual_id, a.order_id, a.line_id, a.level, a.beneficiary_id, a.buyer_id, a.product_id, a.base_fen,
                 a.quantity, a.rate_bp, a.fixed_fen_per_unit, a.amount_fen, a.plan_version, a.tier, a.paid_at)
                for a in d.accruals.values()])
            await conn.copy_records_to_table("derived_reversals", schema_name=schema, records=[
                (r.accrual_id, r.out_refund_no, r.order_id, r.line_id, r.beneficiary_id, r.amount_fen, r.from_status,
                 r.reversed_at) for r in d.reversals.values()])
            await conn.copy_records_to_table("derived_settlements", schema_name=schema, records=[
                (s.accrual_id, s.order_id, s.beneficiary_id, s.amount_fen, s.due_at) for s in d.settlements.values()])
            await conn.copy_records_to_table("derived_balances", schema_name=schema,
                                             records=[(pid, *b) for pid, b in balances.items()])
            await conn.copy_records_to_table("differences", schema_name=schema, records=[
                (i, x.kind, x.order_id, x.beneficiary_id, x.amount_log_fen, x.amount_derived_fen, x.detail)
                for i, x in enumerate(diffs)])
    finally:
        await conn.close()


def report(r: Result, out: Any) -> None:
    if r.undrained:
        print(f"cannot cut the audit: {r.undrained} events recorded by the live service are not published yet "
              "(is the commission service running?)", file=out)
        return
    for n in r.notes:
        print(f"note: {n}", file=out)
    if r.differences:
        print(f"DIFFERENCES ({len(r.differences)}):", file=out)
        for d in r.differences:
            print(f"  {d}", file=out)
    else:
        what = "lines and balances" if r.balances_compared else "lines (balances: whole-log runs only)"
        print(f"re-derived {what} equal the log and the live service (0 differences)", file=out)
    print(f"source events: {r.source_events} (" + ", ".join(f"{k} {v}" for k, v in r.counts.items()) + ")", file=out)
    print(f"re-derived: {r.accruals} accruals, {r.reversals} reversals, {r.settlements} settlements "
          f"({r.in_flight} due within the grace before the cut); promoters with a balance: {r.promoters}", file=out)
    if r.into:
        print(f"written to schema {r.into} (derived_accruals, derived_reversals, derived_settlements, "
              "derived_balances, differences)", file=out)
    print(f"records read: {r.events_read} in {r.read_seconds:.2f} s; whole audit {r.seconds:.2f} s "
          f"({r.events_per_s:,.0f} records/s)", file=out)
