"""The re-deriving audit's pure part: source events folded through the domain in event-time order
(settlements when the clock passes their due time), and the line-by-line comparison."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.commission.audit.rederive import Published, Source, compare_balances, compare_lines, derive, derived_balances
from shared.contracts.commission import CommissionAccrued, CommissionPlanPublished, CommissionReversed, CommissionSettled
from shared.contracts.orders import OrderCompleted, OrderLine, OrderPaid, OrderRefunded, RefundedLine
from shared.contracts.payout import WithdrawalRequested
from shared.contracts.referral import PromoterEnrolled, ReferralBound
from shared.events import new_event

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PLAN = {"levels": 2, "cap_bp": 3000, "freeze_days": 1,
        "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800}]}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def source(*payloads_at) -> Source:
    src = Source()
    for payload, t in payloads_at:
        src.add(new_event(payload, occurred_at=t), payload)
    return src


def history(refund_at_min: float):
    return source(
        (CommissionPlanPublished(plan_version=1, plan=PLAN, published_by="op", published_at=at(0)), at(0)),
        (PromoterEnrolled(promoter_id="a", promoter_code="a", enrolled_by="operator", enrolled_at=at(0)), at(0)),
        (PromoterEnrolled(promoter_id="b", promoter_code="b", enrolled_by="operator", enrolled_at=at(0)), at(0)),
        (ReferralBound(customer_id="b", promoter_id="a", promoter_code="a", source="link", mode="first_touch", bound_at=at(1)), at(1)),
        (ReferralBound(customer_id="c", promoter_id="b", promoter_code="b", source="link", mode="first_touch", bound_at=at(1)), at(1)),
        (OrderPaid(order_id="o", buyer_id="c", lines=(OrderLine(line_id="l", product_id="p", quantity=1, unit_price_fen=1001, paid_fen=1001),),
                   postage_fen=0, total_fen=1001, transaction_id="tx", paid_at=at(10)), at(10)),
        (OrderCompleted(order_id="o", reason="receipt_confirmed", completed_at=at(20)), at(20)),
        (OrderRefunded(order_id="o", out_refund_no="r", amount_fen=500, refunded_at=at(refund_at_min),
                       lines=(RefundedLine(line_id="l", quantity=1, amount_fen=500),)), at(refund_at_min)),
        (WithdrawalRequested(withdrawal_id="w", promoter_id="b", amount_fen=30, fee_fen=0, requested_at=at(3000)), at(3000)),
    )


def test_refund_before_the_due_time_reduces_the_settlement_after_it_reverses_from_settled():
    d = derive(history(refund_at_min=60), settle_until=at(5000))
    assert {k: a.amount_fen for k, a in d.accruals.items()} == {"o:l:level1": 100, "o:l:level2": 50}
    assert {k: (r.amount_fen, r.from_status) for k, r in d.reversals.items()} == {
        ("o:l:level1", "r"): (49, "frozen"), ("o:l:level2", "r"): (24, "frozen")}
    assert {k: s.amount_fen for k, s in d.settlements.items()} == {"o:l:level1": 51, "o:l:level2": 26}

    # the freeze day (due at minute 20 + 1440) passes before the refund: reversed from settled
    d = derive(history(refund_at_min=2000), settle_until=at(5000))
    assert {k: s.amount_fen for k, s in d.settlements.items()} == {"o:l:level1": 100, "o:l:level2": 50}
    assert {r.from_status for r in d.reversals.values()} == {"settled"}
    src = history(refund_at_min=2000)
    bal = derived_balances(d, src.withdrawals, Published())
    assert bal["b"] == (0, 100 - 49 - 30, 30, 0, 49)
    assert compare_lines(d, published_from(d)) == []


def test_not_yet_due_is_not_settled_and_due_just_before_the_cut_is_in_flight():
    d = derive(history(refund_at_min=60), settle_until=at(20 + 1440 - 1))
    assert d.settlements == {} and d.in_flight == set()
    d = derive(history(refund_at_min=60), settle_until=at(20 + 1440) + timedelta(seconds=5))
    assert d.in_flight == {"o:l:level1", "o:l:level2"} and len(d.settlements) == 2
    # in flight and not made by the live scheduler: no difference
    assert compare_lines(d, published_from(d, settlements=False)) == []


def published_from(d, *, settlements: bool = True, **change) -> Published:
    pub = Published()
    for a in d.accruals.values():
        p = CommissionAccrued(
            accrual_id=a.accrual_id, order_id=a.order_id, line_id=a.line_id, beneficiary_id=a.beneficiary_id, buyer_id=a.buyer_id,
            level=a.level, base_fen=a.base_fen, quantity=a.quantity, rate_bp=a.rate_bp, fixed_fen_per_unit=a.fixed_fen_per_unit,
            amount_fen=change.get(a.accrual_id, a.amount_fen), plan_version=a.plan_version, tier=a.tier, unfreeze=a.unfreeze,
            paid_at=a.paid_at)
        pub.add(new_event(p), p)
    for r in d.reversals.values():
        p = CommissionReversed(accrual_id=r.accrual_id, order_id=r.order_id, line_id=r.line_id, beneficiary_id=r.beneficiary_id,
                               out_refund_no=r.out_refund_no, amount_fen=r.amount_fen, from_status=r.from_status, reversed_at=r.reversed_at)
        pub.add(new_event(p), p)
    for s in (d.settlements.values() if settlements else ()):
        p = CommissionSettled(accrual_id=s.accrual_id, order_id=s.order_id, beneficiary_id=s.beneficiary_id, amount_fen=s.amount_fen,
                              settled_at=s.due_at)
        pub.add(new_event(p), p)
    return pub


def test_every_disagreement_is_a_line_with_order_beneficiary_and_amount():
    d = derive(history(refund_at_min=60), settle_until=at(5000))
    pub = Published()
    for a in d.accruals.values():
        p = CommissionAccrued(accrual_id=a.accrual_id, order_id=a.order_id, line_id=a.line_id, beneficiary_id=a.beneficiary_id,
                              buyer_id=a.buyer_id, level=a.level, base_fen=a.base_fen, quantity=a.quantity, rate_bp=a.rate_bp,
                              amount_fen=a.amount_fen + (1 if a.level == "level2" else 0), plan_version=a.plan_version,
                              tier=a.tier, unfreeze=a.unfreeze, paid_at=a.paid_at)
        pub.add(new_event(p), p)
    forged = CommissionAccrued(accrual_id="x:l:level1", order_id="x", line_id="l", beneficiary_id="b", buyer_id="c", level="level1",
                               base_fen=1, quantity=1, rate_bp=1, amount_fen=7, plan_version=1, tier="sharer", unfreeze="-", paid_at=at(5))
    pub.add(new_event(forged), forged)
    diffs = compare_lines(d, pub)
    got = {(x.kind, x.order_id, x.beneficiary_id, x.amount_log_fen, x.amount_derived_fen) for x in diffs}
    # level 2 overpaid by 1 fen; a forged accrual; reversals and settlements never published
    assert ("accrual", "o", "a", 51, 50) in got and ("accrual", "x", "b", 7, None) in got
    assert ("reversal", "o", "b", None, 49) in got and ("settlement", "o", "a", None, 26) in got
    assert len(diffs) == 2 + 2 + 2
    assert "order o beneficiary a: published 51 fen, re-derived 50 fen" in str(next(x for x in diffs if x.order_id == "o"
                                                                                       and x.kind == "accrual"))
    # a period that excludes the order paid at minute 10 but includes the forged one at minute 5
    only = compare_lines(d, pub, (at(0), at(6)))
    assert [(x.kind, x.order_id) for x in only] == [("accrual", "x")]


def test_balance_differences_name_the_promoter_and_column():
    diffs = compare_balances({"a": (1, 2, 0, 0, 0)}, {"a": (1, 3, 0, 0, 0), "z": (0, 0, 0, 0, 5)})
    assert [(x.beneficiary_id, x.amount_log_fen, x.amount_derived_fen, x.detail.split(":")[0]) for x in diffs] == [
        ("a", 3, 2, "available_fen"), ("z", 5, 0, "reversed_fen")]


def test_tiers_by_epoch_apply_from_the_next_epoch():
    plan = {**PLAN, "tiers": [*PLAN["tiers"], {"name": "partner", "level1_bp": 2000, "level2_bp": 500, "self_purchase_bp": 1000,
                                               "upgrade": {"min_orders": 2}}]}
    events = [(CommissionPlanPublished(plan_version=1, plan=plan, published_by="op", published_at=at(0)), at(0)),
              (PromoterEnrolled(promoter_id="b", promoter_code="b", enrolled_by="operator", enrolled_at=at(0)), at(0))]
    # b buys for themselves at minutes 61, 62, 63 (one hour epoch: 60 < t <= 120) and 121 (the next epoch)
    for i, m in enumerate((61, 62, 63, 121)):
        events.append((OrderPaid(order_id=f"o{i}", buyer_id="b", lines=(OrderLine(line_id="l", product_id="p", quantity=1,
                       unit_price_fen=1000, paid_fen=1000),), postage_fen=0, total_fen=1000, transaction_id=f"t{i}",
                       paid_at=at(m)), at(m)))
    d = derive(source(*events), settle_until=None, tier_epoch=timedelta(hours=1))
    assert [(a.tier, a.amount_fen) for a in sorted(d.accruals.values(), key=lambda a: a.paid_at)] == [
        ("sharer", 80), ("sharer", 80), ("sharer", 80), ("partner", 100)]
    # without epochs the tier follows the order that reaches it
    d = derive(source(*events), settle_until=None)
    assert [a.tier for a in sorted(d.accruals.values(), key=lambda a: a.paid_at)] == ["sharer", "sharer", "partner", "partner"]


def test_a_management_bonus_is_re_derived_and_compared_as_its_own_line():
    plan = {**PLAN, "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800, "management_bp": 200}]}
    src = history(refund_at_min=60)
    src.plans.versions.clear()
    from services.commission.domain.plan import parse_plan

    src.plans.add(at(0), 1, parse_plan(plan))
    d = derive(src, settle_until=at(5000))
    bonus = {k: (a.kind, a.amount_fen) for k, a in d.accruals.items() if a.kind != "commission"}
    assert bonus == {"o:l:level1:management": ("management_bonus", 20), "o:l:level2:management": ("management_bonus", 20)}
    pub = Published()
    for a in d.accruals.values():
        p = CommissionAccrued(accrual_id=a.accrual_id, order_id=a.order_id, line_id=a.line_id, beneficiary_id=a.beneficiary_id,
                              buyer_id=a.buyer_id, level=a.level, base_fen=a.base_fen, quantity=a.quantity, rate_bp=a.rate_bp,
                              amount_fen=a.amount_fen, plan_version=a.plan_version, tier=a.tier, unfreeze=a.unfreeze,
                              paid_at=a.paid_at, kind="commission")  # the kind left out by a faulty publisher
        pub.add(new_event(p), p)
    diffs = [x for x in compare_lines(d, pub) if x.kind == "accrual"]
    assert len(diffs) == 2 and all("kind published 'commission' re-derived 'management_bonus'" in x.detail for x in diffs)
