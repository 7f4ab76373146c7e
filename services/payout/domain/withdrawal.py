"""A withdrawal's life and its WeChat transfer bill, as pure values and rules.

    pending_review --approve--> approved --bill exists--> transferring --SUCCESS--> paid
          |                        |                          |
          +--reject--> rejected    +--refused, no bill-->     +--FAIL/CANCELLED--> released
                                         released

`approved` means the bill may not exist yet (never sent, or sent with an unknown outcome);
`transferring` means WeChat has acknowledged the bill. The bill state WeChat reports is kept
beside it (`bill_state`), plus two of our own: SENDING (a create was sent and its outcome is
unknown: query before anything else) and REFUSED (WeChat answered a definite error)."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

Status = Literal["pending_review", "approved", "transferring", "paid", "rejected", "released"]
STATUSES: tuple[str, ...] = ("pending_review", "approved", "transferring", "paid", "rejected", "released")
FINAL_STATUSES = frozenset({"paid", "rejected", "released"})
#: statuses whose money no longer counts towards the day's limits (it came back)
RETURNED_STATUSES = ("rejected", "released")

SENDING = "SENDING"
REFUSED = "REFUSED"
TERMINAL_BILL_STATES = frozenset({"SUCCESS", "FAIL", "CANCELLED"})
#: the user can (re)open the confirmation page in these states
CONFIRMABLE_BILL_STATES = frozenset({"WAIT_USER_CONFIRM", "TRANSFERING"})

OUT_BILL_NO_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")

SCENE_COMMISSION = "1005"          # 佣金报酬
RECV_PERCEPTION = "劳务报酬"
REPORT_JOB_TYPE = "岗位类型"
REPORT_PAY_NOTE = "报酬说明"
#: WeChat's name check does not work below 0.3 yuan; the name is sent from here up
NAME_CHECK_MIN_FEN = 30


def out_bill_no(withdrawal_id: uuid.UUID, attempt: int) -> str:
    """Stable bill number of one attempt: 30 hex digits of the withdrawal id + 2-digit attempt
    (32 chars of [0-9a-f]). The same attempt always gets the same number, so a retried create
    can never open a second bill."""
    if not 1 <= attempt <= 99:
        raise ValueError("attempt must be in [1, 99]")
    return f"{withdrawal_id.hex[:30]}{attempt:02d}"


def business_day(at: datetime, tz: str) -> date:
    """The merchant's calendar day (daily limits reset at local midnight)."""
    return at.astimezone(ZoneInfo(tz)).date()


@dataclass(frozen=True)
class BillOutcome:
    kind: Literal["paid", "released", "open"]
    reason: str | None = None


def outcome_of(state: str, fail_reason: str | None) -> BillOutcome:
    """What a bill state reported by WeChat means for the withdrawal."""
    if state == "SUCCESS":
        return BillOutcome("paid")
    if state == "FAIL":
        return BillOutcome("released", "overdue_close" if fail_reason == "OVERDUE_CLOSE" else "transfer_failed")
    if state == "CANCELLED":
        return BillOutcome("released", "transfer_cancelled")
    return BillOutcome("open")


@dataclass(frozen=True)
class TransferTerms:
    """The merchant's fixed parts of every transfer (scene 1005, 佣金报酬)."""

    appid: str
    notify_url: str
    remark: str = "推广佣金提现"
    job_type: str = "推广员"
    pay_note: str = "推广佣金"

    def __post_init__(self) -> None:
        for name, value, limit in (("remark", self.remark, 32), ("job_type", self.job_type, 32), ("pay_note", self.pay_note, 32)):
            if not value or len(value) > limit:
                raise ValueError(f"{name} must be 1..{limit} characters")


def transfer_body(terms: TransferTerms, *, bill_no: str, openid: str, net_fen: int,
                  user_name_cipher: str | None) -> dict:
    """The body of `POST /v3/fund-app/mch-transfer/transfer-bills`; built from stored values
    only, so every retry of one bill sends the same request."""
    if not OUT_BILL_NO_RE.match(bill_no):
        raise ValueError(f"bad out_bill_no {bill_no!r}")
    if net_fen <= 0:
        raise ValueError("transfer amount must be positive")
    body: dict = {
        "appid": terms.appid,
        "out_bill_no": bill_no,
        "transfer_scene_id": SCENE_COMMISSION,
        "openid": openid,
        "transfer_amount": net_fen,
        "transfer_remark": terms.remark,
        "notify_url": terms.notify_url,
        "user_recv_perception": RECV_PERCEPTION,
        "transfer_scene_report_infos": [
            {"info_type": REPORT_JOB_TYPE, "info_content": terms.job_type},
            {"info_type": REPORT_PAY_NOTE, "info_content": terms.pay_note},
        ],
    }
    if user_name_cipher and net_fen >= NAME_CHECK_MIN_FEN:
        body["user_name"] = user_name_cipher
    return body


def next_check_delay(checks: int, base_s: float, max_s: float) -> float:
    """Exponential backoff between queries/retries of one bill."""
    return min(base_s * (2 ** min(checks, 20)), max_s)
