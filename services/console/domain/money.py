"""Display of money (integer fen) and ratios for operators."""
from __future__ import annotations


def yuan(fen: int | None) -> str:
    """12345 -> "¥123.45"; negative amounts keep their sign."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(int(fen)), 100)
    return f"{sign}¥{q:,}.{r:02d}"


def ratio_percent(part: int, whole: int) -> str:
    """Commission cost as a share of sales, one decimal ("—" without sales)."""
    if not whole:
        return "—"
    return f"{part * 100 / whole:.1f}%"


def bp_percent(bp: int | None) -> str:
    return "—" if bp is None else f"{bp / 100:g}%"
