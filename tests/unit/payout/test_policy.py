"""Withdrawal limits and fee: rules that must hold for every amount and every policy."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from services.payout.domain import errors
from services.payout.domain.policy import (
    DayUsage, WithdrawalPolicy, check_real_name, check_request, fee_for, needs_review, quote,
)

POLICY = WithdrawalPolicy(min_fen=100, max_fen=500_000, fee_bp=60, fee_max_fen=2_500, daily_count_max=3,
                          daily_amount_max_fen=1_000_000, auto_approve_max_fen=10_000)

policies = st.builds(
    lambda lo, span, bp, cap, n, day, auto: WithdrawalPolicy(
        min_fen=lo, max_fen=lo + span, fee_bp=bp, fee_max_fen=cap, daily_count_max=n,
        daily_amount_max_fen=day, auto_approve_max_fen=auto),
    st.integers(1, 10_000), st.integers(0, 5_000_000), st.integers(0, 9_999), st.integers(0, 1_000_000),
    st.integers(1, 20), st.integers(1, 50_000_000), st.integers(0, 1_000_000),
)
amounts = st.integers(-10**12, 10**12)


@given(amount=st.integers(1, 10**12), bp=st.integers(0, 9_999), cap=st.integers(0, 10**9))
def test_fee_is_floor_of_percentage_capped_and_never_negative(amount, bp, cap):
    fee = fee_for(amount, bp, cap)
    assert 0 <= fee <= cap
    assert fee <= amount * bp // 10_000          # rounded down: never more than the stated percentage
    assert fee == min(amount * bp // 10_000, cap)
    assert amount - fee > 0                       # bp < 100%: something is always left


@given(a=st.integers(1, 10**9), b=st.integers(1, 10**9), bp=st.integers(0, 9_999), cap=st.integers(0, 10**6))
def test_fee_grows_with_the_amount(a, b, bp, cap):
    lo, hi = sorted((a, b))
    assert fee_for(lo, bp, cap) <= fee_for(hi, bp, cap)


def test_fee_rounding_examples():
    assert fee_for(1_000, 60, 2_500) == 6          # 0.6% of 10 yuan
    assert fee_for(1_999, 60, 2_500) == 11         # 11.994 -> 11 (down)
    assert fee_for(500_000, 60, 2_500) == 2_500    # 3000 capped at 2500
    assert fee_for(0, 60, 2_500) == 0
    assert fee_for(-5, 60, 2_500) == 0


@settings(max_examples=300)
@given(policy=policies, amount=amounts)
def test_an_accepted_quote_is_within_the_rules(policy, amount):
    try:
        q = quote(policy, amount)
    except (errors.AmountNotPositiveError, errors.BelowMinimumError, errors.AboveMaximumError,
            errors.NetNotPositiveError) as exc:
        # refused exactly when a rule is broken
        assert amount <= 0 or amount < policy.min_fen or amount > policy.max_fen or \
            amount - fee_for(amount, policy.fee_bp, policy.fee_max_fen) <= 0, exc
        return
    assert policy.min_fen <= q.amount_fen <= policy.max_fen
    assert q.fee_fen >= 0 and q.net_fen > 0
    assert q.fee_fen + q.net_fen == q.amount_fen
    assert q.fee_fen <= policy.fee_max_fen


@pytest.mark.parametrize("amount,error", [
    (-1, errors.AmountNotPositiveError), (0, errors.AmountNotPositiveError), (-10**9, errors.AmountNotPositiveError),
    (99, errors.BelowMinimumError), (500_001, errors.AboveMaximumError),
])
def test_negative_zero_below_minimum_and_above_maximum_are_refused(amount, error):
    with pytest.raises(error):
        quote(POLICY, amount)


@settings(max_examples=300)
@given(policy=policies, amount=st.integers(1, 6_000_000), available=st.integers(-10**6, 10**8),
       count=st.integers(0, 25), used=st.integers(0, 60_000_000))
def test_a_request_passes_only_within_balance_and_daily_limits(policy, amount, available, count, used):
    try:
        q = check_request(policy, amount, "张三", available, DayUsage(count, used))
    except errors.PayoutError:
        return
    assert q.amount_fen <= available
    assert count + 1 <= policy.daily_count_max
    assert used + amount <= policy.daily_amount_max_fen


def test_daily_count_and_amount_limits():
    with pytest.raises(errors.DailyCountExceededError):
        check_request(POLICY, 1_000, None, 10**6, DayUsage(3, 3_000))
    with pytest.raises(errors.DailyAmountExceededError):
        check_request(POLICY, 1_000, None, 10**6, DayUsage(1, 999_500))
    with pytest.raises(errors.InsufficientBalanceError):
        check_request(POLICY, 1_000, None, 999, DayUsage())
    assert check_request(POLICY, 1_000, None, 1_000, DayUsage(2, 999_000)).net_fen == 994


def test_real_name_is_required_from_2000_yuan():
    check_real_name(POLICY, 199_999, None)
    with pytest.raises(errors.RealNameRequiredError):
        check_real_name(POLICY, 200_000, None)
    with pytest.raises(errors.RealNameRequiredError):
        check_real_name(POLICY, 200_000, "   ")
    check_real_name(POLICY, 200_000, "张三")


def test_review_threshold_is_inclusive():
    assert not needs_review(POLICY, 10_000)
    assert needs_review(POLICY, 10_001)


@pytest.mark.parametrize("kw", [
    {"min_fen": 0}, {"min_fen": 10, "max_fen": 5}, {"fee_bp": 10_000}, {"fee_bp": -1}, {"fee_max_fen": -1},
    {"daily_count_max": 0}, {"real_name_min_fen": 200_001},
])
def test_a_policy_that_breaks_a_rule_is_refused(kw):
    with pytest.raises(ValueError):
        WithdrawalPolicy(**kw)
