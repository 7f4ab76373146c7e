"""Withholding on labour remuneration by the cumulative method (STA announcement 2025 No. 16):
worked examples in yuan turned into fen, the brackets' edges, rounding, restarts, and properties."""
from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from services.payout.domain.errors import NetNotPositiveError
from services.payout.domain.policy import WithdrawalPolicy, after_tax, quote
from services.payout.domain.tax import (
    BRACKETS, Payment, Withheld, bracket, next_withholding, withhold, withholding_on, year_of_withholdings,
)

Y = 100  # fen per yuan


def test_three_consecutive_months_worked_example():
    """Jan 10,000, Feb 20,000, Mar 50,000 yuan from the platform.
    Jan: 10,000 - 2,000 expenses - 5,000 = 3,000 taxable x 3 % = 90.
    Feb: cumulative 30,000 - 6,000 - 10,000 = 14,000 x 3 % = 420; 420 - 90 = 330.
    Mar: cumulative 80,000 - 16,000 - 15,000 = 49,000 x 10 % - 2,520 = 2,380; 2,380 - 420 = 1,960."""
    ws = year_of_withholdings([Payment(date(2026, 1, 20), 10_000 * Y), Payment(date(2026, 2, 20), 20_000 * Y),
                               Payment(date(2026, 3, 20), 50_000 * Y)])
    assert [w.withheld_fen for w in ws] == [90 * Y, 330 * Y, 1_960 * Y]
    march = ws[-1]
    assert (march.months, march.cumulative_income_fen, march.cumulative_expense_fen, march.cumulative_basic_deduction_fen) == (
        3, 80_000 * Y, 16_000 * Y, 15_000 * Y)
    assert (march.taxable_fen, march.rate_bp, march.quick_deduction_fen, march.cumulative_tax_fen) == (49_000 * Y, 1000, 2_520 * Y, 2_380 * Y)
    assert march.after_tax_fen == 50_000 * Y - 1_960 * Y


def test_below_the_deduction_nothing_is_withheld():
    # 3,000 yuan: 3,000 - 600 - 5,000 < 0
    assert withhold(3_000 * Y, months=1, income_before_fen=0, withheld_before_fen=0).withheld_fen == 0
    # 6,250 yuan is exactly 5,000 after expenses: nothing; 7,000 yuan: 600 taxable x 3 % = 18
    assert withhold(6_250 * Y, months=1, income_before_fen=0, withheld_before_fen=0).withheld_fen == 0
    assert withhold(7_000 * Y, months=1, income_before_fen=0, withheld_before_fen=0).withheld_fen == 18 * Y


def test_two_payments_in_one_month_count_the_month_once():
    ws = year_of_withholdings([Payment(date(2026, 5, 3), 5_000 * Y), Payment(date(2026, 5, 28), 5_000 * Y)])
    assert [w.months for w in ws] == [1, 1]
    assert [w.withheld_fen for w in ws] == [0, 90 * Y]  # cumulative 10,000: 3,000 taxable x 3 %


def test_a_month_without_payment_and_a_new_year_start_a_new_cumulation():
    gap = year_of_withholdings([Payment(date(2026, 1, 5), 10_000 * Y), Payment(date(2026, 3, 5), 10_000 * Y)])
    assert [(w.months, w.withheld_fen) for w in gap] == [(1, 90 * Y), (1, 90 * Y)]
    years = year_of_withholdings([Payment(date(2025, 12, 5), 10_000 * Y), Payment(date(2026, 1, 5), 10_000 * Y)])
    assert [(w.months, w.cumulative_income_fen) for w in years] == [(1, 10_000 * Y), (1, 10_000 * Y)]


def test_top_bracket_and_rounding_half_up_to_the_fen():
    # 2,000,000 yuan in one month: 1,600,000 - 5,000 = 1,595,000 taxable x 45 % - 181,920 = 535,830
    assert withhold(2_000_000 * Y, months=1, income_before_fen=0, withheld_before_fen=0).withheld_fen == 535_830 * Y
    # 6,250.01 yuan: 0.8 fen taxable x 3 % = 0.024 fen -> 0; 6,250.21 yuan: 16.8 fen x 3 % = 0.504 -> 1 fen
    w = withhold(625_001, months=1, income_before_fen=0, withheld_before_fen=0)
    assert (w.taxable_fen, w.withheld_fen) == (Fraction(4, 5), 0)
    assert withhold(625_021, months=1, income_before_fen=0, withheld_before_fen=0).withheld_fen == 1


def test_bracket_edges():
    assert bracket(36_000 * Y) == (300, 0) and bracket(36_000 * Y + 1) == (1000, 2_520 * Y)
    assert bracket(960_000 * Y) == (3500, 85_920 * Y) and bracket(960_000 * Y + 1) == (4500, 181_920 * Y)
    # the quick deductions make the tax continuous at every edge
    for (upper, rate, quick), (_, rate2, quick2) in zip(BRACKETS, BRACKETS[1:]):
        assert upper * rate // 10_000 - quick == upper * rate2 // 10_000 - quick2


def test_quote_after_earlier_payments_and_refusals():
    earlier = [Payment(date(2026, 1, 20), 10_000 * Y), Payment(date(2026, 2, 20), 20_000 * Y)]
    assert next_withholding(earlier, 50_000 * Y, date(2026, 3, 1)).withheld_fen == 1_960 * Y
    with pytest.raises(ValueError):
        next_withholding(earlier, 0, date(2026, 3, 1))
    with pytest.raises(ValueError):
        withhold(-1, months=1, income_before_fen=0, withheld_before_fen=0)


