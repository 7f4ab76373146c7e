"""Tier upgrades from a promoter's own record: settled sales, distinct customers who bought
through them, orders. Only upward; a new tier applies to orders paid after the moment it was
reached. Never from recruit counts: the record has no such number."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from services.commission.domain.plan import Plan


@dataclass(frozen=True)
class PromoterRecord:
    orders: int = 0
    direct_buyers: int = 0
    settled_sales_fen: int = 0


def upgrade(plan: Plan, current: str | None, record: PromoterRecord) -> tuple[str, str] | None:
    """(to_tier, rule) for the highest tier above `current` whose every threshold is met."""
    ladder = plan.upgrade_ladder
    if not ladder:
        return None
    at = plan.tier_index.get(current, 0) if current is not None else 0
    found: tuple[str, str] | None = None
    have = {"min_settled_sales_fen": record.settled_sales_fen, "min_direct_buyers": record.direct_buyers,
            "min_orders": record.orders}
    for index, name, th in ladder:
        if index > at and all(have[k] >= v for k, v in th):
            found = (name, ",".join(f"{k.removeprefix('min_')}>={v}" for k, v in th))
    return found


# -- tiers by epoch (several workers) ----------------------------------------------------------
# Time is cut into epochs of a fixed length from the Unix epoch; epoch b is (start(b), end(b)],
# end(b) = b * length. A contribution made at t (an order paid at t, a settlement at t) belongs
# to epoch_of(t); the tier in force for an order paid at t is reached by the contributions of
# the epochs before epoch_of(t), i.e. made at or before start(epoch_of(t)). Every worker
# computes the same tier for the same order whatever the order it reads the partitions in.
_EPOCH0 = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_of(t: datetime, length: timedelta) -> int:
    d = t - _EPOCH0
    us = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    step = (length.days * 86_400 + length.seconds) * 1_000_000 + length.microseconds
    return -((-us) // step)


def epoch_start(epoch: int, length: timedelta) -> datetime:
    return _EPOCH0 + (epoch - 1) * length


def tier_reached(plan: Plan, record: PromoterRecord) -> tuple[str, str | None]:
    """(tier, rule) reachable from the first tier with this record (the first tier: no rule)."""
    up = upgrade(plan, None, record)
    return up if up is not None else (plan.tiers[0].name, None)
