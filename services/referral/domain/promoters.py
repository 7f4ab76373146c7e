"""Who may promote: enrolment in the merchant's mode, applications, and promoter status.

Compliance (hard rules, not settings): becoming a promoter is free. No enrolment path takes
a payment and nothing here is ever paid for; a spend threshold only asks that the user is a
real customer of the shop and is never a purchase "package" that buys the right to promote.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from services.referral.domain import errors

EnrolmentMode = Literal["everyone", "first_order", "spend_threshold", "application", "operator"]
EnrolledBy = Literal["everyone", "first_order", "spend_threshold", "application", "operator"]
PromoterStatus = Literal["active", "suspended", "revoked"]
ENROLMENT_MODES: tuple[str, ...] = ("everyone", "first_order", "spend_threshold", "application", "operator")


@dataclass(frozen=True)
class Promoter:
    user_id: str
    code: str
    status: PromoterStatus
    enrolled_by: EnrolledBy
    enrolled_at: datetime
    status_reason: str | None = None
    suspended_until: datetime | None = None
    status_changed_at: datetime | None = None

    def effective_status(self, now: datetime) -> PromoterStatus:
        """A temporary suspension lapses by itself at `until` (no event is needed: the
        `PromoterStatusChanged` that suspended carries `until`)."""
        if self.status == "suspended" and self.suspended_until is not None and self.suspended_until <= now:
            return "active"
        return self.status

    def is_active(self, now: datetime) -> bool:
        return self.effective_status(now) == "active"


@dataclass(frozen=True)
class Spend:
    """A customer's record from order events: paid orders and goods paid net of refunds (fen)."""

    paid_orders: int = 0
    net_paid_fen: int = 0


def self_enrolment(mode: EnrolmentMode, spend: Spend, threshold_fen: int) -> EnrolledBy:
    """How a user asking to become a promoter is enrolled, or why they cannot be."""
    if mode == "everyone":
        return "everyone"
    if mode == "first_order":
        if spend.paid_orders >= 1:
            return "first_order"
        raise errors.NotEligibleError("becoming a promoter needs a first paid order in this shop")
    if mode == "spend_threshold":
        if spend.net_paid_fen >= threshold_fen:
            return "spend_threshold"
        raise errors.NotEligibleError(
            f"becoming a promoter needs {threshold_fen} fen of purchases (now {spend.net_paid_fen})")
    if mode == "application":
        raise errors.ApplicationRequiredError("apply to become a promoter; an operator will decide")
    raise errors.DesignationRequiredError("promoters are designated by the merchant's operators")


def earned_enrolment(mode: EnrolmentMode, spend: Spend, threshold_fen: int) -> EnrolledBy | None:
    """The enrolment an order event earns automatically (first-order and spend modes), if any."""
    if mode == "first_order" and spend.paid_orders >= 1:
        return "first_order"
    if mode == "spend_threshold" and spend.paid_orders >= 1 and spend.net_paid_fen >= threshold_fen:
        return "spend_threshold"
    return None


def enrol(user_id: str, code: str, enrolled_by: EnrolledBy, now: datetime) -> Promoter:
    return Promoter(user_id=user_id, code=code, status="active", enrolled_by=enrolled_by, enrolled_at=now,
                    status_changed_at=now)


def refuse_if_already(existing: Promoter | None) -> None:
    if existing is None:
        return
    if existing.status == "revoked":
        raise errors.PromoterRevokedError("this promoter was revoked; revocation is final")
    raise errors.AlreadyPromoterError("already a promoter")


@dataclass(frozen=True)
class Application:
    user_id: str
    state: Literal["pending", "approved", "rejected"]
    submitted_at: datetime
    note: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str | None = None


def submit_application(mode: EnrolmentMode, existing_promoter: Promoter | None, existing: Application | None,
                       user_id: str, note: str | None, now: datetime) -> Application:
    if mode != "application":
        raise errors.ApplicationsClosedError(f"the enrolment mode is {mode!r}, not 'application'")
    refuse_if_already(existing_promoter)
    if existing is not None and existing.state == "pending":
        raise errors.ApplicationPendingError("an application is already waiting for a decision")
    # a rejected applicant may apply again: the new application replaces the old one
    return Application(user_id=user_id, state="pending", submitted_at=now, note=note)


def decide_application(app: Application | None, approved: bool, reason: str | None, operator: str,
                       now: datetime) -> Application:
    if app is None:
        raise errors.ApplicationNotFoundError("no application from this user")
    if app.state != "pending":
        raise errors.ApplicationAlreadyDecidedError(f"the application was already {app.state}")
    if not approved and not (reason and reason.strip()):
        raise errors.ReasonRequiredError("a rejection must give a reason")
    return replace(app, state="approved" if approved else "rejected", decided_at=now, decided_by=operator,
                   reason=reason)


def change_status(p: Promoter, status: PromoterStatus, reason: str | None, until: datetime | None,
                  now: datetime) -> Promoter | None:
    """The promoter after an operator's status change, or None when nothing changes.

    active -> suspended (temporary with `until`, or permanent) -> active; any -> revoked (final)."""
    current = p.effective_status(now)
    if p.status == "revoked":
        raise errors.InvalidStatusChangeError("a revoked promoter cannot change status")
    if status in ("suspended", "revoked") and not (reason and reason.strip()):
        raise errors.ReasonRequiredError(f"{status} needs a reason")
    if until is not None:
        if status != "suspended":
            raise errors.InvalidStatusChangeError("`until` only applies to a suspension")
        if until <= now:
            raise errors.InvalidStatusChangeError("`until` must be in the future")
    if status == "active":
        if current == "active":
            return None
        return replace(p, status="active", status_reason=reason, suspended_until=None, status_changed_at=now)
    if status == "suspended":
        if current == "suspended" and p.suspended_until == until and p.status_reason == reason:
            return None
        return replace(p, status="suspended", status_reason=reason, suspended_until=until, status_changed_at=now)
    return replace(p, status="revoked", status_reason=reason, suspended_until=None, status_changed_at=now)
