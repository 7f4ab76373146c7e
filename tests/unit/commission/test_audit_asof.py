"""Time travel's fold (pure): events after the instant, another promoter's and repeats are not
counted; each accrual's life (reversed so far, settled) is rebuilt as of the instant."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.commission.audit.asof import fold
from shared.contracts.commission import CommissionAccrued, CommissionReversed, CommissionSettled
from shared.contracts.payout import WithdrawalPaid, WithdrawalRequested
from shared.events import new_event

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def at(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


def ev(payload, m):
    return new_event(payload, occurred_at=at(m)), payload


def accrued(pid: str, aid: str, amount: int) -> CommissionAccrued:
    return CommissionAccrued(accrual_id=aid, order_id=aid.split(":")[0], line_id="l", beneficiary_id=pid, buyer_id="c", level="level1",
                             base_fen=amount * 10, quantity=1, rate_bp=1000, amount_fen=amount, plan_version=1, tier="sharer",
                             unfreeze="order_completed+0d", paid_at=at(0))


def test_as_of_each_instant():
    acc = ev(accrued("p", "o1:l:level1", 1000), 1)
    events = [
        ev(CommissionSettled(accrual_id="o1:l:level1", order_id="o1", beneficiary_id="p", amount_fen=750, settled_at=at(5)), 5),
        acc, acc,  # a resend
        ev(CommissionReversed(accrual_id="o1:l:level1", order_id="o1", line_id="l", beneficiary_id="p", out_refund_no="r",
                              amount_fen=250, from_status="frozen", reversed_at=at(3)), 3),
        ev(accrued("q", "o2:l:level1", 99), 2),  # someone else's
        ev(WithdrawalRequested(withdrawal_id="w", promoter_id="p", amount_fen=700, fee_fen=0, requested_at=at(7)), 7),
        ev(WithdrawalPaid(withdrawal_id="w", promoter_id="p", amount_fen=700, fee_fen=0, out_bill_no="b", paid_at=at(9)), 9),
    ]
    assert fold("p", at(0), events).balance == dict(frozen_fen=0, available_fen=0, reserved_fen=0, withdrawn_fen=0, reversed_fen=0)
    r = fold("p", at(4), events)
    assert r.balance["frozen_fen"] == 750 and r.balance["reversed_fen"] == 250 and r.events == 2
    assert [(x["reversed_fen"], x["status"], x["settled_fen"]) for x in r.records] == [(250, "frozen", None)]
    r = fold("p", at(8), events)
    assert (r.balance["available_fen"], r.balance["reserved_fen"]) == (50, 700)
    assert r.records[0]["status"] == "settled" and r.withdrawals == [{"withdrawal_id": "w", "amount_fen": 700, "status": "requested", "at": at(7)}]
    r = fold("p", at(60), events)
    assert (r.balance["reserved_fen"], r.balance["withdrawn_fen"]) == (0, 700) and r.withdrawals[0]["status"] == "paid"
