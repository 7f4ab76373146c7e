"""Individual income tax withheld on commission paid to promoters (pure rules, integer fen).

Commission a platform pays an individual for promoting is labour remuneration (劳务报酬所得). From
2025-10-01 an internet platform withholds it with the **cumulative prepayment method** (累计预扣法),
State Taxation Administration announcement 2025 No. 16 (国家税务总局公告2025年第16号, section 1(1)),
by the formula of announcement 2018 No. 61:

    this period's withholding = (cumulative income − cumulative expenses − cumulative tax-free income
        − cumulative basic deduction − other cumulative deductions) × rate − quick deduction
        − cumulative tax relief − cumulative tax already withheld

where cumulative expenses = cumulative income × 20 %, and the cumulative basic deduction = 5,000 yuan
× the number of months of the year, up to this one, in which the person has **consecutively**
received labour remuneration from this platform. The rate and quick deduction are those of the
comprehensive-income table (3 % to 45 %, annual brackets), applied to the cumulative amount.

Our reading of "consecutive months" (to confirm with the platform's tax adviser): the months are the
unbroken run of calendar months of this year, ending with the payment's month, in each of which the
person was paid; a month without payment ends the run, and the next payment starts a new
cumulation (income, months and tax withheld), as a new employment does for wages. A negative result
withholds nothing and refunds nothing (the annual reconciliation settles it).

Amounts are fen. The 20 % expense is kept exact (a fraction) and only the cumulative tax is rounded,
half up, to the fen."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Iterable

EXPENSE_RATE = Fraction(20, 100)
BASIC_DEDUCTION_PER_MONTH_FEN = 500_000  # 5,000 yuan

#: (upper bound of the cumulative taxable amount in fen, inclusive, or None; rate in bp; quick deduction in fen):
#: the comprehensive-income table (综合所得税率表) used as 个人所得税预扣率表一
BRACKETS: tuple[tuple[int | None, int, int], ...] = (
    (3_600_000, 300, 0),              # ≤ 36,000 yuan: 3 %
    (14_400_000, 1000, 252_000),      # ≤ 144,000: 10 %, 2,520
    (30_000_000, 2000, 1_692_000),    # ≤ 300,000: 20 %, 16,920
    (42_000_000, 2500, 3_192_000),    # ≤ 420,000: 25 %, 31,920
    (66_000_000, 3000, 5_292_000),    # ≤ 660,000: 30 %, 52,920
    (96_000_000, 3500, 8_592_000),    # ≤ 960,000: 35 %, 85,920
    (None, 4500, 18_192_000),         # above: 45 %, 181,920
)


def bracket(taxable_fen: Fraction | int) -> tuple[int, int]:
    """(rate in bp, quick deduction in fen) for a cumulative taxable amount."""
    for upper, rate_bp, quick in BRACKETS:
        if upper is None or taxable_fen <= upper:
            return rate_bp, quick
    raise AssertionError("unreachable")


def _round_half_up(x: Fraction) -> int:
    return int((x * 2 + 1) // 2) if x >= 0 else -int((-x * 2 + 1) // 2)


@dataclass(frozen=True)
class Withholding:
    """One payment's withholding and the cumulative figures behind it."""

    income_fen: int
    months: int
    cumulative_income_fen: int
    cumulative_expense_fen: Fraction
    cumulative_basic_deduction_fen: int
    taxable_fen: Fraction
    rate_bp: int
    quick_deduction_fen: int
    cumulative_tax_fen: int
    withheld_before_fen: int
    withheld_fen: int

    @property
    def after_tax_fen(self) -> int:
        return self.income_fen - self.withheld_fen


def withhold(income_fen: int, *, months: int, income_before_fen: int, withheld_before_fen: int,
             tax_free_fen: int = 0, other_deductions_fen: int = 0, relief_fen: int = 0) -> Withholding:
    """The withholding on a payment of `income_fen` when this cumulation already had
    `income_before_fen` of income and `withheld_before_fen` of tax, over `months` months."""
    if income_fen < 0 or income_before_fen < 0 or withheld_before_fen < 0 or months < 1:
        raise ValueError("income, prior income and prior tax are >= 0 fen and months >= 1")
    cum_income = income_before_fen + income_fen
    expense = cum_income * EXPENSE_RATE
    basic = BASIC_DEDUCTION_PER_MONTH_FEN * months
    taxable = max(Fraction(0), cum_income - expense - tax_free_fen - basic - other_deductions_fen)
    rate_bp, quick = bracket(taxable)
    cum_tax = max(0, _round_half_up(taxable * rate_bp / 10_000 - quick) - relief_fen) if taxable > 0 else 0
    this = max(0, cum_tax - withheld_before_fen)
    return Withholding(income_fen, months, cum_income, expense, basic, taxable, rate_bp, quick, cum_tax,
                       withheld_before_fen, this)


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


@dataclass(frozen=True)
class Payment:
    """A payment of labour remuneration: its (business-timezone) date and amount."""

    paid_on: date
    income_fen: int


def year_of_withholdings(payments: Iterable[Payment]) -> list[Withholding]:
    """Withholdings of a person's payments from this platform in payment order (one calendar year
    or several: the cumulation restarts each January and after a month without payment)."""
    out: list[Withholding] = []
    run_start: int | None = None
    last: int | None = None
    income = withheld = 0
    for p in sorted(payments, key=lambda p: p.paid_on):
        m = _month_index(p.paid_on)
        if last is None or m > last + 1 or m // 12 != last // 12:
            run_start, income, withheld = m, 0, 0   # a new year or a gap: a new cumulation
        w = withhold(p.income_fen, months=m - run_start + 1, income_before_fen=income, withheld_before_fen=withheld)  # type: ignore[operator]
        out.append(w)
        income, withheld, last = w.cumulative_income_fen, withheld + w.withheld_fen, m
    return out


def next_withholding(earlier: Iterable[Payment], income_fen: int, on: date) -> Withholding:
    """What a payment of `income_fen` on `on` would have withheld, after the person's earlier payments:
    the figure shown before a withdrawal is confirmed."""
    if income_fen <= 0:
        raise ValueError("a payment is more than 0 fen")
    return year_of_withholdings([*earlier, Payment(on, income_fen)])[-1]


@dataclass(frozen=True)
class Withheld:
    """An earlier payment of this platform to the person: its date, income and the tax actually
    withheld on it (what the formula's "tax already withheld" means)."""

    paid_on: date
    income_fen: int
    withheld_fen: int


def withholding_on(earlier: Iterable[Withheld], income_fen: int, on: date) -> Withholding:
    """The withholding fixed on a payment of `income_fen` on `on` (the figure deducted from the
    transfer and the one quoted before it), after the person's earlier payments with the tax really
    withheld on each. The cumulation is the unbroken run of paid months of `on`'s year ending with
    `on`'s month (as `year_of_withholdings`); payments after `on` are not counted. When every earlier
    payment was withheld by this function, the results equal `year_of_withholdings`."""
    if income_fen <= 0:
        raise ValueError("a payment is more than 0 fen")
    m = _month_index(on)
    before = [e for e in earlier if e.paid_on <= on]
    paid_months = {_month_index(e.paid_on) for e in before}
    start = m
    while start - 1 in paid_months and (start - 1) // 12 == m // 12:
        start -= 1
    run = [e for e in before if start <= _month_index(e.paid_on) <= m]
    return withhold(income_fen, months=m - start + 1, income_before_fen=sum(e.income_fen for e in run),
                    withheld_before_fen=sum(e.withheld_fen for e in run))
