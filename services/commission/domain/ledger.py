"""The fold of one batch of events over the state loaded for it (pure, no I/O).

The projection loads what a batch needs in a few queries, hands it to a `Ledger`, feeds it the
batch's events in order and writes back what the ledger collected. The audit replay runs the
same projection, so live and replay follow the same rules.

Two kinds of work happen here:
* decisions, from input events: accruals (OrderPaid), reversals (OrderRefunded), settlement due
  dates (OrderCompleted), settlements (the scheduler), tier changes; each becomes an event of ours;
* balances, moved only by money events (see `balance.py`): the events our decisions are
  published as, folded in the transaction that records them in the outbox, and payout's
  withdrawals. So a balance is exactly the fold of the money events in the log, which is what
  the audit replay recomputes."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.commission.domain.accrual import (
    Accrual, PaidOrder, Skip, accrue, is_management_bonus, reversal_amount, settlement_amount, settlement_due_at,
)
from services.commission.domain.balance import Deltas, delta_of
from services.commission.domain.chain import History, beneficiaries
from services.commission.domain.plan import Plan
from services.commission.domain.tiers import PromoterRecord, upgrade


@dataclass
class PlanBook:
    """Plan versions by the instant they were published: the version in force at `t` is the
    latest published at or before `t`."""

    versions: list[tuple[datetime, int, Plan]] = field(default_factory=list)

    def add(self, published_at: datetime, version: int, plan: Plan) -> None:
        if any(v == version for _, v, _ in self.versions):
            return
        self.versions.append((published_at, version, plan))
        self.versions.sort(key=lambda r: (r[0], r[1]))

    def in_force(self, t: datetime) -> tuple[int, Plan] | None:
        i = bisect_right(self.versions, t, key=lambda r: r[0])
        return (self.versions[i - 1][1], self.versions[i - 1][2]) if i else None

    def latest(self) -> tuple[int, Plan] | None:
        return (self.versions[-1][1], self.versions[-1][2]) if self.versions else None


@dataclass
class AccrualState:
    """The working copy of one accrual's lifecycle."""

    accrual_id: str
    order_id: str
    line_id: str
    level: str
    beneficiary_id: str
    base_fen: int
    amount_fen: int
    reversed_fen: int = 0
    line_refunded_fen: int = 0
    settled_fen: int | None = None
    settled_at: datetime | None = None
    freeze_days: int = 0
    due: bool = False
    new: bool = False
    dirty: bool = False
    accrual: Accrual | None = None  # set for accruals created in this batch

    @property
    def settled(self) -> bool:
        return self.settled_at is not None


@dataclass(frozen=True)
class Reversal:
    state: AccrualState
    amount_fen: int
    from_status: str
    out_refund_no: str
    reversed_at: datetime
    cause: Any


@dataclass(frozen=True)
class TierChange:
    promoter_id: str
    from_tier: str
    to_tier: str
    rule: str
    effective_at: datetime
    cause: Any


@dataclass(frozen=True)
class Due:
    accrual_id: str
    due_at: datetime
    cause_event_id: Any


