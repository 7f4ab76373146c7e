"""Enrolment in each merchant mode, applications, and promoter status changes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.referral.domain import errors
from services.referral.domain.promoters import (
    Application, Spend, change_status, decide_application, earned_enrolment, enrol, self_enrolment, submit_application,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def test_self_enrolment_by_mode():
    assert self_enrolment("everyone", Spend(), 0) == "everyone"
    with pytest.raises(errors.NotEligibleError):
        self_enrolment("first_order", Spend(), 0)
    assert self_enrolment("first_order", Spend(1, 10), 0) == "first_order"
    with pytest.raises(errors.NotEligibleError):
        self_enrolment("spend_threshold", Spend(3, 9_999), 10_000)
    assert self_enrolment("spend_threshold", Spend(3, 10_000), 10_000) == "spend_threshold"
    with pytest.raises(errors.ApplicationRequiredError):
        self_enrolment("application", Spend(9, 10**6), 0)
    with pytest.raises(errors.DesignationRequiredError):
        self_enrolment("operator", Spend(9, 10**6), 0)


def test_order_events_earn_enrolment_only_in_order_modes():
    assert earned_enrolment("first_order", Spend(1, 1), 0) == "first_order"
    assert earned_enrolment("spend_threshold", Spend(2, 5_000), 5_000) == "spend_threshold"
    assert earned_enrolment("spend_threshold", Spend(2, 4_999), 5_000) is None
    # a refunded-away spend does not qualify
    assert earned_enrolment("spend_threshold", Spend(1, 0), 0) == "spend_threshold"
    for mode in ("everyone", "application", "operator"):
        assert earned_enrolment(mode, Spend(5, 10**6), 0) is None  # type: ignore[arg-type]


def test_applications():
    app = submit_application("application", None, None, "u", "hi", NOW)
    assert app.state == "pending"
    with pytest.raises(errors.ApplicationPendingError):
        submit_application("application", None, app, "u", None, NOW)
    with pytest.raises(errors.ApplicationsClosedError):
        submit_application("everyone", None, None, "u", None, NOW)
    with pytest.raises(errors.AlreadyPromoterError):
        submit_application("application", enrol("u", "c0de000000", "operator", NOW), None, "u", None, NOW)
    with pytest.raises(errors.ReasonRequiredError):
        decide_application(app, False, "  ", "op", NOW)
    rejected = decide_application(app, False, "incomplete", "op", NOW)
    assert (rejected.state, rejected.reason, rejected.decided_by) == ("rejected", "incomplete", "op")
    with pytest.raises(errors.ApplicationAlreadyDecidedError):
        decide_application(rejected, True, None, "op", NOW)
    again = submit_application("application", None, rejected, "u", "second try", NOW)
    assert again.state == "pending" and again.reason is None
    with pytest.raises(errors.ApplicationNotFoundError):
        decide_application(None, True, None, "op", NOW)
    assert isinstance(decide_application(again, True, None, "op", NOW), Application)


def test_status_changes():
    p = enrol("u", "c0de000000", "everyone", NOW)
    with pytest.raises(errors.ReasonRequiredError):
        change_status(p, "suspended", None, None, NOW)
    with pytest.raises(errors.InvalidStatusChangeError):
        change_status(p, "suspended", "x", NOW - timedelta(seconds=1), NOW)
    with pytest.raises(errors.InvalidStatusChangeError):
        change_status(p, "revoked", "x", NOW + timedelta(days=1), NOW)
    assert change_status(p, "active", None, None, NOW) is None  # nothing to change, no event
    s = change_status(p, "suspended", "complaints", NOW + timedelta(days=2), NOW)
    assert s is not None and s.effective_status(NOW) == "suspended"
    assert s.effective_status(NOW + timedelta(days=2)) == "active"
    back = change_status(s, "active", None, None, NOW)
    assert back is not None and back.status == "active" and back.suspended_until is None
    permanent = change_status(p, "suspended", "fraud check", None, NOW)
    assert permanent is not None and permanent.effective_status(NOW + timedelta(days=3650)) == "suspended"
    r = change_status(permanent, "revoked", "fraud", None, NOW)
    assert r is not None and r.status == "revoked"
    with pytest.raises(errors.InvalidStatusChangeError):
        change_status(r, "active", None, None, NOW)
