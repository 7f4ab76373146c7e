"""The overview's daily figures, folded from events (pure).

Per business day (the merchant's time zone): all paid sales; sales through distribution (lines
on which a level-1 or self-purchase commission accrued, i.e. a promoter brought the sale);
commission accrued and reversed (cost = accrued - reversed); new promoters; new customers bound
through a share (their first binding)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

COLUMNS = ("orders", "sales_fen", "distribution_sales_fen", "commission_fen", "reversed_fen", "new_promoters",
           "new_customers")
EVENT_TYPES = frozenset({"OrderPaid", "CommissionAccrued", "CommissionReversed", "PromoterEnrolled", "ReferralBound",
                         "PromoterTierChanged"})


@dataclass
class Fold:
    days: dict[date, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: dict.fromkeys(COLUMNS, 0)))
    #: promoter -> (tier, effective_at), the latest seen
    tiers: dict[str, tuple[str, datetime]] = field(default_factory=dict)


def business_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def fold(events: Iterable[tuple[str, Any]], tz: ZoneInfo) -> Fold:
    """`events`: (event_type, payload) pairs; other types are ignored."""
    out = Fold()
    for et, p in events:
        if et == "OrderPaid":
            d = out.days[business_day(p.paid_at, tz)]
            d["orders"] += 1
            d["sales_fen"] += sum(line.paid_fen for line in p.lines)
        elif et == "CommissionAccrued":
            d = out.days[business_day(p.paid_at, tz)]
            d["commission_fen"] += p.amount_fen
            if p.level in ("level1", "self_purchase"):
                d["distribution_sales_fen"] += p.base_fen
        elif et == "CommissionReversed":
            out.days[business_day(p.reversed_at, tz)]["reversed_fen"] += p.amount_fen
        elif et == "PromoterEnrolled":
            out.days[business_day(p.enrolled_at, tz)]["new_promoters"] += 1
        elif et == "ReferralBound":
            out.days[business_day(p.bound_at, tz)]["new_customers"] += 1
        elif et == "PromoterTierChanged":
            cur = out.tiers.get(p.promoter_id)
            if cur is None or cur[1] <= p.effective_at:
                out.tiers[p.promoter_id] = (p.to_tier, p.effective_at)
    return out


@dataclass(frozen=True)
class Totals:
    orders: int
    sales_fen: int
    distribution_sales_fen: int
    commission_fen: int
    reversed_fen: int
    new_promoters: int
    new_customers: int

    @property
    def commission_cost_fen(self) -> int:
        return self.commission_fen - self.reversed_fen


def totals(rows: Iterable[dict[str, int]]) -> Totals:
    acc = dict.fromkeys(COLUMNS, 0)
    for r in rows:
        for c in COLUMNS:
            acc[c] += int(r[c])
    return Totals(**acc)
