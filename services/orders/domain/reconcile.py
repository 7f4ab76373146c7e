"""Reading WeChat Pay's daily bills and comparing them with orders' own records. Values only.

Bills are CSV: a header line, one line per record with every field led by a backquote (so
spreadsheets keep long numbers as text), then a totals header and one totals line. Amounts are
yuan with two decimals."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Literal, Mapping, Sequence


class BillFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Bill:
    rows: tuple[dict[str, str], ...]
    totals: dict[str, str]


def parse_bill(text: str) -> Bill:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise BillFormatError("empty bill")
    reader = list(csv.reader(lines))
    header = [h.strip().lstrip("\ufeff") for h in reader[0]]
    rows: list[dict[str, str]] = []
    i = 1
    while i < len(reader) and reader[i] and reader[i][0].startswith("`"):
        fields = [f[1:] if f.startswith("`") else f for f in reader[i]]
        if len(fields) != len(header):
            raise BillFormatError(f"line {i + 1}: {len(fields)} fields, header has {len(header)}")
        rows.append(dict(zip(header, fields)))
        i += 1
    totals: dict[str, str] = {}
    if i + 1 < len(reader):
        names = reader[i]
        values = [f[1:] if f.startswith("`") else f for f in reader[i + 1]]
        totals = dict(zip(names, values))
    return Bill(tuple(rows), totals)


def fen(yuan: str) -> int:
    try:
        value = Decimal(yuan.strip() or "0") * 100
    except InvalidOperation as exc:
        raise BillFormatError(f"bad amount {yuan!r}") from exc
    if value != value.to_integral_value():
        raise BillFormatError(f"amount {yuan!r} has more than 2 decimals")
    return int(value)


Kind = Literal["missing", "extra", "amount", "paid_after_cancel", "total"]


@dataclass(frozen=True)
class Finding:
    """One difference. missing: we have it, WeChat's bill does not; extra: WeChat's bill has
    it, we do not; amount: both have it with different amounts; paid_after_cancel: WeChat took
    money for an order we cancelled (refund it); total: a bill total that does not add up."""

    kind: Kind
    subject: Literal["payment", "refund", "fund_flow"]
    key: str
    ours_fen: int | None = None
    wechat_fen: int | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class OurPayment:
    out_trade_no: str
    total_fen: int
    transaction_id: str | None
    status: str                  # paid / completed / cancelled (a late payment) / placed


@dataclass(frozen=True)
class OurRefund:
    out_refund_no: str
    amount_fen: int
    status: str


TRADE_NO, TX_ID, STATE = "商户订单号", "微信订单号", "交易状态"
ORDER_AMOUNT, REFUND_NO, REFUND_AMOUNT, REFUND_ASKED = "订单金额", "商户退款单号", "退款金额", "申请退款金额"
FUND_IO, FUND_AMOUNT, FUND_BIZ_NO = "收支类型", "收支金额（元）", "微信支付业务单号"


def compare_trade_bill(bill: Bill, *, day_payments: Mapping[str, OurPayment], known_payments: Mapping[str, OurPayment],
                       day_refunds: Mapping[str, OurRefund], known_refunds: Mapping[str, OurRefund]) -> list[Finding]:
    """`day_*`: what we recorded as happening on the bill's day; `known_*`: our records of every
    number the bill mentions (whatever day we put them on: a payment at 23:59:59 may be ours
    the next day)."""
    out: list[Finding] = []
    seen_trades, seen_refunds = set(), set()
    paid_total = refund_total = 0
    for row in bill.rows:
        state = row.get(STATE, "")
        if state == "SUCCESS":
            no, wechat = row.get(TRADE_NO, ""), fen(row.get(ORDER_AMOUNT, "0"))
            paid_total += wechat
            seen_trades.add(no)
            ours = known_payments.get(no)
            if ours is None or ours.status == "placed":
                out.append(Finding("extra", "payment", no, None, wechat, "in WeChat's bill, not paid in orders"))
            elif ours.status == "cancelled":
                out.append(Finding("paid_after_cancel", "payment", no, ours.total_fen, wechat,
                                   "paid at WeChat after orders cancelled it: refund the buyer"))
            elif ours.total_fen != wechat:
                out.append(Finding("amount", "payment", no, ours.total_fen, wechat))
        elif state == "REFUND":
            no = row.get(REFUND_NO, "")
            wechat = fen(row.get(REFUND_AMOUNT) or row.get(REFUND_ASKED) or "0")
            refund_total += wechat
            seen_refunds.add(no)
            ours_r = known_refunds.get(no)
            if ours_r is None or ours_r.status != "succeeded":
                out.append(Finding("extra", "refund", no, ours_r.amount_fen if ours_r else None, wechat,
                                   "refunded at WeChat, not succeeded in orders"))
            elif ours_r.amount_fen != wechat:
                out.append(Finding("amount", "refund", no, ours_r.amount_fen, wechat))
    for no, p in day_payments.items():
        if no not in seen_trades and p.status != "cancelled":
            out.append(Finding("missing", "payment", no, p.total_fen, None, "paid in orders, not in WeChat's bill"))
    for no, r in day_refunds.items():
        if no not in seen_refunds:
            out.append(Finding("missing", "refund", no, r.amount_fen, None, "succeeded in orders, not in WeChat's bill"))
    totals = bill.totals
    if "应结订单总金额" in totals and "订单总金额" in totals and fen(totals["订单总金额"]) != paid_total:
        out.append(Finding("total", "payment", "订单总金额", paid_total, fen(totals["订单总金额"]),
                           "the bill's total does not add up its lines"))
    if "退款总金额" in totals and fen(totals["退款总金额"]) != refund_total:
        out.append(Finding("total", "refund", "退款总金额", refund_total, fen(totals["退款总金额"]),
                           "the bill's total does not add up its lines"))
    return out


def compare_fund_flow(bill: Bill, *, trade_bill: Bill) -> list[Finding]:
    """Money that moved against the trade bill: income = the day's payments, expense = the
    day's refunds (the fund-flow bill has no merchant numbers, so this is by totals)."""
    income = sum(fen(r.get(FUND_AMOUNT, "0")) for r in bill.rows if r.get(FUND_IO) == "收入")
    expense = sum(fen(r.get(FUND_AMOUNT, "0")) for r in bill.rows if r.get(FUND_IO) == "支出")
    paid = sum(fen(r.get(ORDER_AMOUNT, "0")) for r in trade_bill.rows if r.get(STATE) == "SUCCESS")
    refunded = sum(fen(r.get(REFUND_AMOUNT) or "0") for r in trade_bill.rows if r.get(STATE) == "REFUND")
    out = []
    if income != paid:
        out.append(Finding("amount", "fund_flow", "income", paid, income, "fund-flow income != trade bill payments"))
    if expense != refunded:
        out.append(Finding("amount", "fund_flow", "expense", refunded, expense, "fund-flow expense != trade bill refunds"))
    return out


def trade_numbers(bill: Bill) -> tuple[list[str], list[str]]:
    """(out_trade_no of payments, out_refund_no of refunds) the bill mentions."""
    trades = [r.get(TRADE_NO, "") for r in bill.rows if r.get(STATE) == "SUCCESS"]
    refunds = [r.get(REFUND_NO, "") for r in bill.rows if r.get(STATE) == "REFUND"]
    return trades, refunds


def summarize(findings: Sequence[Finding], bills: Iterable[Bill]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f"{f.subject}.{f.kind}"] = counts.get(f"{f.subject}.{f.kind}", 0) + 1
    return {"differences": len(findings), "by_kind": counts, "bill_rows": [len(b.rows) for b in bills]}
