"""One root error; each subclass names the rule that was broken, its reason `code` and the
HTTP status it maps to."""
from __future__ import annotations


class OrdersError(Exception):
    code: str = "orders_error"
    status: int = 422

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


# -- intake ------------------------------------------------------------------------------------
class InvalidOrderError(OrdersError):
    """An order draft that breaks a line rule; `code` says which."""

    code, status = "invalid_order", 422


class LinesDoNotAddUpError(InvalidOrderError):
    code = "lines_do_not_add_up"


class LinePaidExceedsPriceError(InvalidOrderError):
    code = "line_paid_exceeds_price"


class BadQuantityError(InvalidOrderError):
    code = "bad_quantity"


class OrderConflictError(OrdersError):
    """The same out_trade_no was used for an order with different content."""

    code, status = "out_trade_no_conflict", 409


class OrderNotFoundError(OrdersError):
    code, status = "order_not_found", 404


class OrderStateError(OrdersError):
    """The order is not in a state that allows this (e.g. a refund on an unpaid order)."""

    code, status = "order_state", 409


# -- refunds -----------------------------------------------------------------------------------
class InvalidRefundError(OrdersError):
    code, status = "invalid_refund", 422


class RefundExceedsRemainderError(InvalidRefundError):
    code = "refund_exceeds_remainder"


class RefundConflictError(OrdersError):
    code, status = "out_refund_no_conflict", 409


class RefundNotFoundError(OrdersError):
    code, status = "refund_not_found", 404


# -- WeChat Pay notices ------------------------------------------------------------------------
class NoticeRejectedError(OrdersError):
    """A verified notice that does not match what we know: refused (WeChat retries), recorded,
    never turned into money."""

    code, status = "notice_rejected", 422


# -- outgoing WeChat Pay calls -----------------------------------------------------------------
class PayerUnknownError(OrdersError):
    """A prepay needs the buyer's openid, which the gateway identity did not carry."""

    code, status = "openid_required", 422


class WeChatPayUnavailableError(OrdersError):
    """WeChat's answer is unknown (timeout, 5xx, unverifiable) or WeChat calls are not
    configured: nothing was decided, the same request may be repeated."""

    code, status = "wechat_unavailable", 503


class WeChatPayRefusedError(OrdersError):
    """WeChat refused the call outright; `message` carries its code."""

    code, status = "wechat_refused", 502
