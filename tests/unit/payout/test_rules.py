"""Bill numbers, bill outcomes, the transfer body and the ledger algebra."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, strategies as st

from services.payout.domain import ledger, withdrawal as rules
from shared.contracts.commission import CommissionReversed, CommissionSettled
from shared.contracts.payout import WithdrawalPaid, WithdrawalRejected, WithdrawalReleased, WithdrawalRequested

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)


@given(st.uuids(), st.integers(1, 99))
def test_out_bill_no_is_stable_and_fits_wechat_format(wid, attempt):
    no = rules.out_bill_no(wid, attempt)
    assert rules.OUT_BILL_NO_RE.match(no) and len(no) <= 32
    assert no == rules.out_bill_no(uuid.UUID(str(wid)), attempt)


def test_attempts_get_different_bill_numbers():
    wid = uuid.uuid4()
    assert rules.out_bill_no(wid, 1) != rules.out_bill_no(wid, 2)
    with pytest.raises(ValueError):
        rules.out_bill_no(wid, 0)


@pytest.mark.parametrize("state,reason,kind,why", [
    ("SUCCESS", None, "paid", None),
    ("FAIL", "OVERDUE_CLOSE", "released", "overdue_close"),
    ("FAIL", "PAYEE_ACCOUNT_ABNORMAL", "released", "transfer_failed"),
    ("CANCELLED", None, "released", "transfer_cancelled"),
    ("WAIT_USER_CONFIRM", None, "open", None),
    ("ACCEPTED", None, "open", None),
    ("PROCESSING", None, "open", None),
    ("TRANSFERING", None, "open", None),
    ("CANCELING", None, "open", None),
])
def test_only_final_bill_states_finish_a_withdrawal(state, reason, kind, why):
    out = rules.outcome_of(state, reason)
    assert (out.kind, out.reason) == (kind, why)


def test_business_day_is_the_merchants_local_day():
    assert rules.business_day(datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc), "Asia/Shanghai") == date(2026, 12, 1)
    assert rules.business_day(datetime(2026, 11, 30, 15, 59, tzinfo=timezone.utc), "Asia/Shanghai") == date(2026, 11, 30)


def test_transfer_body_is_scene_1005_with_both_report_infos():
    terms = rules.TransferTerms(appid="wx1", notify_url="https://x.example/n")
    body = rules.transfer_body(terms, bill_no="abc01", openid="o1", net_fen=500, user_name_cipher="ENC")
    assert body["transfer_scene_id"] == "1005" and body["user_recv_perception"] == "劳务报酬"
    assert [i["info_type"] for i in body["transfer_scene_report_infos"]] == ["岗位类型", "报酬说明"]
    assert body["transfer_amount"] == 500 and body["user_name"] == "ENC"
    # no name check below 0.3 yuan: the name is not sent
    assert "user_name" not in rules.transfer_body(terms, bill_no="abc01", openid="o1", net_fen=29, user_name_cipher="ENC")
    with pytest.raises(ValueError):
        rules.transfer_body(terms, bill_no="bad-no", openid="o1", net_fen=500, user_name_cipher=None)
    with pytest.raises(ValueError):
        rules.transfer_body(terms, bill_no="abc", openid="o1", net_fen=0, user_name_cipher=None)


def test_backoff_doubles_up_to_the_maximum():
    assert [rules.next_check_delay(n, 1, 10) for n in range(6)] == [1, 2, 4, 8, 10, 10]


def _settled(p, amount):
    return CommissionSettled(accrual_id="a", order_id="o", beneficiary_id=p, amount_fen=amount, settled_at=NOW)


def _reversed(p, amount, from_status):
    return CommissionReversed(accrual_id="a", order_id="o", line_id="l", beneficiary_id=p, out_refund_no="r",
                              amount_fen=amount, from_status=from_status, reversed_at=NOW)


def test_ledger_algebra_matches_the_common_brief():
    events = [
        _settled("p", 1_000), _reversed("p", 300, "settled"), _reversed("p", 999, "frozen"),
        WithdrawalRequested(withdrawal_id="w1", promoter_id="p", amount_fen=400, fee_fen=2, requested_at=NOW),
        WithdrawalRequested(withdrawal_id="w2", promoter_id="p", amount_fen=200, fee_fen=1, requested_at=NOW),
        WithdrawalRequested(withdrawal_id="w3", promoter_id="p", amount_fen=100, fee_fen=0, requested_at=NOW),
        WithdrawalPaid(withdrawal_id="w1", promoter_id="p", amount_fen=400, fee_fen=2, out_bill_no="b", paid_at=NOW),
        WithdrawalReleased(withdrawal_id="w2", promoter_id="p", amount_fen=200, reason="overdue_close", released_at=NOW),
        WithdrawalRejected(withdrawal_id="w3", promoter_id="p", amount_fen=100, reason="r", rejected_by="op",
                           rejected_at=NOW),
        _settled("q", 50),
    ]
    folded = ledger.fold(events)
    assert folded["p"] == ledger.LedgerDelta(available_fen=300, reserved_fen=0, withdrawn_fen=400, settled_fen=1_000,
                                             reversed_fen=300)
    assert folded["q"].available_fen == 50


@given(st.lists(st.tuples(st.sampled_from(["settle", "reverse", "request", "release", "pay"]),
                          st.integers(1, 10_000)), max_size=60))
def test_folding_in_any_grouping_gives_the_same_ledger(ops):
    evs = []
    for kind, n in ops:
        evs.append({
            "settle": lambda: _settled("p", n), "reverse": lambda: _reversed("p", n, "settled"),
            "request": lambda: WithdrawalRequested(withdrawal_id="w", promoter_id="p", amount_fen=n, fee_fen=0, requested_at=NOW),
            "release": lambda: WithdrawalReleased(withdrawal_id="w", promoter_id="p", amount_fen=n, reason="x", released_at=NOW),
            "pay": lambda: WithdrawalPaid(withdrawal_id="w", promoter_id="p", amount_fen=n, fee_fen=0, out_bill_no="b", paid_at=NOW),
        }[kind]())
    whole = ledger.fold(evs).get("p", ledger.LedgerDelta())
    half = len(evs) // 2
    parts = ledger.fold(evs[:half]).get("p", ledger.LedgerDelta()) + ledger.fold(evs[half:]).get("p", ledger.LedgerDelta())
    assert whole == parts
    # money is conserved: what came in (settled - reversed) is available + reserved + withdrawn
    assert whole.settled_fen - whole.reversed_fen == whole.available_fen + whole.reserved_fen + whole.withdrawn_fen
