"""What orders sends to WeChat Pay and how it reads the answers: the JSAPI order, the
wx.requestPayment parameters, the refund request, trade states, back-off. Values only."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Mapping, Sequence

from shared.contracts.orders import OrderLine, RefundedLine

CST = timezone(timedelta(hours=8))  # WeChat's RFC 3339 times are in +08:00
#: a prepay_id is valid for 2 hours; reuse it only with this much left
PREPAY_VALID = timedelta(hours=2)
PREPAY_REUSE_MARGIN = timedelta(minutes=5)
#: trade states after which an unpaid order may be cancelled (the money can no longer come)
TRADE_STATES_GONE = frozenset({"CLOSED", "REVOKED", "PAYERROR"})


def wechat_time(at: datetime) -> str:
    """RFC 3339 in +08:00 with whole seconds, as WeChat writes and expects."""
    return at.astimezone(CST).isoformat(timespec="seconds")


def jsapi_order(*, appid: str, mchid: str, description: str, out_trade_no: str, order_id: str, total_fen: int,
                openid: str, notify_url: str, pay_before: datetime) -> dict[str, Any]:
    """`POST /v3/pay/transactions/jsapi` body. Deterministic for one order (time_expire is the
    unpaid deadline, not "now + x"), so a repeat is the same request and WeChat answers it with
    the same prepay_id instead of OUT_TRADE_NO_USED."""
    return {"appid": appid, "mchid": mchid, "description": description[:127], "out_trade_no": out_trade_no,
            "time_expire": wechat_time(pay_before), "attach": order_id[:128], "notify_url": notify_url,
            "amount": {"total": total_fen, "currency": "CNY"}, "payer": {"openid": openid}}


def prepay_expiry(now: datetime, pay_before: datetime) -> datetime:
    return min(now + PREPAY_VALID, pay_before)


def prepay_reusable(prepay_id: str | None, expires_at: datetime | None, now: datetime) -> bool:
    return bool(prepay_id) and expires_at is not None and expires_at - PREPAY_REUSE_MARGIN > now


@dataclass(frozen=True)
class PaymentParams:
    """The object the mini-program passes to `wx.requestPayment`."""

    appId: str
    timeStamp: str
    nonceStr: str
    package: str
    signType: str
    paySign: str


def pay_sign_message(appid: str, timestamp: str, nonce: str, package: str) -> bytes:
    """What paySign signs: `appId\\ntimeStamp\\nnonceStr\\npackage\\n`."""
    return f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()


def payment_params(appid: str, prepay_id: str, sign, *, now: datetime, nonce: str | None = None) -> PaymentParams:
    """`sign(message) -> base64` is the merchant key's RSA-SHA256 (SHA256withRSA)."""
    ts, nonce = str(int(now.timestamp())), nonce or secrets.token_hex(16)
    package = f"prepay_id={prepay_id}"
    return PaymentParams(appId=appid, timeStamp=ts, nonceStr=nonce, package=package, signType="RSA",
                         paySign=sign(pay_sign_message(appid, ts, nonce, package)))


def refund_request(*, out_trade_no: str, out_refund_no: str, reason: str | None, notify_url: str, refund_fen: int,
                   total_fen: int, lines: Sequence[RefundedLine], order_lines: Sequence[OrderLine]) -> dict[str, Any]:
    """`POST /v3/refund/domestic/refunds` body: the same for every submission of one refund
    (WeChat answers a repeat of an out_refund_no with the existing refund)."""
    by_id = {ln.line_id: ln for ln in order_lines}
    goods = []
    for ln in lines:
        ol = by_id[ln.line_id]
        goods.append({"merchant_goods_id": ol.sku or ol.product_id, "goods_name": ol.product_id[:256],
                      "unit_price": ol.unit_price_fen, "refund_amount": ln.amount_fen, "refund_quantity": ln.quantity})
    body: dict[str, Any] = {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "notify_url": notify_url,
                            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
                            "goods_detail": goods}
    if reason:
        body["reason"] = reason[:80]
    return body


RefundAnswer = Literal["SUCCESS", "CLOSED", "ABNORMAL", "PROCESSING"]


def refund_status_of(answer: Mapping[str, Any]) -> str | None:
    """The refund status in an API answer (`status`) or a notice (`refund_status`)."""
    value = answer.get("status", answer.get("refund_status"))
    return value if value in ("SUCCESS", "CLOSED", "ABNORMAL", "PROCESSING") else None


def as_refund_resource(answer: Mapping[str, Any], mchid: str) -> dict[str, Any]:
    """A refund API answer in the shape of a decrypted REFUND.* notice resource, so it is
    judged exactly as a notice would be (the answer has no mchid: it came for our merchant)."""
    out = dict(answer)
    out.setdefault("mchid", mchid)
    out["refund_status"] = refund_status_of(answer)
    return out


def next_delay(checks: int, first_s: float, max_s: float) -> timedelta:
    """first, 2x, 4x ... capped: how long until the next query of something still open."""
    return timedelta(seconds=min(max_s, first_s * (2 ** min(checks, 20))))
