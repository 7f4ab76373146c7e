"""Plan rules: a plan that could pay a third level or more than the cap on a line is refused when saved."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from services.commission.domain.errors import PlanRefusedError
from services.commission.domain.plan import HARD_CAP_BP, parse_plan, worst_case


def plan(**kw):
    base = {"levels": 2, "cap_bp": 3000, "freeze_days": 7,
            "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800}]}
    base.update(kw)
    return base


def refused(data) -> str:
    with pytest.raises(PlanRefusedError) as e:
        parse_plan(data)
    return e.value.code


def test_valid_plan_is_accepted():
    p = parse_plan(plan(overrides=[{"category_id": "c", "mode": "fixed", "level1": 100, "level2": 50,
                                    "min_unit_paid_fen": 500}]))
    assert p.levels == 2 and p.tiers[0].name == "sharer"


@pytest.mark.parametrize("data", [
    plan(levels=3),
    plan(tiers=[{"name": "t", "level1_bp": 1000, "level3_bp": 100}]),
    plan(overrides=[{"product_id": "p", "mode": "percent", "level1": 1, "level3": 1}]),
])
def test_third_level_is_refused(data):
    assert refused(data) == "third_level_forbidden"


def test_tier_over_cap_is_refused():
    assert refused(plan(tiers=[{"name": "t", "level1_bp": 2500, "level2_bp": 600}])) == "plan_over_cap"


def test_self_purchase_plus_level2_over_cap_is_refused():
    assert refused(plan(tiers=[{"name": "t", "level1_bp": 1000, "level2_bp": 1000, "self_purchase_bp": 2100}])) == "plan_over_cap"


def test_cap_can_be_lowered_and_then_binds():
    assert refused(plan(cap_bp=1000)) == "plan_over_cap"  # 1000 + 500 > 1000
    assert parse_plan(plan(cap_bp=1500)).cap_bp == 1500


def test_cap_above_hard_ceiling_is_refused():
    assert refused(plan(cap_bp=HARD_CAP_BP + 1)) == "cap_above_ceiling"


def test_percent_override_over_cap_is_refused():
    assert refused(plan(overrides=[{"product_id": "p", "mode": "percent", "level1": 2000, "level2": 1001}])) == "plan_over_cap"


def test_fixed_override_needs_a_price_floor_and_respects_the_cap():
    assert refused(plan(overrides=[{"product_id": "p", "mode": "fixed", "level1": 100}])) == "plan_invalid"
    # 300 + 1 fen per unit is more than 30 % of 1000 fen
    assert refused(plan(overrides=[{"product_id": "p", "mode": "fixed", "level1": 300, "level2": 1,
                                    "min_unit_paid_fen": 1000}])) == "plan_over_cap"
    parse_plan(plan(overrides=[{"product_id": "p", "mode": "fixed", "level1": 200, "level2": 100, "min_unit_paid_fen": 1000}]))


def test_level2_rate_in_one_level_plan_is_refused():
    assert refused(plan(levels=1)) == "level2_in_one_level_plan"
    assert parse_plan(plan(levels=1, tiers=[{"name": "t", "level1_bp": 3000}])).levels == 1


@pytest.mark.parametrize("data", [
    plan(tiers=[{"name": "a", "level1_bp": 1}, {"name": "a", "level1_bp": 2, "upgrade": {"min_orders": 1}}]),
    plan(tiers=[{"name": "a", "level1_bp": 1, "upgrade": {"min_orders": 1}}]),
    plan(tiers=[{"name": "a", "level1_bp": 1}, {"name": "b", "level1_bp": 2, "upgrade": {}}]),
    plan(tiers=[{"name": "a", "level1_bp": 1}, {"name": "b", "level1_bp": 2, "upgrade": {"min_recruits": 5}}]),
    plan(tiers=[]),
    plan(levels=0),
    plan(overrides=[{"product_id": "p", "category_id": "c", "mode": "percent", "level1": 1}]),
    plan(overrides=[{"product_id": "p", "mode": "percent", "level1": 1}, {"product_id": "p", "mode": "percent", "level1": 2}]),
    plan(tiers=[{"name": "t", "level1_bp": -1}]),
])
def test_malformed_plans_are_refused(data):
    assert refused(data) == "plan_invalid"


rates = st.integers(0, 4000)


@settings(max_examples=300, deadline=None)
@given(levels=st.sampled_from([1, 2]), cap=st.integers(0, HARD_CAP_BP),
       tiers=st.lists(st.tuples(rates, rates, rates), min_size=1, max_size=4),
       overrides=st.lists(st.tuples(st.sampled_from(["percent", "fixed"]), rates, rates, rates, st.integers(1, 50_000)), max_size=4))
def test_an_accepted_plan_never_allows_more_than_the_cap(levels, cap, tiers, overrides):
    data = {"levels": levels, "cap_bp": cap,
            "tiers": [{"name": f"t{i}", "level1_bp": a, "level2_bp": b, "self_purchase_bp": c,
                       **({"upgrade": {"min_orders": i}} if i else {})} for i, (a, b, c) in enumerate(tiers)],
            "overrides": [{"product_id": f"p{i}", "mode": m, "level1": a, "level2": b, "self_purchase": c,
                           **({"min_unit_paid_fen": floor} if m == "fixed" else {})}
                          for i, (m, a, b, c, floor) in enumerate(overrides)]}
    try:
        p = parse_plan(data)
    except PlanRefusedError:
        return
    for t in p.tiers:
        assert worst_case(p.levels, t.level1_bp, t.level2_bp, t.self_purchase_bp) <= p.cap_bp
        assert p.levels == 2 or t.level2_bp == 0
    for o in p.overrides:
        total = worst_case(p.levels, o.level1, o.level2, o.self_purchase)
        if o.mode == "percent":
            assert total <= p.cap_bp
        else:
            assert total * 10_000 <= p.cap_bp * o.min_unit_paid_fen
