"""Every rule the referral service can refuse, one class each; `status` is the HTTP status the
API answers with, `code` (when set) the machine-readable reason."""
from __future__ import annotations


class ReferralError(Exception):
    status: int = 422
    code: str | None = None


class NotFoundError(ReferralError):
    status = 404


class ConflictError(ReferralError):
    status = 409


class ForbiddenError(ReferralError):
    status = 403


# -- enrolment -------------------------------------------------------------------------------
class NotEligibleError(ForbiddenError):
    """The merchant's enrolment mode does not (yet) let this user become a promoter."""


class ApplicationRequiredError(ConflictError):
    """Enrolment is by application: submit one and wait for an operator."""


class DesignationRequiredError(ForbiddenError):
    """Only an operator can designate promoters in this mode."""


class AlreadyPromoterError(ConflictError):
    pass


class PromoterRevokedError(ConflictError):
    """A revoked promoter is final; re-enrolment is refused."""


class ApplicationsClosedError(ConflictError):
    """Applications are only taken when the enrolment mode is `application`."""


class ApplicationPendingError(ConflictError):
    pass


class ApplicationNotFoundError(NotFoundError):
    pass


class ApplicationAlreadyDecidedError(ConflictError):
    pass


class ReasonRequiredError(ReferralError):
    """A rejection, suspension or revocation must say why."""


class InvalidStatusChangeError(ConflictError):
    pass


class PromoterNotFoundError(NotFoundError):
    pass


class NotAPromoterError(ForbiddenError):
    pass


class PromoterInactiveError(ForbiddenError):
    pass


class RebindUnchangedError(ConflictError):
    """An operator asked to move a customer to the referrer they already have."""


# -- binding ---------------------------------------------------------------------------------
_REFUSAL_STATUS = {
    "unknown_promoter": 404,
    "self_binding": 422,
    "inactive_promoter": 409,
    "cycle": 409,
    "already_bound": 409,
    "not_new_user": 409,
}


class BindingRefusedError(ReferralError):
    """A bind was refused (and recorded for audit); `code` is the reason of `BindingRefused`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = reason
        self.status = _REFUSAL_STATUS.get(reason, 409)


# -- posters ---------------------------------------------------------------------------------
class ProductNotFoundError(NotFoundError):
    pass


class ImageRefusedError(ReferralError):
    """An image that is not an image, too large, or from a host we may not fetch from."""


class WechatApiError(ReferralError):
    """WeChat answered with an error code we cannot recover from."""

    status = 502

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat error {errcode}: {errmsg}")
        self.errcode, self.errmsg = errcode, errmsg
