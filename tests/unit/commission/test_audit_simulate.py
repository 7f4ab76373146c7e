"""The plan simulator's pure part: the same source events folded under the real plans and under a
draft in force from the start of the period; cost net of refunds per promoter, product and tier."""
from __future__ import annotations

from services.commission.audit.simulate import draft_book, simulate
from services.commission.domain.plan import parse_plan
from tests.unit.commission.test_audit_rederive import PLAN, at, history


def test_draft_raises_level1_and_the_difference_is_reported_per_promoter_product_and_tier():
    src = history(refund_at_min=60)
    draft = parse_plan({**PLAN, "tiers": [{"name": "sharer", "level1_bp": 2000, "level2_bp": 500, "self_purchase_bp": 800}]})
    sim = simulate(src, draft, at(5), at(5000)).as_json()
    # level 1: 100 - 49 reversed = 51 now; 200 - 99 = 101 under the draft. level 2 unchanged: 50 - 24 = 26
    assert sim["orders"] == 1
    assert sim["total"] == {"current_fen": 77, "draft_fen": 127, "difference_fen": 50}
    assert sim["by_promoter"] == [{"key": "b", "current_fen": 51, "draft_fen": 101, "difference_fen": 50},
                                  {"key": "a", "current_fen": 26, "draft_fen": 26, "difference_fen": 0}]
    assert sim["by_product"] == [{"key": "p", "current_fen": 77, "draft_fen": 127, "difference_fen": 50}]
    assert sim["by_tier"] == [{"key": "sharer", "current_fen": 77, "draft_fen": 127, "difference_fen": 50}]
    # the source is untouched: simulating again gives the same
    assert simulate(src, draft, at(5), at(5000)).as_json() == sim


def test_a_period_without_the_order_costs_nothing_and_the_draft_replaces_versions_inside_the_period():
    src = history(refund_at_min=60)
    draft = parse_plan(PLAN)
    assert simulate(src, draft, at(11), at(5000)).as_json()["total"] == {"current_fen": 0, "draft_fen": 0, "difference_fen": 0}
    book = draft_book(src.plans, draft, at(0))
    assert [v for _, v, _ in book.versions] == [10**9]  # version 1 was published at minute 0, inside the period
    assert [v for _, v, _ in draft_book(src.plans, draft, at(1)).versions] == [1, 10**9]
