"""The management bonus (管理奖): a share of real paid lines inside the promoter's own two levels,
counted toward the per-line cap (a plan that could exceed it is refused), reversed with refunds,
never a sale of the promoter's own, never a third level."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings, strategies as st

from services.commission.domain.accrual import (
    MANAGEMENT_BONUS, PaidLine, PaidOrder, accrue, is_management_bonus,
)
from services.commission.domain.chain import Beneficiary, History, beneficiaries
from services.commission.domain.errors import PlanRefusedError
from services.commission.domain.ledger import Ledger, PlanBook
from services.commission.domain.plan import HARD_CAP_BP, cap_amount, parse_plan

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def plan(**kw):
    data = {"levels": 2, "cap_bp": 3000, "freeze_days": 0,
            "tiers": [{"name": "分享家", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800},
                      {"name": "区域经理", "level1_bp": 1200, "level2_bp": 600, "self_purchase_bp": 1000,
                       "management_bp": 300, "upgrade": {"min_orders": 5}}]}
    data.update(kw)
    return parse_plan(data)


def refused(**kw) -> str:
    with pytest.raises(PlanRefusedError) as e:
        plan(**kw)
    return e.value.code


def test_a_manager_at_level_1_or_2_earns_the_bonus_on_top_of_the_level():
    line = PaidLine("l1", "p", None, 2, 10_000)
    acc, _ = accrue(PaidOrder("o1", "c", T0, (line,)),
                    [Beneficiary("level1", "b", "区域经理"), Beneficiary("level2", "a", "区域经理")], plan(), 3)
    got = {(a.level, a.kind): (a.amount_fen, a.accrual_id, a.rate_bp) for a in acc}
    assert got == {("level1", "commission"): (1_200, "o1:l1:level1", 1200),
                   ("level2", "commission"): (600, "o1:l1:level2", 600),
                   ("level1", MANAGEMENT_BONUS): (300, "o1:l1:level1:management", 300),
                   ("level2", MANAGEMENT_BONUS): (300, "o1:l1:level2:management", 300)}
    assert sum(a.amount_fen for a in acc) <= cap_amount(3000, 10_000)
    assert is_management_bonus("o1:l1:level2:management") and not is_management_bonus("o1:l1:level2")


def test_no_bonus_on_the_managers_own_purchase_nor_for_a_lower_tier():
    line = PaidLine("l1", "p", None, 1, 10_000)
    acc, _ = accrue(PaidOrder("o1", "m", T0, (line,)),
                    [Beneficiary("self_purchase", "m", "区域经理"), Beneficiary("level2", "a", "分享家")], plan(), 1)
    assert [(a.level, a.kind) for a in acc] == [("self_purchase", "commission"), ("level2", "commission")]


def test_a_plan_whose_bonus_could_exceed_the_cap_is_refused():
    # each tier alone fits (2500 + 0, 500 + 2000), but a line can have tier A at level 1 and tier B at level 2
    assert refused(tiers=[{"name": "A", "level1_bp": 2500, "level2_bp": 0, "management_bp": 100},
                          {"name": "B", "level1_bp": 500, "level2_bp": 1500, "management_bp": 400,
                           "upgrade": {"min_orders": 1}}]) == "plan_over_cap"
    assert refused(cap_bp=2000) == "plan_over_cap"                               # 1200+300 + 600+300 = 2400
    assert refused(overrides=[{"category_id": "tea", "mode": "percent", "level1": 1800, "level2": 800}]) == "plan_over_cap"
    assert refused(overrides=[{"product_id": "p", "mode": "fixed", "level1": 200, "level2": 60,
                               "min_unit_paid_fen": 1000}]) == "plan_over_cap"   # 200+30 + 60+30 fen of 300
    plan(overrides=[{"product_id": "p", "mode": "fixed", "level1": 150, "level2": 60, "min_unit_paid_fen": 1000}])
    assert refused(levels=1, tiers=[{"name": "A", "level1_bp": 2800, "management_bp": 300}]) == "plan_over_cap"
    one = parse_plan({"levels": 1, "cap_bp": 3000, "tiers": [{"name": "A", "level1_bp": 2700, "management_bp": 300}]})
    assert one.management_enabled


# -- property: a management bonus never makes a line exceed the cap ------------------------
@st.composite
def scenarios(draw):
    """Plans drawn mostly inside the rules (the cap split into the buyer's slot and level 2, each
    tier's bonus inside both), sometimes over them (then refused and passed over); chains with
    customers and promoters as buyers, managers at either level."""
    levels = draw(st.sampled_from([1, 2]))
    cap = draw(st.integers(0, HARD_CAP_BP))
    s1 = draw(st.integers(0, cap)) if levels == 2 else cap
    s2 = cap - s1 if levels == 2 else 0
    over = st.integers(0, 400)  # now and then a little over the budget: such plans must be refused

    def upto(n: int) -> int:
        return draw(st.integers(0, max(n, 0))) + (draw(over) if draw(st.integers(0, 9)) == 0 else 0)

    tiers = []
    for i in range(draw(st.integers(1, 3))):
        mb = upto(min(s1, s2) if levels == 2 else s1)
        tiers.append({"name": f"t{i}", "level1_bp": upto(s1 - mb), "level2_bp": upto(s2 - mb) if levels == 2 else 0,
                      "self_purchase_bp": upto(s1), "management_bp": mb, **({"upgrade": {"min_orders": i}} if i else {})})
    mbmax = max(t["management_bp"] for t in tiers)
    floor = draw(st.integers(1, 5000))
    overrides = [{"product_id": "p0", "mode": "fixed", "level1": upto((s1 - mbmax) * floor // 10_000),
                  "level2": upto((s2 - mbmax) * floor // 10_000) if levels == 2 else 0,
                  "self_purchase": upto(s1 * floor // 10_000), "min_unit_paid_fen": floor},
                 {"category_id": "c1", "mode": "percent", "level1": upto(s1 - mbmax),
                  "level2": upto(s2 - mbmax) if levels == 2 else 0, "self_purchase": upto(s1)}]
    try:
        p = parse_plan({"levels": levels, "cap_bp": cap, "tiers": tiers, "overrides": overrides})
    except PlanRefusedError:
        assume(False)
    h = History()
    people = ["u0", "u1", "u2", "u3"]
    for i, person in enumerate(people):
        status = draw(st.sampled_from([None, "active", "active", "active", "suspended"]))
        if status:
            h.add_status(person, T0 - timedelta(days=1), i, status, None)
        h.add_tier(person, T0 - timedelta(days=2), i, draw(st.sampled_from([t.name for t in p.tiers])))
    for i in range(1, 4):
        if draw(st.integers(0, 4)):
            h.add_binding(people[i], T0 - timedelta(hours=i), i, people[draw(st.integers(0, i - 1))])
    lines = tuple(PaidLine(f"l{i}", draw(st.sampled_from(["p0", "p1"])), draw(st.sampled_from([None, "c1"])),
                           draw(st.integers(1, 20)), draw(st.integers(0, 200_000))) for i in range(draw(st.integers(1, 4))))
    return p, h, PaidOrder("o", draw(st.sampled_from(people[1:])), T0, lines)


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_a_management_bonus_never_makes_a_line_exceed_the_cap(s):
    p, h, o = s
    chain = beneficiaries(h, o.buyer_id, o.paid_at, p.levels)
    slots = {b.level: b for b in chain if b.eligible}
    acc, _ = accrue(o, chain, p, 1)
    for line in o.lines:
        mine = [a for a in acc if a.line_id == line.line_id]
        assert sum(a.amount_fen for a in mine) <= cap_amount(p.cap_bp, line.paid_fen)
        for a in (a for a in mine if a.kind == MANAGEMENT_BONUS):
            # only the line's own level 1 or level 2, never the buyer, never a third person
            assert a.level in ("level1", "level2") and slots[a.level].promoter_id == a.beneficiary_id != o.buyer_id
            assert a.rate_bp == p.tier(slots[a.level].tier).management_bp > 0
            sold_at_or_above_floor = line.product_id != "p0" or line.paid_fen >= line.quantity * p.overrides[0].min_unit_paid_fen
            if sold_at_or_above_floor:  # the plan check is sound: the runtime guard never has to cut a bonus
                assert a.amount_fen == line.paid_fen * a.rate_bp // 10_000


# -- reversed with refunds, settled like any accrual, never a sale of one's own ---------------
def test_a_refund_reverses_the_bonus_and_its_settlement_is_not_the_managers_sale():
    h = History()
    for i, person in enumerate(("m", "b")):
        h.add_status(person, T0 - timedelta(days=3), i, "active", None)
    h.add_tier("m", T0 - timedelta(days=2), 1, "区域经理")
    h.add_binding("b", T0 - timedelta(days=2), 1, "m")
    h.add_binding("c", T0 - timedelta(days=2), 2, "b")
    book = PlanBook()
    book.add(T0 - timedelta(days=5), 1, plan())
    lg = Ledger(history=h, plans=book, accruals={}, known_orders=set(), records={}, direct_pairs=set(), refunds_seen=set())
    lg.on_paid(PaidOrder("o1", "c", T0, (PaidLine("l1", "p", None, 2, 10_000),)), SimpleNamespace(event_id=uuid.uuid4()))
    assert {a.accrual_id: a.amount_fen for a, _ in lg.accruals} == {
        "o1:l1:level1": 1_000, "o1:l1:level2": 600, "o1:l1:level2:management": 300}
    lg.on_refund("o1", "r1", [("l1", 5_000)], T0 + timedelta(hours=1), SimpleNamespace(event_id=uuid.uuid4()))
    assert {r.state.accrual_id: r.amount_fen for r in lg.reversals}["o1:l1:level2:management"] == 150
    before = lg.records.get("m")
    assert lg.settle("o1:l1:level2:management", T0 + timedelta(days=1), SimpleNamespace(event_id=uuid.uuid4())) == 150
    assert lg.records.get("m") == before   # the bonus adds nothing to the manager's own settled sales
