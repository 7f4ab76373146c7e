"""Explaining a fen: the arithmetic behind one accrual, as the accrual rule computed it.

Pure: given what the accrual recorded (base, quantity, rate or fixed fen per unit, amount) and
the plan's cap, say how the amount came about, and whether the cap guard lowered it."""
from __future__ import annotations

from dataclasses import dataclass

from services.commission.domain.plan import BP, cap_amount


@dataclass(frozen=True)
class Arithmetic:
    #: "percent" or "fixed"
    mode: str
    #: the formula with the numbers, e.g. "12345 × 1000 ÷ 10000 = 1234.5 → 1234"
    formula: str
    #: what the rate alone gives (before the cap guard)
    computed_fen: int
    #: what was accrued
    amount_fen: int
    #: the line's cap: base × cap_bp ÷ 10000, rounded down
    line_cap_fen: int
    #: True when the cap guard paid less than the rate gives
    lowered_by_cap_guard: bool


def arithmetic(base_fen: int, quantity: int, rate_bp: int | None, fixed_fen_per_unit: int | None,
               amount_fen: int, cap_bp: int) -> Arithmetic:
    if rate_bp is not None:
        computed = base_fen * rate_bp // BP
        exact = base_fen * rate_bp / BP
        shown = f"{exact:.4f}".rstrip("0").rstrip(".")
        formula = f"{base_fen} × {rate_bp} ÷ {BP} = {shown} → {computed}"
        mode = "percent"
    else:
        per_unit = fixed_fen_per_unit or 0
        computed = per_unit * quantity
        formula = f"{per_unit} × {quantity} = {computed}"
        mode = "fixed"
    return Arithmetic(mode=mode, formula=formula, computed_fen=computed, amount_fen=amount_fen,
                      line_cap_fen=cap_amount(cap_bp, base_fen), lowered_by_cap_guard=amount_fen < computed)
