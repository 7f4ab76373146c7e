"""Accrual rules over random plans, chains and orders: cap per line, at most two levels, integer
fen, quantity handled once; reversals that add up exactly."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from services.commission.domain.accrual import PaidLine, PaidOrder, accrue, reversal_amount
from services.commission.domain.chain import Beneficiary, History, beneficiaries
from services.commission.domain.plan import HARD_CAP_BP, cap_amount, parse_plan

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def simple_plan(**kw):
    data = {"levels": 2, "cap_bp": 3000, "freeze_days": 7,
            "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800},
                      {"name": "partner", "level1_bp": 1500, "level2_bp": 1000, "self_purchase_bp": 1200,
                       "upgrade": {"min_orders": 2}}]}
    data.update(kw)
    return parse_plan(data)


def order(*lines, buyer="c"):
    return PaidOrder("o1", buyer, T0, tuple(lines))


def test_percent_is_of_the_whole_line_and_rounds_down_per_line_per_level():
    # 3 units, 1999 fen paid for the line: 10 % = 199.9 -> 199; 5 % = 99.95 -> 99
    line = PaidLine("l1", "p", None, 3, 1999)
    acc, skips = accrue(order(line), [Beneficiary("level1", "b", None), Beneficiary("level2", "a", None)], simple_plan(), 4)
    got = {a.level: a for a in acc}
    assert got["level1"].amount_fen == 199 and got["level1"].quantity == 3 and got["level1"].base_fen == 1999
    assert got["level2"].amount_fen == 99
    assert got["level1"].rate_bp == 1000 and got["level1"].plan_version == 4 and got["level1"].tier == "sharer"
    assert got["level1"].accrual_id == "o1:l1:level1" and got["level1"].unfreeze == "order_completed+7d"
    assert not skips


def test_fixed_override_multiplies_by_quantity_once():
    p = simple_plan(overrides=[{"product_id": "p", "mode": "fixed", "level1": 150, "level2": 50, "min_unit_paid_fen": 1000}])
    acc, _ = accrue(order(PaidLine("l1", "p", None, 4, 4000)), [Beneficiary("level1", "b", "partner"),
                                                                Beneficiary("level2", "a", None)], p, 1)
    got = {a.level: a for a in acc}
    assert got["level1"].amount_fen == 600 and got["level1"].fixed_fen_per_unit == 150 and got["level1"].rate_bp is None
    assert got["level2"].amount_fen == 200


def test_cap_guard_takes_level2_first_when_a_unit_sold_below_the_floor():
    p = simple_plan(overrides=[{"product_id": "p", "mode": "fixed", "level1": 200, "level2": 100, "min_unit_paid_fen": 1000}])
    # 2 units for 1000 fen in total: cap 300, fixed wants 400 + 200
    acc, skips = accrue(order(PaidLine("l1", "p", None, 2, 1000)), [Beneficiary("level1", "b", None),
                                                                    Beneficiary("level2", "a", None)], p, 1)
    assert [(a.level, a.amount_fen) for a in acc] == [("level1", 300)]
    assert [(s.level, s.reason) for s in skips] == [("level2", "cap_guard")]


def test_ineligible_beneficiary_is_skipped_with_reason_and_others_still_paid():
    acc, skips = accrue(order(PaidLine("l1", "p", None, 1, 1000)),
                        [Beneficiary("level1", "b", None, "suspended"), Beneficiary("level2", "a", None)], simple_plan(), 1)
    assert [(a.level, a.beneficiary_id, a.amount_fen) for a in acc] == [("level2", "a", 50)]
    assert [(s.level, s.beneficiary_id, s.reason, s.line_id) for s in skips] == [("level1", "b", "suspended", None)]


# -- chains ----------------------------------------------------------------------------------
def hist():
    h = History()
    for i, p in enumerate(["a", "b", "c"]):
        h.add_status(p, T0 - timedelta(days=10), i, "active", None)
    h.add_binding("b", T0 - timedelta(days=9), 1, "a")
    h.add_binding("c", T0 - timedelta(days=8), 2, "b")
    h.add_binding("x", T0 - timedelta(days=8), 3, "c")
    return h


def test_chain_uses_bindings_in_force_at_payment():
    h = hist()
    h.add_binding("y", T0 + timedelta(seconds=1), 4, "b")  # bound after the payment: not in force
    assert beneficiaries(h, "y", T0, 2) == []
    h.add_binding("y", T0 - timedelta(seconds=1), 5, "c")
    assert [(b.level, b.promoter_id) for b in beneficiaries(h, "y", T0, 2)] == [("level1", "c"), ("level2", "b")]
    h.add_binding("y", T0, 6, "a")  # taken over exactly at the payment instant: bound_at <= paid_at applies
    assert [(b.level, b.promoter_id) for b in beneficiaries(h, "y", T0, 2)] == [("level1", "a")]


def test_one_level_plan_never_pays_level2():
    assert [(b.level, b.promoter_id) for b in beneficiaries(hist(), "x", T0, 1)] == [("level1", "c")]


def test_self_purchase_takes_level1_slot_and_referrer_becomes_level2():
    assert [(b.level, b.promoter_id) for b in beneficiaries(hist(), "c", T0, 2)] == [("self_purchase", "c"), ("level2", "b")]


def test_suspended_buyer_keeps_the_shape_revoked_buyer_buys_as_a_customer():
    h = hist()
    h.add_status("c", T0 - timedelta(days=1), 10, "suspended", T0 + timedelta(days=1))
    got = beneficiaries(h, "c", T0, 2)
    assert [(b.level, b.promoter_id, b.reason) for b in got] == [("self_purchase", "c", "suspended"), ("level2", "b", None)]
    # the suspension ends by itself
    assert beneficiaries(h, "c", T0 + timedelta(days=2), 2)[0].eligible
    h.add_status("c", T0 + timedelta(days=3), 11, "revoked", None)
    got = beneficiaries(h, "c", T0 + timedelta(days=4), 2)
    assert [(b.level, b.promoter_id) for b in got] == [("level1", "b"), ("level2", "a")]


def test_not_a_promoter_referrer_is_skipped():
    h = hist()
    h.add_binding("z", T0 - timedelta(days=1), 7, "nobody")
    got = beneficiaries(h, "z", T0, 2)
    assert [(b.level, b.reason) for b in got] == [("level1", "not_a_promoter")]


def test_tier_applies_to_orders_paid_after_it():
    h = hist()
    h.add_tier("b", T0, 1, "partner")
    assert h.tier_at("b", T0) is None
    assert h.tier_at("b", T0 + timedelta(microseconds=1)) == "partner"


# -- property: every plan, chain and order ------------------------------------------------
statuses = st.sampled_from([None, "active", "active", "suspended", "revoked"])


@st.composite
def scenarios(draw):
    """Plans drawn inside the rules (rates split the cap), so almost every draw is a valid plan."""
    levels = draw(st.sampled_from([1, 2]))
    cap = draw(st.integers(0, HARD_CAP_BP))

    def split(limit: int) -> tuple[int, int, int]:
        first = draw(st.integers(0, limit))
        self_ = draw(st.integers(0, limit))
        second = draw(st.integers(0, limit - max(first, self_))) if levels == 2 else 0
        return first, second, self_

    tiers = [split(cap) for _ in range(draw(st.integers(1, 3)))]
    floor = draw(st.integers(1, 5000))
    fixed = split(cap * floor // 10_000)
    pct = split(cap)
    data = {"levels": levels, "cap_bp": cap,
            "tiers": [{"name": f"t{i}", "level1_bp": a, "level2_bp": b, "self_purchase_bp": c,
                       **({"upgrade": {"min_orders": i}} if i else {})} for i, (a, b, c) in enumerate(tiers)],
            "overrides": [{"product_id": "p0", "mode": "fixed", "level1": fixed[0], "level2": fixed[1],
                           "self_purchase": fixed[2], "min_unit_paid_fen": floor},
                          {"category_id": "c1", "mode": "percent", "level1": pct[0], "level2": pct[1],
                           "self_purchase": pct[2]}]}
    plan = parse_plan(data)
    h = History()
    people = ["u0", "u1", "u2", "u3"]
    for i, p in enumerate(people):
        s = draw(statuses)
        if s:
            h.add_status(p, T0 - timedelta(days=1), i, s, None)
    for i in range(1, 4):  # a random forest: u_i bound to some earlier u_j
        if draw(st.booleans()):
            h.add_binding(people[i], T0 - timedelta(hours=i), i, people[draw(st.integers(0, i - 1))])
        h.add_tier(people[i], T0 - timedelta(days=2), i, draw(st.sampled_from([t.name for t in plan.tiers] + ["gone"])))
    lines = tuple(PaidLine(f"l{i}", draw(st.sampled_from(["p0", "p1"])), draw(st.sampled_from([None, "c1"])),
                           draw(st.integers(1, 20)), draw(st.integers(0, 100_000))) for i in range(draw(st.integers(1, 4))))
    buyer = draw(st.sampled_from(people))
    return plan, h, PaidOrder("o", buyer, T0, lines)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_every_line_stays_within_the_cap_with_at_most_two_levels(s):
    plan, h, o = s
    chain = beneficiaries(h, o.buyer_id, o.paid_at, plan.levels)
    assert len(chain) <= plan.levels
    acc, skips = accrue(o, chain, plan, 1)
    for line in o.lines:
        mine = [a for a in acc if a.line_id == line.line_id]
        levels = [a.level for a in mine]
        assert len(levels) == len(set(levels)) <= 2
        assert not ({"level1", "self_purchase"} <= set(levels))
        assert plan.levels == 2 or "level2" not in levels
        assert sum(a.amount_fen for a in mine) <= cap_amount(plan.cap_bp, line.paid_fen)
        for a in mine:
            assert isinstance(a.amount_fen, int) and a.amount_fen > 0
            assert a.quantity == line.quantity and a.base_fen == line.paid_fen
            assert a.beneficiary_id != o.buyer_id or a.level == "self_purchase"
            assert a.tier in plan.tier_by_name


@settings(max_examples=400, deadline=None)
@given(amount=st.integers(0, 10**7), paid=st.integers(1, 10**7), cuts=st.lists(st.integers(0, 10**7), min_size=1, max_size=8))
def test_partial_refunds_that_add_up_to_the_line_reverse_exactly_the_accrual(amount, paid, cuts):
    # split `paid` into refunds in the proportions of `cuts`; the last one completes the line
    total = sum(cuts) or 1
    parts = [paid * c // total for c in cuts]
    parts[-1] = paid - sum(parts[:-1])
    reversed_, refunded = 0, 0
    for part in parts:
        refunded = min(paid, refunded + part)
        step = reversal_amount(amount, reversed_, paid, refunded)
        assert step >= 0
        reversed_ += step
        assert reversed_ <= amount
    assert reversed_ == amount


def test_refunding_more_than_the_line_reverses_no_more_than_the_accrual():
    assert reversal_amount(100, 0, 1000, 5000) == 100
    assert reversal_amount(100, 100, 1000, 5000) == 0
