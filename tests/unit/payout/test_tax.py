"""Withholding on labour remuneration by the cumulative method (STA announcement 2025 No. 16):
worked examples in yuan turned into fen, the brackets' edges, rounding, restarts, and properties."""
from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from services.payout.domain.tax import BRACKETS, Payment, bracket, next_withholding, withhold, year_of_withholdings

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