@given(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 28), st.integers(1, 30_000_000)), min_size=1, max_size=12))
def test_withholding_is_whole_fen_never_negative_and_adds_up_to_the_cumulative_tax(rows):
    payments = [Payment(date(2026, m, d), fen) for m, d, fen in rows]
    ws = year_of_withholdings(payments)
    for w in ws:
        assert isinstance(w.withheld_fen, int) and 0 <= w.withheld_fen <= w.income_fen
    # within one cumulation the tax withheld so far is never less than the cumulative tax due
    withheld = 0
    for w in ws:
        withheld = w.withheld_before_fen + w.withheld_fen
        assert withheld >= w.cumulative_tax_fen


def _one_by_one(payments: list[Payment]) -> list[int]:
    """Withhold each payment as the request path does: after the earlier ones and what was withheld on them."""
    done: list[Withheld] = []
    for p in sorted(payments, key=lambda p: p.paid_on):
        w = withholding_on(done, p.income_fen, p.paid_on)
        done.append(Withheld(p.paid_on, p.income_fen, w.withheld_fen))
    return [d.withheld_fen for d in done]


def test_withholding_at_each_request_follows_the_worked_example():
    # Jan 10,000, Feb 20,000, Mar 50,000 yuan: 90, 330, 1,960 withheld, each fixed when requested
    pays = [Payment(date(2026, 1, 20), 10_000 * Y), Payment(date(2026, 2, 20), 20_000 * Y), Payment(date(2026, 3, 20), 50_000 * Y)]
    assert _one_by_one(pays) == [90 * Y, 330 * Y, 1_960 * Y]
    # the tax already withheld is what was really withheld: had nothing been withheld in Jan and Feb
    # (payments from before the deduction), March withholds the whole cumulative 2,380
    unwithheld = [Withheld(date(2026, 1, 20), 10_000 * Y, 0), Withheld(date(2026, 2, 20), 20_000 * Y, 0)]
    assert withholding_on(unwithheld, 50_000 * Y, date(2026, 3, 20)).withheld_fen == 2_380 * Y
    # a gap month and a new year start new cumulations; later payments are not counted
    assert withholding_on([Withheld(date(2026, 1, 5), 10_000 * Y, 90 * Y)], 10_000 * Y, date(2026, 3, 5)).months == 1
    assert withholding_on([Withheld(date(2025, 12, 5), 10_000 * Y, 90 * Y)], 10_000 * Y, date(2026, 1, 5)).withheld_fen == 90 * Y
    assert withholding_on([Withheld(date(2026, 4, 5), 90_000 * Y, 0)], 10_000 * Y, date(2026, 3, 5)).withheld_fen == 90 * Y
    with pytest.raises(ValueError):
        withholding_on([], 0, date(2026, 3, 5))


@given(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 28), st.integers(1, 30_000_000)), min_size=1, max_size=12))
def test_withholding_at_each_request_equals_the_year_recomputed(rows):
    payments = [Payment(date(2026, m, d), fen) for m, d, fen in rows]
    assert _one_by_one(payments) == [w.withheld_fen for w in year_of_withholdings(payments)]


def test_the_transfer_is_the_amount_less_fee_and_tax():
    policy = WithdrawalPolicy(max_fen=10**9, fee_bp=100, fee_max_fen=500)
    q = after_tax(quote(policy, 1_000_000), 9_000)     # 10,000 yuan: 5 yuan fee (capped), 90 yuan tax
    assert (q.amount_fen, q.fee_fen, q.tax_withheld_fen, q.net_fen) == (1_000_000, 500, 9_000, 990_500)
    assert after_tax(quote(policy, 200), 0).net_fen == 198
    with pytest.raises(NetNotPositiveError):
        after_tax(quote(policy, 200), 198)
    with pytest.raises(ValueError):
        after_tax(quote(policy, 200), -1)


@given(st.integers(100, 10**9), st.integers(0, 9_999), st.integers(0, 10**6), st.lists(st.integers(1, 10**8), max_size=5))
def test_fee_tax_and_transfer_add_up_to_the_amount(amount, fee_bp, fee_max, earlier):
    policy = WithdrawalPolicy(max_fen=10**9, fee_bp=fee_bp, fee_max_fen=fee_max)
    done = [Withheld(date(2026, 5, 1), fen, 0) for fen in earlier]
    w = withholding_on(done, amount, date(2026, 5, 2))
    try:
        q = after_tax(quote(policy, amount), w.withheld_fen)
    except NetNotPositiveError:
        assert amount - min(amount * fee_bp // 10_000, fee_max) - w.withheld_fen <= 0
        return
    assert q.fee_fen + q.tax_withheld_fen + q.net_fen == q.amount_fen == amount and q.net_fen > 0


def test_events_written_before_the_tax_field_read_as_nothing_withheld():
    import json
    from pathlib import Path

    from shared.contracts.payout import WithdrawalPaid, WithdrawalRequested
    from shared.events import Envelope, catalog

    samples = Path(__file__).resolve().parents[2] / "contracts_samples"
    for name, cls in (("WithdrawalPaid", WithdrawalPaid), ("WithdrawalRequested", WithdrawalRequested)):
        raw = json.loads((samples / f"{name}.v1.json").read_text())
        assert "tax_withheld_fen" not in raw["payload"]          # the frozen witness predates the field
        p = catalog.payload(Envelope.model_validate(raw))
        assert isinstance(p, cls) and p.tax_withheld_fen == 0 and p.transfer_fen == p.amount_fen - p.fee_fen
