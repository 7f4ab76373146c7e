"""Every refusal of the payout service names the rule it broke. The HTTP code is derived
from the class name (`shared.service.error_body`); `status` is the HTTP status."""
from __future__ import annotations


class PayoutError(Exception):
    status = 422


# -- a withdrawal request refused -----------------------------------------------------------
class AmountNotPositiveError(PayoutError):
    pass


class BelowMinimumError(PayoutError):
    pass


class AboveMaximumError(PayoutError):
    pass


class NetNotPositiveError(PayoutError):
    """The fee would take the whole amount."""


class RealNameRequiredError(PayoutError):
    pass


class DailyCountExceededError(PayoutError):
    pass


class DailyAmountExceededError(PayoutError):
    pass


class InsufficientBalanceError(PayoutError):
    pass


class IdempotencyKeyRequiredError(PayoutError):
    pass


class IdempotencyKeyReusedError(PayoutError):
    """The same idempotency key came with a different request."""

    status = 409


# -- review ---------------------------------------------------------------------------------
class WithdrawalNotFoundError(PayoutError):
    status = 404


class AlreadyDecidedError(PayoutError):
    status = 409


class ReasonRequiredError(PayoutError):
    pass


class OwnWithdrawalError(PayoutError):
    """A reviewer's decision on their own withdrawal."""

    status = 403


# -- the payee ------------------------------------------------------------------------------
class PayeeNotIdentityError(PayoutError):
    """The body names an openid other than the identity's: only the earner is paid."""

    status = 403


class IdentityWithoutOpenidError(PayoutError):
    """The gateway's identity carries no openid for this mini-program's appid."""

    status = 403


# -- configuration --------------------------------------------------------------------------
class TransferNotConfiguredError(PayoutError):
    """WeChat merchant transfer keys are not configured on this instance."""

    status = 503
