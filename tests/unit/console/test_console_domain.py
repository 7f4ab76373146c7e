"""The console's pure rules: roles, passwords, session lifetime, money display, plan diff,
the overview fold and the CSV export."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace as NS
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from services.console.domain import money
from services.console.domain.csv_export import withdrawals_csv
from services.console.domain.overview import fold, totals
from services.console.domain.passwords import WeakPasswordError, hash_password, verify_password
from services.console.domain.plan_diff import diff
from services.console.domain.roles import PERMISSIONS, ROLES, PermissionDenied, can, require
from services.console.domain.sessions import Lifetime, csrf_ok

T0 = datetime(2026, 12, 1, 15, 30, tzinfo=timezone.utc)
SH = ZoneInfo("Asia/Shanghai")


def test_viewer_changes_nothing_and_each_action_has_an_owner():
    assert not any(can("viewer", a) for a in PERMISSIONS)
    assert can("finance", "withdrawal.decide") and not can("operator", "withdrawal.decide")
    assert can("plan_admin", "plan.publish") and not can("finance", "plan.publish")
    assert can("operator", "customer.rebind") and can("auditor", "audit.run")
    assert all(roles <= set(ROLES) for roles in PERMISSIONS.values())
    with pytest.raises(PermissionDenied):
        require("viewer", "withdrawal.decide")


def test_passwords_are_salted_scrypt_and_verified():
    h1, h2 = hash_password("correct horse", n=2**10), hash_password("correct horse", n=2**10)
    assert h1 != h2 and h1.startswith("scrypt$1024$")
    assert verify_password("correct horse", h1) and not verify_password("correct horsf", h1)
    assert not verify_password("x", "garbage") and not verify_password("x", "md5$1$2$3$4$5")
    with pytest.raises(WeakPasswordError):
        hash_password("short")


def test_session_expires_when_idle_and_at_its_absolute_end():
    lt = Lifetime(idle=timedelta(minutes=30), absolute=timedelta(hours=12))
    assert lt.expiry(T0, T0) == T0 + timedelta(minutes=30)
    assert lt.expiry(T0, T0 + timedelta(hours=11, minutes=50)) == T0 + timedelta(hours=12)
    assert csrf_ok("abc", "abc") and not csrf_ok("abc", "abd") and not csrf_ok("abc", "") and not csrf_ok(None, None)


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_yuan_shows_every_fen(fen):
    text = money.yuan(fen)
    digits = text.replace("¥", "").replace(",", "").replace(".", "")
    assert int(digits) == fen


def test_ratio_and_bp():
    assert money.ratio_percent(1500, 10000) == "15.0%" and money.ratio_percent(1, 0) == "—"
    assert money.bp_percent(1250) == "12.5%" and money.bp_percent(None) == "—"


def test_plan_diff_names_tiers_and_changes():
    v1 = {"levels": 2, "cap_bp": 3000, "tiers": [{"name": "sharer", "level1_bp": 1000}], "overrides": []}
    v2 = {"levels": 2, "cap_bp": 2800, "tiers": [{"name": "sharer", "level1_bp": 1200}, {"name": "vip", "level1_bp": 1500}],
          "overrides": [{"product_id": "sku-1", "level1": 100}]}
    changes = {c.path: (c.kind, c.before, c.after) for c in diff(v1, v2)}
    assert changes["cap_bp"] == ("changed", 3000, 2800)
    assert changes["tiers[sharer].level1_bp"] == ("changed", 1000, 1200)
    assert changes["tiers[vip].level1_bp"] == ("added", None, 1500)
    assert changes["overrides[sku-1].level1"] == ("added", None, 100)
    assert "levels" not in changes and diff(v2, v2) == []


def test_overview_fold_by_business_day():
    late = datetime(2026, 12, 1, 17, 0, tzinfo=timezone.utc)  # 01:00 on Dec 2 in Shanghai
    line = lambda fen: NS(paid_fen=fen)  # noqa: E731
    events = [
        ("OrderPaid", NS(paid_at=T0, lines=[line(1000), line(500)])),
        ("OrderPaid", NS(paid_at=late, lines=[line(2000)])),
        ("CommissionAccrued", NS(paid_at=T0, amount_fen=100, level="level1", base_fen=1000)),
        ("CommissionAccrued", NS(paid_at=T0, amount_fen=50, level="level2", base_fen=1000)),
        ("CommissionReversed", NS(reversed_at=late, amount_fen=30)),
        ("PromoterEnrolled", NS(enrolled_at=T0)),
        ("ReferralBound", NS(bound_at=late)),
        ("PromoterTierChanged", NS(promoter_id="p", to_tier="partner", effective_at=T0)),
        ("PromoterTierChanged", NS(promoter_id="p", to_tier="sharer", effective_at=T0 - timedelta(days=1))),
        ("BindingRefused", NS()),
    ]
    f = fold(events, SH)
    d1, d2 = f.days[datetime(2026, 12, 1).date()], f.days[datetime(2026, 12, 2).date()]
    assert (d1["orders"], d1["sales_fen"], d1["distribution_sales_fen"], d1["commission_fen"], d1["new_promoters"]) == \
        (1, 1500, 1000, 150, 1)
    assert (d2["orders"], d2["sales_fen"], d2["reversed_fen"], d2["new_customers"]) == (1, 2000, 30, 1)
    assert f.tiers["p"][0] == "partner"
    t = totals([d1, d2])
    assert t.commission_cost_fen == 120 and t.sales_fen == 3500


def test_csv_has_a_bom_a_header_and_neutralises_formulas():
    text = withdrawals_csv([{"withdrawal_id": "w1", "promoter_id": "=cmd()", "amount_fen": 15000, "status": "paid",
                             "reject_reason": "-1+1", "fee_fen": 0}])
    assert text.startswith("\ufeffwithdrawal_id,promoter_id,amount_fen")
    row = text.splitlines()[1]
    assert row.startswith("w1,'=cmd(),15000,0,") and "'-1+1" in row
    assert "fee_fen,tax_withheld_fen,net_fen" in text.splitlines()[0]


@settings(max_examples=50)
@given(st.dictionaries(st.sampled_from(["levels", "cap_bp", "freeze_days"]), st.integers(0, 5000)))
def test_diff_of_a_plan_with_itself_is_empty(plan):
    assert diff(plan, dict(plan)) == []
