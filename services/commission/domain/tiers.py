"""Tier upgrades from a promoter's own record: settled sales, distinct customers who bought
through them, orders. Only upward; a new tier applies to orders paid after the moment it was
reached. Never from recruit counts: the record has no such number."""
from __future__ import annotations

from dataclasses import dataclass

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
