"""The balance algebra shared with payout: how each money event moves a promoter's columns.
Deltas add up in any order, so a balance is the sum over its events however the topics of the
log interleave: the live projection and the audit replay fold the same events to the same fen."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COLUMNS = ("frozen_fen", "available_fen", "reserved_fen", "withdrawn_fen", "reversed_fen")


@dataclass(frozen=True)
class Delta:
    frozen_fen: int = 0
    available_fen: int = 0
    reserved_fen: int = 0
    withdrawn_fen: int = 0
    reversed_fen: int = 0

    def __add__(self, other: "Delta") -> "Delta":
        return Delta(*(getattr(self, c) + getattr(other, c) for c in COLUMNS))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return tuple(getattr(self, c) for c in COLUMNS)  # type: ignore[return-value]


ZERO = Delta()

#: event types whose payload moves a balance
MONEY_EVENTS = frozenset({
    "CommissionAccrued", "CommissionReversed", "CommissionSettled",
    "WithdrawalRequested", "WithdrawalRejected", "WithdrawalReleased", "WithdrawalPaid",
})


def delta_of(event_type: str, p: Any) -> tuple[str, Delta] | None:
    """(promoter id, delta) of one money event payload; None for events that move nothing."""
    if event_type == "CommissionAccrued":
        return p.beneficiary_id, Delta(frozen_fen=p.amount_fen)
    if event_type == "CommissionReversed":
        if p.from_status == "frozen":
            return p.beneficiary_id, Delta(frozen_fen=-p.amount_fen, reversed_fen=p.amount_fen)
        return p.beneficiary_id, Delta(available_fen=-p.amount_fen, reversed_fen=p.amount_fen)
    if event_type == "CommissionSettled":
        return p.beneficiary_id, Delta(frozen_fen=-p.amount_fen, available_fen=p.amount_fen)
    if event_type == "WithdrawalRequested":
        return p.promoter_id, Delta(available_fen=-p.amount_fen, reserved_fen=p.amount_fen)
    if event_type in ("WithdrawalRejected", "WithdrawalReleased"):
        return p.promoter_id, Delta(reserved_fen=-p.amount_fen, available_fen=p.amount_fen)
    if event_type == "WithdrawalPaid":
        return p.promoter_id, Delta(reserved_fen=-p.amount_fen, withdrawn_fen=p.amount_fen)
    return None


def fold(deltas: dict[str, Delta], promoter_id: str, d: Delta) -> None:
    deltas[promoter_id] = deltas.get(promoter_id, ZERO) + d


class Deltas:
    """The same fold, accumulated in place (thousands of events per batch)."""

    def __init__(self) -> None:
        self._acc: dict[str, list[int]] = {}

    def add(self, promoter_id: str, d: Delta) -> None:
        acc = self._acc.get(promoter_id)
        if acc is None:
            self._acc[promoter_id] = [d.frozen_fen, d.available_fen, d.reserved_fen, d.withdrawn_fen, d.reversed_fen]
        else:
            acc[0] += d.frozen_fen
            acc[1] += d.available_fen
            acc[2] += d.reserved_fen
            acc[3] += d.withdrawn_fen
            acc[4] += d.reversed_fen

    def __bool__(self) -> bool:
        return bool(self._acc)

    def items(self) -> dict[str, Delta]:
        return {pid: Delta(*acc) for pid, acc in self._acc.items()}

    def rows(self) -> list[tuple[str, int, int, int, int, int]]:
        """(promoter_id, *COLUMNS) per promoter, in promoter order."""
        return [(pid, *self._acc[pid]) for pid in sorted(self._acc)]
