"""The merchant's withdrawal rules: minimum, maximum, fee (basis points with a maximum),
per-day count and amount, review threshold, real-name threshold. Pure functions.

Fee rounding: the fee is rounded DOWN to the fen (floor of amount x bp / 10000), then capped
at `fee_max_fen`. Rounding down means the promoter is never charged more than the stated
percentage; the merchant gives up at most 1 fen per withdrawal."""
from __future__ import annotations

from dataclasses import dataclass

from services.payout.domain.errors import (
    AboveMaximumError, AmountNotPositiveError, BelowMinimumError, DailyAmountExceededError,
    DailyCountExceededError, InsufficientBalanceError, NetNotPositiveError, RealNameRequiredError,
)

BP_DENOMINATOR = 10_000
#: WeChat requires the payee's real name on a transfer of 2,000 yuan or more
WECHAT_REAL_NAME_FEN = 200_000


@dataclass(frozen=True)
class WithdrawalPolicy:
    min_fen: int = 100
    max_fen: int = 500_000
    fee_bp: int = 0
    fee_max_fen: int = 0
    daily_count_max: int = 3
    daily_amount_max_fen: int = 2_000_000
    #: amounts up to and including this are approved without an operator
    auto_approve_max_fen: int = 10_000
    #: a real name is required from this amount up (never above WeChat's own threshold)
    real_name_min_fen: int = WECHAT_REAL_NAME_FEN

    def __post_init__(self) -> None:
        if self.min_fen < 1:
            raise ValueError("min_fen must be at least 1")
        if self.max_fen < self.min_fen:
            raise ValueError("max_fen must be >= min_fen")
        if not 0 <= self.fee_bp < BP_DENOMINATOR:
            raise ValueError("fee_bp must be in [0, 10000)")
        if self.fee_max_fen < 0:
            raise ValueError("fee_max_fen must be >= 0")
        if self.daily_count_max < 1 or self.daily_amount_max_fen < 1:
            raise ValueError("daily limits must be positive")
        if self.auto_approve_max_fen < 0:
            raise ValueError("auto_approve_max_fen must be >= 0")
        if not 1 <= self.real_name_min_fen <= WECHAT_REAL_NAME_FEN:
            raise ValueError(f"real_name_min_fen must be in [1, {WECHAT_REAL_NAME_FEN}]")


@dataclass(frozen=True)
class Quote:
    """What leaves the balance (`amount_fen`), what the merchant keeps (`fee_fen`), the income tax
    withheld (`tax_withheld_fen`), and what is transferred to the WeChat balance (`net_fen`):
    amount = fee + tax + net."""

    amount_fen: int
    fee_fen: int
    net_fen: int
    tax_withheld_fen: int = 0


@dataclass(frozen=True)
class DayUsage:
    """Withdrawals of one promoter on one business day that still hold or took money."""

    count: int = 0
    amount_fen: int = 0


def fee_for(amount_fen: int, fee_bp: int, fee_max_fen: int) -> int:
    """floor(amount x bp / 10000), capped at fee_max_fen; 0 for a non-positive amount."""
    if amount_fen <= 0:
        return 0
    return min(amount_fen * fee_bp // BP_DENOMINATOR, fee_max_fen)


def quote(policy: WithdrawalPolicy, amount_fen: int) -> Quote:
    """The static rules (no balance, no day): positive, within [min, max], net > 0."""
    if amount_fen <= 0:
        raise AmountNotPositiveError(f"amount must be positive, got {amount_fen} fen")
    if amount_fen < policy.min_fen:
        raise BelowMinimumError(f"minimum withdrawal is {policy.min_fen} fen")
    if amount_fen > policy.max_fen:
        raise AboveMaximumError(f"maximum withdrawal is {policy.max_fen} fen")
    fee = fee_for(amount_fen, policy.fee_bp, policy.fee_max_fen)
    net = amount_fen - fee
    if net <= 0:
        raise NetNotPositiveError(f"the fee of {fee} fen leaves nothing to transfer")
    return Quote(amount_fen, fee, net)


def after_tax(q: Quote, withheld_fen: int) -> Quote:
    """The quote with the income tax withheld taken out of the transfer (the balance still moves by
    the whole amount: the tax is part of the promoter's remuneration, paid to the tax authority)."""
    if withheld_fen < 0:
        raise ValueError("withheld tax is >= 0 fen")
    net = q.amount_fen - q.fee_fen - withheld_fen
    if net <= 0:
        raise NetNotPositiveError(f"the fee of {q.fee_fen} fen and the tax of {withheld_fen} fen leave nothing to transfer")
    return Quote(q.amount_fen, q.fee_fen, net, withheld_fen)


def check_real_name(policy: WithdrawalPolicy, amount_fen: int, real_name: str | None) -> None:
    # judged on the amount, which is >= the transferred net: stricter than WeChat's rule
    if amount_fen >= policy.real_name_min_fen and not (real_name and real_name.strip()):
        raise RealNameRequiredError(f"a real name is required from {policy.real_name_min_fen} fen")


def check_request(policy: WithdrawalPolicy, amount_fen: int, real_name: str | None,
                  available_fen: int, today: DayUsage) -> Quote:
    """Every rule of a withdrawal request, against the (locked) balance and the day so far."""
    q = quote(policy, amount_fen)
    check_real_name(policy, amount_fen, real_name)
    if today.count + 1 > policy.daily_count_max:
        raise DailyCountExceededError(f"at most {policy.daily_count_max} withdrawals per day")
    if today.amount_fen + amount_fen > policy.daily_amount_max_fen:
        raise DailyAmountExceededError(
            f"at most {policy.daily_amount_max_fen} fen per day; {today.amount_fen} fen used today")
    if amount_fen > available_fen:
        raise InsufficientBalanceError(f"available balance is {max(available_fen, 0)} fen")
    return q


def needs_review(policy: WithdrawalPolicy, amount_fen: int) -> bool:
    return amount_fen > policy.auto_approve_max_fen
