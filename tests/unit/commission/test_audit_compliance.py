"""The compliance report's checks (pure): a clean history passes every check; an accrual above the
cap, one for an order never paid, one caused by a binding rather than a payment and a refund not
reversed each fail their check and are named (a third level cannot even be expressed: the contract's
level is level1, level2 or self_purchase); team size and depth are
measured through the bindings and flagged at 3 levels and 30 people."""
from __future__ import annotations

from pathlib import Path

from services.commission.audit.compliance import check, teams, write
from services.commission.audit.rederive import Published, Source, derive
from shared.contracts.commission import CommissionAccrued, CommissionReversed
from shared.contracts.referral import ReferralBound
from shared.events import new_event
from tests.unit.commission.test_audit_rederive import at, history


def publish(src: Source) -> tuple[Published, dict]:
    """What a correct commission service would have published for `src`."""
    d = derive(Source(history=src.history, plans=src.plans, orders=list(src.orders)), settle_until=at(5000))
    paid = {p.order_id: env for _, _, env, p in src.orders if env.event_type == "OrderPaid"}
    pub = Published()
    for a in d.accruals.values():
        p = CommissionAccrued(accrual_id=a.accrual_id, order_id=a.order_id, line_id=a.line_id, beneficiary_id=a.beneficiary_id,
                              buyer_id=a.buyer_id, level=a.level, base_fen=a.base_fen, quantity=a.quantity, rate_bp=a.rate_bp,
                              amount_fen=a.amount_fen, plan_version=a.plan_version, tier=a.tier, unfreeze=a.unfreeze, paid_at=a.paid_at)
        pub.add(new_event(p, cause=paid[a.order_id]), p)
    for r in d.reversals.values():
        p = CommissionReversed(accrual_id=r.accrual_id, order_id=r.order_id, line_id=r.line_id, beneficiary_id=r.beneficiary_id,
                               out_refund_no=r.out_refund_no, amount_fen=r.amount_fen, from_status=r.from_status, reversed_at=r.reversed_at)
        pub.add(new_event(p), p)
    return pub, paid


def test_a_clean_history_passes_every_check(tmp_path: Path):
    src = history(refund_at_min=60)
    pub, _ = publish(src)
    r = check(src, pub, (at(0), at(6000)))
    assert r.passed, [(c.name, c.findings) for c in r.checks]
    assert [c.passed for c in r.checks] == [True] * 5 and r.orders == 1 and r.sales_fen == 1001 and r.commission_fen == 150
    assert "deepest level paid: 2" in r.checks[0].value and "highest share 14.99%" in r.checks[1].value
    paths = write(r, tmp_path)
    assert "PASS" in paths[2].read_text() and paths[0].read_text().count("pass") == 5


def test_each_violation_fails_its_check_and_is_named():
    src = history(refund_at_min=60)
    pub, paid = publish(src)
    cause = paid["o"]

    def forge(event_cause=cause, **kw):
        base = dict(accrual_id="o:l:x", order_id="o", line_id="l", beneficiary_id="z", buyer_id="c", level="level2", base_fen=1001,
                    quantity=1, rate_bp=0, amount_fen=1, plan_version=1, tier="sharer", unfreeze="-", paid_at=at(10))
        p = CommissionAccrued(**{**base, **kw})
        pub.add(new_event(p, cause=event_cause), p)

    forge(accrual_id="o:l:big", amount_fen=200)                                  # 150 + 200 + 1.. > 30 % of 1001
    forge(accrual_id="ghost:l:level1", order_id="ghost", level="level1")         # never paid
    binding = new_event(ReferralBound(customer_id="c", promoter_id="b", promoter_code="b", source="link", mode="first_touch",
                                      bound_at=at(1)))
    forge(accrual_id="o:l:recruit", event_cause=binding)                         # caused by a binding
    pub.reversals.pop(next(iter(pub.reversals)))                                 # a refund not reversed
    r = check(src, pub, (at(0), at(6000)))
    failed = {c.name.split(" (")[0]: c.findings for c in r.checks if not c.passed}
    assert set(failed) == {"commission share of sales per line", "payments not backed by a paid order",
                           "rewards for recruitment alone", "refunds reversed"}
    assert any("order o line l" in f and "> cap 30 %" in f for f in failed["commission share of sales per line"])
    assert failed["payments not backed by a paid order"] == ["order ghost: 1 fen to z, but the order was never paid"]
    assert any("o:l:recruit" in f for f in failed["rewards for recruitment alone"])
    # the reversal dropped, and the forged big accrual that nobody reversed either
    assert "order o line l: 500 of 1001 fen refunded, b's level1 accrual of 100 fen reversed 0 fen, owed 49" in failed["refunds reversed"]
    assert len(failed["refunds reversed"]) == 2


def test_team_size_and_depth_through_bindings():
    src = Source()
    # a chain root <- l1 <- l2 <- l3, and 30 customers directly under l3
    chain = ["root", "l1", "l2", "l3"]
    people = [(chain[i + 1], chain[i]) for i in range(3)] + [(f"c{i}", "l3") for i in range(30)]
    for customer, promoter in people:
        p = ReferralBound(customer_id=customer, promoter_id=promoter, promoter_code=promoter, source="link", mode="first_touch",
                          bound_at=at(1))
        src.add(new_event(p), p)
    got = {t.promoter_id: (t.size, t.depth, t.at_threshold) for t in teams(src, at(2))}
    assert got["root"] == (33, 4, True) and got["l1"] == (32, 3, True) and got["l2"] == (31, 2, False)
    assert got["l3"] == (30, 1, False)
    assert teams(src, at(0)) == []  # nothing was bound yet
