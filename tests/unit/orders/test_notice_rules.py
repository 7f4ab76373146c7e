"""What a verified WeChat Pay notice may do: only a SUCCESS of our merchant and app, for
exactly the order's amount, pays an order; refunds move only pending -> final states."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.orders.domain import rules
from services.orders.domain.errors import NoticeRejectedError

M = rules.Merchant(mchid="1900000109", appid="wx1")
ORDER = rules.OrderFacts("o1", "T0000001", "placed", 2300, None)


def resource(**kw):
    base = {"mchid": "1900000109", "appid": "wx1", "out_trade_no": "T0000001", "transaction_id": "4200001",
            "trade_state": "SUCCESS", "amount": {"total": 2300, "payer_total": 2300}}
    return {**base, **kw}


def rejected(order, res) -> str:
    with pytest.raises(NoticeRejectedError) as exc:
        rules.judge_payment(order, res, M)
    return exc.value.code


def test_matching_success_pays_a_placed_order():
    assert rules.judge_payment(ORDER, resource(), M) == "paid"


def test_mismatches_are_refused_with_their_reason():
    assert rejected(ORDER, resource(mchid="1900000999")) == "mchid_mismatch"
    assert rejected(ORDER, resource(appid="wx2")) == "appid_mismatch"
    assert rejected(ORDER, resource(trade_state="NOTPAY")) == "not_paid"
    assert rejected(ORDER, resource(amount={"total": 2299})) == "amount_mismatch"
    assert rejected(ORDER, resource(amount={"total": "2300"})) == "amount_mismatch"
    assert rejected(ORDER, resource(amount=None)) == "amount_mismatch"
    assert rejected(ORDER, resource(transaction_id=None)) == "no_transaction_id"


def test_repeat_is_a_duplicate_and_another_transaction_a_conflict():
    paid = rules.OrderFacts("o1", "T0000001", "paid", 2300, "4200001")
    assert rules.judge_payment(paid, resource(), M) == "duplicate"
    completed = rules.OrderFacts("o1", "T0000001", "completed", 2300, "4200001")
    assert rules.judge_payment(completed, resource(), M) == "duplicate"
    with pytest.raises(NoticeRejectedError) as exc:
        rules.judge_payment(paid, resource(transaction_id="4200002"), M)
    assert exc.value.status == 409


def test_payment_after_cancellation_is_acknowledged_but_not_a_payment():
    cancelled = rules.OrderFacts("o1", "T0000001", "cancelled", 2300, None)
    assert rules.judge_payment(cancelled, resource(), M) == "paid_after_cancel"


REFUND = rules.RefundFacts("R1", "o1", "T0000001", "pending", 900, 2300)


def refund_res(status="SUCCESS", **kw):
    base = {"mchid": "1900000109", "out_trade_no": "T0000001", "out_refund_no": "R1", "refund_status": status,
            "amount": {"total": 2300, "refund": 900}}
    return {**base, **kw}


@pytest.mark.parametrize("status, outcome", [("SUCCESS", "succeeded"), ("CLOSED", "closed"), ("ABNORMAL", "abnormal")])
def test_refund_notice_moves_a_pending_refund(status, outcome):
    assert rules.judge_refund(REFUND, refund_res(status), M) == outcome


def test_abnormal_is_not_final():
    abnormal = rules.RefundFacts("R1", "o1", "T0000001", "abnormal", 900, 2300)
    assert rules.judge_refund(abnormal, refund_res("SUCCESS"), M) == "succeeded"
    assert rules.judge_refund(abnormal, refund_res("ABNORMAL"), M) == "duplicate"


def test_final_refund_states_do_not_move():
    done = rules.RefundFacts("R1", "o1", "T0000001", "succeeded", 900, 2300)
    assert rules.judge_refund(done, refund_res("SUCCESS"), M) == "duplicate"
    with pytest.raises(NoticeRejectedError):
        rules.judge_refund(done, refund_res("CLOSED"), M)
    closed = rules.RefundFacts("R1", "o1", "T0000001", "closed", 900, 2300)
    with pytest.raises(NoticeRejectedError):
        rules.judge_refund(closed, refund_res("SUCCESS"), M)


def test_refund_notice_mismatches_are_refused():
    for res in (refund_res(mchid="x"), refund_res(out_trade_no="T9"), refund_res(amount={"total": 2300, "refund": 901}),
                refund_res(amount={"total": 2301, "refund": 900}), refund_res("WHATEVER")):
        with pytest.raises(NoticeRejectedError):
            rules.judge_refund(REFUND, res, M)


def test_wechat_times_are_parsed_with_their_offset():
    default = datetime(2020, 1, 1, tzinfo=timezone.utc)
    t = rules.parse_wechat_time("2018-06-08T10:34:56+08:00", default)
    assert t == datetime(2018, 6, 8, 2, 34, 56, tzinfo=timezone.utc)
    assert rules.parse_wechat_time("2018-06-08T10:34:56", default) == default  # no offset: not trusted
    assert rules.parse_wechat_time(None, default) == default
