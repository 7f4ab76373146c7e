"""Who may approve a withdrawal under review (pure rules).

- Nobody decides their own withdrawal (an operator who is also a promoter).
- Amounts above the dual-approval threshold need two approvals by two different people: the
  first is recorded and the withdrawal stays under review; the same person approving again
  changes nothing; a different person's approval approves it.
- A rejection by one reviewer is enough (it returns the money)."""
from __future__ import annotations

from typing import Literal

from services.payout.domain.errors import OwnWithdrawalError

Step = Literal["first_approval", "repeat_first_approval", "approve"]


def check_not_own(promoter_id: str, by: str) -> None:
    if promoter_id == by:
        raise OwnWithdrawalError("nobody decides their own withdrawal")


def approval_step(*, amount_fen: int, dual_above_fen: int | None, first_approved_by: str | None, by: str) -> Step:
    """What an approval by `by` does to a withdrawal still under review."""
    if dual_above_fen is None or amount_fen <= dual_above_fen:
        return "approve"
    if first_approved_by is None:
        return "first_approval"
    if first_approved_by == by:
        return "repeat_first_approval"
    return "approve"
