"""Engagement rules without servers: Shanghai periods, notices and their subscribe-message
data within WeChat's limits (checked by the stand-in's own rules), milestones."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.engagement.domain import honours
from shared.display import mask_nickname
from services.engagement.domain.errors import BadTemplateError, PerkAlreadyClaimedError
from services.engagement.domain.notices import Notice, check_fields, notice_for, render_data, yuan
from services.engagement.domain.perks import check_repeat, grant_id
from services.engagement.domain.periods import period_of
from shared.contracts.commission import CommissionReversed
from shared.contracts.payout import WithdrawalTransferCreated
from standins.wechat.miniprogram import field_error

TZ = "Asia/Shanghai"
UTC = timezone.utc


def test_a_week_starts_on_monday_midnight_in_shanghai_not_in_utc():
    sunday_night = datetime(2025, 3, 9, 15, 59, 59, tzinfo=UTC)   # Sun 23:59:59 +08
    monday = datetime(2025, 3, 9, 16, 0, tzinfo=UTC)              # Mon 00:00 +08
    assert period_of("week", sunday_night, TZ).label == "2025-W10"
    w = period_of("week", monday, TZ)
    assert w.label == "2025-W11" and w.start == monday and w.end == monday + timedelta(days=7)


def test_a_month_and_a_day_follow_shanghai_dates():
    m = period_of("month", datetime(2026, 11, 30, 16, 30, tzinfo=UTC), TZ)  # 2026-12-01 00:30 +08
    assert m.label == "2026-12" and m.start == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert m.end == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    d = period_of("day", datetime(2026, 12, 1, 15, 59, tzinfo=UTC), TZ)
    assert d.label == "2026-12-01"
    with pytest.raises(ValueError):
        period_of("week", datetime(2026, 1, 1), TZ)


FIELDS = {"thing1": "title", "thing2": "body", "amount3": "amount", "time4": "time", "date5": "time",
          "phrase6": "status", "character_string7": "ref", "thing8": "ref"}


@given(title=st.text(min_size=1, max_size=60), amount=st.integers(min_value=-10**11, max_value=10**11),
       ref=st.text(max_size=80), when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                                                   timezones=st.just(UTC)))
def test_rendered_data_is_always_within_wechats_field_limits(title, amount, ref, when):
    n = Notice("p", "commission_accrued", title, title * 2, amount, when, "待结算", ref or None)
    data = render_data(FIELDS, n, TZ)
    for key, kind in {"thing1": "thing", "thing2": "thing", "amount3": "amount", "time4": "time", "date5": "date",
                      "phrase6": "phrase", "character_string7": "character_string", "thing8": "thing"}.items():
        value = data[key]["value"]
        if kind == "thing" and not value.strip():
            continue  # a blank title is WeChat's to refuse; our titles are never blank
        assert not field_error(kind, value), (key, value)


def test_amounts_are_yuan_with_two_decimals():
    assert yuan(123456) == "1234.56元" and yuan(5) == "0.05元" and yuan(-500) == "5.00元"


def test_a_template_mapping_wechat_would_refuse_is_refused():
    check_fields({"thing1": "title", "amount2": "amount", "time3": "time"})
    for bad in ({"thing1": "amount"}, {"amount1": "title"}, {"foo1": "title"}, {"thing": "title"}, {}):
        with pytest.raises(BadTemplateError):
            check_fields(bad)


def test_notices_name_the_money_and_the_state():
    r = CommissionReversed(accrual_id="a", order_id="o", line_id="l", beneficiary_id="p", out_refund_no="r",
                           amount_fen=150, from_status="settled", reversed_at=datetime(2026, 1, 1, tzinfo=UTC))
    n = notice_for(r)
    assert n is not None and n.kind == "commission_reversed" and n.title == "佣金冲正 ¥1.50" and n.promoter_id == "p"
    created = dict(withdrawal_id="w", promoter_id="p", out_bill_no="b", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert notice_for(WithdrawalTransferCreated(state="ACCEPTED", **created)) is None
    assert notice_for(WithdrawalTransferCreated(state="WAIT_USER_CONFIRM", **created)).title == "请确认收款"


def test_milestones_are_due_once_reached_and_not_held():
    ms = list(honours.BUILT_IN) + [honours.Milestone("op:ten", "十单", "sales", 10)]
    rec = honours.Record(sales=1, settled_fen=10_000)
    assert [m.key for m in honours.due(rec, ms, set())] == ["first_sale", "settled_100_yuan"]
    assert [m.key for m in honours.due(rec, ms, {"first_sale"})] == ["settled_100_yuan"]
    assert honours.due(honours.Record(settled_fen=9_999), ms, set()) == []


def test_a_perk_claim_repeats_only_with_the_same_key():
    assert grant_id("p", "gift") == grant_id("p", "gift") != grant_id("q", "gift")
    assert check_repeat("k1", "k1") is True
    with pytest.raises(PerkAlreadyClaimedError):
        check_repeat("k1", "k2")


def test_names_on_boards_are_masked_like_the_team_view():
    assert [mask_nickname(n) for n in ("张三丰", "李四", "王", None, "")] == ["张**", "李*", "*", "*", "*"]


def test_a_batch_changes_each_record_by_its_own_money():
    import uuid

    from services.engagement.handlers.activity import record_deltas
    from services.engagement.store.facts import Earning

    at = datetime(2026, 1, 1, tzinfo=UTC)
    e = lambda p, kind, fen, level=None: Earning(uuid.uuid4(), p, kind, fen, at, level=level)  # noqa: E731
    got = record_deltas([e("a", "accrued", 100, "level1"), e("a", "accrued", 50, "level2"), e("a", "settled", 80),
                         e("a", "reversed_settled", 30), e("b", "reversed_frozen", 10), e("b", "accrued", 5, "self_purchase")],
                        ["a", "a"])
    assert got == {"a": {"accrued_fen": 150, "sales": 1, "settled_fen": 50, "new_customers": 2},
                   "b": {"accrued_fen": 5, "sales": 1}}


def test_a_management_bonus_is_told_as_such():
    from shared.contracts.commission import CommissionAccrued

    a = CommissionAccrued(accrual_id="o:l:level2:management", order_id="o", line_id="l", beneficiary_id="m", buyer_id="c",
                          level="level2", base_fen=10_000, quantity=1, rate_bp=200, amount_fen=200, plan_version=1,
                          tier="区域经理", unfreeze="order_completed+7d", paid_at=datetime(2026, 1, 1, tzinfo=UTC),
                          kind="management_bonus")
    n = notice_for(a)
    assert n is not None and n.title == "管理奖 ¥2.00" and n.kind == "commission_accrued"
