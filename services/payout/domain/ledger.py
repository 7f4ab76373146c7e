"""The available-balance ledger algebra (the common brief's, restricted to what payout needs).

Live, the ledger is folded from commission events and changed directly by this service's
own withdrawals; an audit rebuild folds both streams. Both paths use `delta_of`."""
from __future__ import annotations

from dataclasses import dataclass

from shared.contracts.commission import CommissionReversed, CommissionSettled
from shared.contracts.payout import WithdrawalPaid, WithdrawalRejected, WithdrawalReleased, WithdrawalRequested
from shared.events import EventPayload


@dataclass(frozen=True)
class LedgerDelta:
    available_fen: int = 0
    reserved_fen: int = 0
    withdrawn_fen: int = 0
    #: totals kept for explanation: settled in, reversed out of settled money
    settled_fen: int = 0
    reversed_fen: int = 0

    def __add__(self, other: "LedgerDelta") -> "LedgerDelta":
        return LedgerDelta(
            self.available_fen + other.available_fen, self.reserved_fen + other.reserved_fen,
            self.withdrawn_fen + other.withdrawn_fen, self.settled_fen + other.settled_fen,
            self.reversed_fen + other.reversed_fen,
        )


def requested(amount_fen: int) -> LedgerDelta:
    return LedgerDelta(available_fen=-amount_fen, reserved_fen=amount_fen)


def released(amount_fen: int) -> LedgerDelta:
    """A rejection or a failed/cancelled/lapsed transfer: the reservation returns."""
    return LedgerDelta(available_fen=amount_fen, reserved_fen=-amount_fen)


def paid(amount_fen: int) -> LedgerDelta:
    return LedgerDelta(reserved_fen=-amount_fen, withdrawn_fen=amount_fen)


COMMISSION_TYPES = frozenset({"CommissionSettled", "CommissionReversed"})
WITHDRAWAL_TYPES = frozenset({"WithdrawalRequested", "WithdrawalRejected", "WithdrawalReleased", "WithdrawalPaid"})


def delta_of(payload: EventPayload) -> tuple[str, LedgerDelta] | None:
    """(promoter id, change) an event makes to the ledger, or None when it changes nothing."""
    match payload:
        case CommissionSettled():
            return payload.beneficiary_id, LedgerDelta(available_fen=payload.amount_fen, settled_fen=payload.amount_fen)
        case CommissionReversed(from_status="settled"):
            # may go negative: later settlements pay it back first
            return payload.beneficiary_id, LedgerDelta(available_fen=-payload.amount_fen, reversed_fen=payload.amount_fen)
        case CommissionReversed():
            return None  # taken from frozen money, which payout never sees
        case WithdrawalRequested():
            return payload.promoter_id, requested(payload.amount_fen)
        case WithdrawalRejected() | WithdrawalReleased():
            return payload.promoter_id, released(payload.amount_fen)
        case WithdrawalPaid():
            return payload.promoter_id, paid(payload.amount_fen)
    return None


def fold(payloads: list[EventPayload]) -> dict[str, LedgerDelta]:
    """Sum the changes per promoter (one write per promoter per batch)."""
    out: dict[str, LedgerDelta] = {}
    for p in payloads:
        d = delta_of(p)
        if d is not None:
            out[d[0]] = out.get(d[0], LedgerDelta()) + d[1]
    return out
