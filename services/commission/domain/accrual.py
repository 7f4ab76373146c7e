"""Accrual: one paid order and its chain -> one accrual per line per paid beneficiary.

Base = what the buyer paid for the line (`paid_fen`, all units, after discounts, postage
excluded). Percent: `base * rate_bp // 10000`, i.e. rounded down per line per level. Fixed:
`fen_per_unit * quantity`. The plan was checked against the cap when saved; the cap guard here
is a last line of defence for fixed overrides when a unit sold below the plan's declared
`min_unit_paid_fen`: it lowers the management bonuses first, then level 2, then the buyer's slot,
so that the line never pays more than the cap, and records the reason.

Management bonus (where a tier sets `management_bp`): a promoter of that tier who is the buyer's
level 1 or level 2 gets, besides that level's commission, `base * management_bp // 10000` as a
separate accrual (`kind="management_bonus"`, id `<order>:<line>:<level>:management`): only from a
real paid line, only inside their own two levels, never on their own purchase, never for
recruiting. It is reversed with refunds and settled like any accrual."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from services.commission.domain.chain import Beneficiary
from services.commission.domain.plan import BP, Level, LineRate, Plan, cap_amount


class PaidLine(NamedTuple):
    line_id: str
    product_id: str
    category_id: str | None
    quantity: int
    paid_fen: int


class PaidOrder(NamedTuple):
    order_id: str
    buyer_id: str
    paid_at: datetime
    lines: tuple[PaidLine, ...]


class Accrual(NamedTuple):
    accrual_id: str
    order_id: str
    line_id: str
    level: Level
    beneficiary_id: str
    buyer_id: str
    product_id: str
    base_fen: int
    quantity: int
    rate_bp: int | None
    fixed_fen_per_unit: int | None
    amount_fen: int
    plan_version: int
    tier: str
    freeze_days: int
    unfreeze: str
    paid_at: datetime
    kind: str = "commission"   # or "management_bonus"


class Skip(NamedTuple):
    order_id: str
    line_id: str | None  # None: the whole order
    beneficiary_id: str
    level: Level
    reason: str


MANAGEMENT_BONUS = "management_bonus"
_BONUS_SUFFIX = ":management"


def accrual_id(order_id: str, line_id: str, level: str, kind: str = "commission") -> str:
    return f"{order_id}:{line_id}:{level}" + (_BONUS_SUFFIX if kind == MANAGEMENT_BONUS else "")


def is_management_bonus(accrual_id_: str) -> bool:
    """Whether a stored accrual is a management bonus (its id says so; the row keeps the slot's level)."""
    return accrual_id_.endswith(_BONUS_SUFFIX)


# the order in which the cap guard takes money back: level 2 first
_GUARD_ORDER: tuple[Level, ...] = ("level2", "level1", "self_purchase")


def accrue(order: PaidOrder, chain: list[Beneficiary], plan: Plan, plan_version: int) -> tuple[list[Accrual], list[Skip]]:
    """Accruals and recorded skips for one order (pure)."""
    accruals: list[Accrual] = []
    skips: list[Skip] = []
    payable: list[Beneficiary] = []
    for b in chain:
        if b.eligible:
            payable.append(b)
        else:
            skips.append(Skip(order.order_id, None, b.promoter_id, b.level, b.reason or "skipped"))
    if not payable:
        return accruals, skips
    unfreeze = plan.unfreeze()
    tiers = {b.level: plan.tier(b.tier).name for b in payable}
    rate_for = plan.cached_rate
    managers: list[tuple[Beneficiary, int]] = []
    if plan.management_enabled:
        managers = [(b, plan.tier(b.tier).management_bp) for b in payable
                    if b.level in ("level2", "level1") and plan.tier(b.tier).management_bp > 0]
        managers.sort(key=lambda m: m[0].level != "level2")  # the guard takes level 2's bonus first
    for line in order.lines:
        amounts: dict[Level, tuple[Beneficiary, LineRate, int]] = {}
        for b in payable:
            rate = rate_for(tiers[b.level], b.level, line.product_id, line.category_id)
            amounts[b.level] = (b, rate, rate.amount(line.paid_fen, line.quantity))
        cap = cap_amount(plan.cap_bp, line.paid_fen)
        bonuses = [(b, bp, line.paid_fen * bp // BP) for b, bp in managers]
        excess = sum(a for _, _, a in amounts.values()) + sum(a for _, _, a in bonuses) - cap
        for i, (b, bp, a) in enumerate(bonuses):
            if excess <= 0:
                break
            cut = min(a, excess)
            bonuses[i] = (b, bp, a - cut)
            excess -= cut
        guarded: set[Level] = set()
        for level in (_GUARD_ORDER if excess > 0 else ()):
            if excess <= 0:
                break
            if level in amounts:
                b, rate, a = amounts[level]
                cut = min(a, excess)
                amounts[level] = (b, rate, a - cut)
                excess -= cut
                guarded.add(level)
        for level, (b, rate, amount) in amounts.items():
            if amount <= 0:
                skips.append(Skip(order.order_id, line.line_id, b.promoter_id, level,
                                  "cap_guard" if level in guarded else "zero_amount"))
                continue
            accruals.append(Accrual(
                accrual_id=accrual_id(order.order_id, line.line_id, level), order_id=order.order_id,
                line_id=line.line_id, level=level, beneficiary_id=b.promoter_id, buyer_id=order.buyer_id,
                product_id=line.product_id, base_fen=line.paid_fen, quantity=line.quantity, rate_bp=rate.rate_bp,
                fixed_fen_per_unit=rate.fixed_fen_per_unit, amount_fen=amount, plan_version=plan_version,
                tier=tiers[level], freeze_days=plan.freeze_days, unfreeze=unfreeze, paid_at=order.paid_at,
            ))
        for b, bp, amount in bonuses:
            if amount <= 0:
                continue  # cut by the cap guard (a fixed override sold below its floor) or a zero line
            accruals.append(Accrual(
                accrual_id=accrual_id(order.order_id, line.line_id, b.level, MANAGEMENT_BONUS), order_id=order.order_id,
                line_id=line.line_id, level=b.level, beneficiary_id=b.promoter_id, buyer_id=order.buyer_id,
                product_id=line.product_id, base_fen=line.paid_fen, quantity=line.quantity, rate_bp=bp,
                fixed_fen_per_unit=None, amount_fen=amount, plan_version=plan_version, tier=tiers[b.level],
                freeze_days=plan.freeze_days, unfreeze=unfreeze, paid_at=order.paid_at, kind=MANAGEMENT_BONUS,
            ))
    return accruals, skips


def estimate(plan: Plan, tier: str | None, lines: list[PaidLine]) -> list[dict[str, int]]:
    """What a promoter of `tier` would earn per line: as level 1 when a customer buys through
    their share, and as the self-purchase rebate when they buy themselves (cap guard included)."""
    out = []
    cap_levels = plan.levels
    for line in lines:
        row: dict[str, int] = {}
        for level in ("level1", "self_purchase"):
            rate = plan.rate_for(tier, level, line.product_id, line.category_id)  # type: ignore[arg-type]
            row[level] = min(rate.amount(line.paid_fen, line.quantity), cap_amount(plan.cap_bp, line.paid_fen))
        row["levels"] = cap_levels
        out.append(row)
    return out


# -- reversal --------------------------------------------------------------------------------
def reversal_amount(amount_fen: int, reversed_fen: int, line_paid_fen: int, refunded_after_fen: int) -> int:
    """How much more of an accrual to reverse once `refunded_after_fen` of the line has been
    refunded in total: the cumulative target is `amount * refunded / paid` rounded down, and the
    whole amount once the line is fully refunded, so partial reversals add up exactly to the
    accrual and each step is the difference (never negative)."""
    if refunded_after_fen >= line_paid_fen:
        target = amount_fen
    else:
        target = amount_fen * refunded_after_fen // line_paid_fen
    return max(target - reversed_fen, 0)


# -- settlement ------------------------------------------------------------------------------
def settlement_due_at(completed_at: datetime, freeze_days: int) -> datetime:
    """Commission unfreezes `freeze_days` after the order is completed (after-sale window closed)."""
    return completed_at + timedelta(days=freeze_days)


def settlement_amount(amount_fen: int, reversed_fen: int) -> int:
    """What moves from frozen to available: accrued minus what was reversed before settlement.
    Zero when the line was fully refunded (still settled, so every accrual's life ends in the log)."""
    return amount_fen - reversed_fen
