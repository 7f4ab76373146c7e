"""What a promoter is told when money moves, and how a notice becomes a WeChat subscribe
message within WeChat's field limits."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Mapping
from zoneinfo import ZoneInfo

from shared.display import format_fen
from services.engagement.domain.errors import BadTemplateError
from shared.contracts.commission import CommissionAccrued, CommissionReversed, CommissionSettled
from shared.contracts.payout import (
    WithdrawalApproved, WithdrawalPaid, WithdrawalRejected, WithdrawalReleased, WithdrawalTransferCreated,
)

NoticeKind = Literal["commission_accrued", "commission_settled", "commission_reversed", "withdrawal_changed",
                     "honour_awarded", "perk_granted"]
NOTICE_KINDS: tuple[str, ...] = ("commission_accrued", "commission_settled", "commission_reversed",
                                 "withdrawal_changed", "honour_awarded", "perk_granted")
NOTICE_TYPES = frozenset({"CommissionAccrued", "CommissionSettled", "CommissionReversed", "WithdrawalApproved",
                          "WithdrawalRejected", "WithdrawalTransferCreated", "WithdrawalPaid", "WithdrawalReleased"})

_LEVEL = {"level1": "直接推广", "level2": "团队推广", "self_purchase": "自购返利"}
_RELEASE = {"transfer_failed": "转账失败", "transfer_cancelled": "转账已取消", "overdue_close": "超时未确认收款"}


@dataclass(frozen=True)
class Notice:
    promoter_id: str
    kind: str
    title: str
    body: str
    amount_fen: int | None
    at: datetime
    #: a word for the state (≤5 Chinese characters: fits a `phrase` field)
    status: str
    ref: str | None = None          # order id or withdrawal id


def notice_for(p) -> Notice | None:
    """The notice an event causes for its promoter, or None."""
    if isinstance(p, CommissionAccrued) and p.kind == "management_bonus":
        return Notice(p.beneficiary_id, "commission_accrued", f"管理奖 {format_fen(p.amount_fen)}",
                      "团队订单已付款，管理奖冻结中，售后期结束后结算", p.amount_fen, p.paid_at, "待结算", p.order_id)
    if isinstance(p, CommissionAccrued):
        return Notice(p.beneficiary_id, "commission_accrued", f"新佣金 {format_fen(p.amount_fen)}",
                      f"{_LEVEL.get(p.level, p.level)}订单已付款，佣金冻结中，售后期结束后结算", p.amount_fen, p.paid_at,
                      "待结算", p.order_id)
    if isinstance(p, CommissionSettled):
        return Notice(p.beneficiary_id, "commission_settled", f"佣金已结算 {format_fen(p.amount_fen)}",
                      "售后期已结束，佣金可提现", p.amount_fen, p.settled_at, "已结算", p.order_id)
    if isinstance(p, CommissionReversed):
        return Notice(p.beneficiary_id, "commission_reversed", f"佣金冲正 {format_fen(p.amount_fen)}",
                      "订单退款，相应佣金已扣回", p.amount_fen, p.reversed_at, "已冲正", p.order_id)
    if isinstance(p, WithdrawalApproved):
        return Notice(p.promoter_id, "withdrawal_changed", "提现审核通过", "正在发起微信转账", None, p.approved_at,
                      "审核通过", p.withdrawal_id)
    if isinstance(p, WithdrawalRejected):
        return Notice(p.promoter_id, "withdrawal_changed", f"提现未通过 {format_fen(p.amount_fen)}",
                      f"原因：{p.reason}；金额已退回可提现余额", p.amount_fen, p.rejected_at, "未通过", p.withdrawal_id)
    if isinstance(p, WithdrawalTransferCreated):
        if p.state != "WAIT_USER_CONFIRM":
            return None
        return Notice(p.promoter_id, "withdrawal_changed", "请确认收款", "在小程序中确认后，提现到微信零钱",
                      None, p.created_at, "待确认", p.withdrawal_id)
    if isinstance(p, WithdrawalPaid):
        body = "已转入微信零钱" + (f"（代扣个人所得税 {format_fen(p.tax_withheld_fen)}）" if p.tax_withheld_fen else "")
        return Notice(p.promoter_id, "withdrawal_changed", f"提现到账 {format_fen(p.transfer_fen)}",
                      body, p.transfer_fen, p.paid_at, "已到账", p.withdrawal_id)
    if isinstance(p, WithdrawalReleased):
        return Notice(p.promoter_id, "withdrawal_changed", f"提现未完成 {format_fen(p.amount_fen)}",
                      f"{_RELEASE.get(p.reason, p.reason)}，金额已退回可提现余额", p.amount_fen, p.released_at,
                      "已退回", p.withdrawal_id)
    return None


# -- subscribe messages ----------------------------------------------------------------------
#: what a template field can show: a notice's title, body, amount, time, status or reference
SOURCES = ("title", "body", "amount", "time", "status", "ref")
_KEY_RE = re.compile(r"^(thing|number|letter|symbol|character_string|amount|phone_number|name|phrase|time|date)\d+$")
#: which notice value each field type may carry
_ALLOWED = {
    "thing": {"title", "body", "status", "ref"}, "amount": {"amount"}, "time": {"time"}, "date": {"time"},
    "phrase": {"status"}, "character_string": {"ref"}, "number": {"amount"},
}


def field_type(key: str) -> str:
    m = _KEY_RE.match(key)
    if not m:
        raise BadTemplateError(f"template key {key!r} is not a WeChat field (thing1, amount2, time3...)")
    return m.group(1)


def check_fields(fields: Mapping[str, str]) -> None:
    """Refuse a mapping WeChat would refuse at send time (checked when the operator saves it)."""
    if not fields or len(fields) > 10:
        raise BadTemplateError("a template maps 1 to 10 fields")
    for key, source in fields.items():
        kind = field_type(key)
        if source not in SOURCES:
            raise BadTemplateError(f"{key}: unknown value {source!r} (one of {', '.join(SOURCES)})")
        if source not in _ALLOWED.get(kind, set()):
            raise BadTemplateError(f"{key}: a {kind} field cannot show {source!r}")


def _cut(text: str, n: int) -> str:
    """At most n characters; an ellipsis marks a cut."""
    return text if len(text) <= n else text[: n - 1] + "…"


def yuan(amount_fen: int) -> str:
    """WeChat's `amount` format: digits with two decimals and 元, never a sign (≤10 digits)."""
    y, f = divmod(abs(amount_fen), 100)
    return f"{y}.{f:02d}元"


def render_data(fields: Mapping[str, str], n: Notice, tz: str) -> dict[str, dict[str, str]]:
    """The `data` of subscribeMessage.send for notice `n` under the operator's mapping
    (`{"thing1": "title", "amount2": "amount", "time3": "time"}`), every value within its limit."""
    local = n.at.astimezone(ZoneInfo(tz))
    out: dict[str, dict[str, str]] = {}
    for key, source in fields.items():
        kind = field_type(key)
        if source == "amount":
            value = yuan(n.amount_fen or 0) if kind == "amount" else str(abs(n.amount_fen or 0))
        elif source == "time":
            value = local.strftime("%Y-%m-%d %H:%M") if kind == "time" else local.strftime("%Y-%m-%d")
        elif source == "ref":
            value = (n.ref or "-")
            value = _cut(value, 20) if kind == "thing" else re.sub(r"[^0-9A-Za-z_\-.:#@+/]", "", value)[:32] or "-"
        else:
            value = {"title": n.title, "body": n.body, "status": n.status}[source]
            value = _cut(value, 5) if kind == "phrase" else _cut(value, 20)
        out[key] = {"value": value}
    return out