class Ledger:
    """State for one batch plus what the batch decided. `cause` arguments are opaque (the
    projection passes the causing envelope) and are handed back with each decision."""

    def __init__(
        self,
        *,
        history: History,
        plans: PlanBook,
        accruals: dict[str, list[AccrualState]],
        known_orders: set[str],
        records: dict[str, PromoterRecord],
        direct_pairs: set[tuple[str, str]],
        refunds_seen: set[tuple[str, str]],
        tier_epoch: timedelta | None = None,
    ) -> None:
        self.history, self.plans = history, plans
        #: None: a tier reached applies to orders paid after the moment it was reached (one
        #: process folding everything). A duration: tiers move only at epoch boundaries, from the
        #: contributions of earlier epochs (see `tiers.tier_in_epoch`); the ledger then records
        #: contributions instead of deciding tier changes, so that N workers agree.
        self.tier_epoch = tier_epoch
        #: (promoter, at, orders, direct buyer or None, settled sales) in epoch mode
        self.contributions: list[tuple[str, datetime, int, str | None, int]] = []
        self.by_order = accruals
        self.by_id: dict[str, AccrualState] = {a.accrual_id: a for rows in accruals.values() for a in rows}
        self.known_orders, self.records = known_orders, records
        self.direct_pairs, self.refunds_seen = direct_pairs, refunds_seen
        # decisions
        self.new_orders: list[tuple[str, str, datetime]] = []
        self.accruals: list[tuple[Accrual, Any]] = []
        self.skips: list[tuple[Skip, datetime, Any]] = []
        self.reversals: list[Reversal] = []
        self.dues: list[Due] = []
        self.tier_changes: list[TierChange] = []
        self.new_pairs: list[tuple[str, str]] = []
        self.refunds_applied: list[tuple[str, str]] = []
        self.touched_records: set[str] = set()
        # from money events
        self.deltas = Deltas()
        self.settlements: list[tuple[AccrualState, int, datetime, Any]] = []
        self._tier_seq = 10**15

    # -- decisions -------------------------------------------------------------------------
    def on_paid(self, order: PaidOrder, cause: Any) -> None:
        if order.order_id in self.known_orders:
            return  # the same payment announced twice
        self.known_orders.add(order.order_id)
        self.new_orders.append((order.order_id, order.buyer_id, order.paid_at))
        found = self.plans.in_force(order.paid_at)
        if found is None:
            for b in beneficiaries(self.history, order.buyer_id, order.paid_at, 2):
                self.skips.append((Skip(order.order_id, None, b.promoter_id, b.level, "no_plan_in_force"), order.paid_at, cause))
            return
        version, plan = found
        chain = beneficiaries(self.history, order.buyer_id, order.paid_at, plan.levels)
        accruals, skips = accrue(order, chain, plan, version)
        for s in skips:
            self.skips.append((s, order.paid_at, cause))
        rows = self.by_order.setdefault(order.order_id, [])
        for a in accruals:
            st = AccrualState(a.accrual_id, a.order_id, a.line_id, a.level, a.beneficiary_id, a.base_fen, a.amount_fen,
                              freeze_days=a.freeze_days, new=True, accrual=a)
            rows.append(st)
            self.by_id[a.accrual_id] = st
            self.accruals.append((a, cause))
        # the buyer's slot (level 1 or self-purchase) is where the promoter's own record grows
        for b in chain:
            if not b.eligible or b.level == "level2":
                continue
            if self.tier_epoch is not None:
                self.contributions.append((b.promoter_id, order.paid_at, 1,
                                           order.buyer_id if b.level == "level1" else None, 0))
                continue
            rec = self.records.get(b.promoter_id, PromoterRecord())
            buyers = rec.direct_buyers
            if b.level == "level1" and (b.promoter_id, order.buyer_id) not in self.direct_pairs:
                self.direct_pairs.add((b.promoter_id, order.buyer_id))
                self.new_pairs.append((b.promoter_id, order.buyer_id))
                buyers += 1
            self._set_record(b.promoter_id, PromoterRecord(rec.orders + 1, buyers, rec.settled_sales_fen), order.paid_at, cause)

    def on_refund(self, order_id: str, out_refund_no: str, lines: list[tuple[str, int]], refunded_at: datetime, cause: Any) -> None:
        if (order_id, out_refund_no) in self.refunds_seen:
            return
        self.refunds_seen.add((order_id, out_refund_no))
        self.refunds_applied.append((order_id, out_refund_no))
        rows = self.by_order.get(order_id)
        if not rows:
            return  # an order that earned nobody anything
        for line_id, refunded_fen in lines:
            for st in rows:
                if st.line_id != line_id:
                    continue
                after = min(st.base_fen, st.line_refunded_fen + max(refunded_fen, 0))
                amount = reversal_amount(st.amount_fen, st.reversed_fen, st.base_fen, after)
                st.line_refunded_fen = after
                st.dirty = True
                if amount <= 0:
                    continue
                st.reversed_fen += amount
                self.reversals.append(Reversal(st, amount, "settled" if st.settled else "frozen", out_refund_no,
                                               refunded_at, cause))

    def on_completed(self, order_id: str, completed_at: datetime, cause_event_id: Any) -> None:
        for st in self.by_order.get(order_id, ()):
            if st.settled or st.due:
                continue
            st.due = True
            self.dues.append(Due(st.accrual_id, settlement_due_at(completed_at, st.freeze_days), cause_event_id))

    # -- settlement (the scheduler) -------------------------------------------------------
    def settle(self, accrual_id: str, at: datetime, cause: Any) -> int | None:
        """Settle one due accrual: accrued minus what was reversed so far moves to available.
        The beneficiary's settled sales grow (level 1 and self-purchase), which may reach a tier.
        Returns the amount, None when unknown or already settled."""
        st = self.by_id.get(accrual_id)
        if st is None or st.settled:
            return None
        amount = settlement_amount(st.amount_fen, st.reversed_fen)
        st.settled_fen, st.settled_at, st.dirty = amount, at, True
        self.settlements.append((st, amount, at, cause))
        own_sale = st.level in ("level1", "self_purchase") and not is_management_bonus(st.accrual_id)
        if own_sale and self.tier_epoch is not None:
            self.contributions.append((st.beneficiary_id, at, 0, None, st.base_fen - st.line_refunded_fen))
        elif own_sale:  # a management bonus is not the promoter's own sale
            rec = self.records.get(st.beneficiary_id, PromoterRecord())
            sales = st.base_fen - st.line_refunded_fen
            self._set_record(st.beneficiary_id, PromoterRecord(rec.orders, rec.direct_buyers, rec.settled_sales_fen + sales),
                             at, cause)
        return amount

    # -- money events ----------------------------------------------------------------------
    def on_money(self, event_type: str, payload: Any) -> None:
        """Move balances by one money event: a withdrawal read from payout's stream, or one of
        the events this ledger's decisions are published as (accrued, reversed, settled)."""
        d = delta_of(event_type, payload)
        if d is not None:
            self.deltas.add(*d)

    # -- tiers -----------------------------------------------------------------------------
    def _set_record(self, promoter_id: str, rec: PromoterRecord, at: datetime, cause: Any) -> None:
        self.records[promoter_id] = rec
        self.touched_records.add(promoter_id)
        found = self.plans.in_force(at)
        if found is None:
            return
        _, plan = found
        current = self.history.current_tier(promoter_id)
        up = upgrade(plan, current, rec)
        if up is None:
            return
        to_tier, rule = up
        from_tier = plan.tier(current).name
        if to_tier == from_tier:
            return
        self._tier_seq += 1
        self.history.add_tier(promoter_id, at, self._tier_seq, to_tier)
        self.tier_changes.append(TierChange(promoter_id, from_tier, to_tier, rule, at, cause))
