"""The batch fold: reversals after settlement and withdrawal, tier changes between orders, and
balances that are the same whatever order the money events are folded in."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from services.commission.domain.accrual import PaidLine, PaidOrder, settlement_amount
from services.commission.domain.balance import Delta, delta_of, fold
from services.commission.domain.chain import History
from services.commission.domain.ledger import Ledger, PlanBook
from services.commission.domain.plan import parse_plan

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PLAN = parse_plan({"levels": 2, "cap_bp": 3000, "freeze_days": 0,
                   "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800},
                             {"name": "partner", "level1_bp": 2000, "level2_bp": 500, "upgrade": {"min_orders": 1}}]})


def ledger(history: History | None = None, **state) -> Ledger:
    h = history or History()
    if history is None:
        h.add_status("a", T0 - timedelta(days=3), 1, "active", None)
        h.add_status("b", T0 - timedelta(days=3), 2, "active", None)
        h.add_binding("b", T0 - timedelta(days=2), 1, "a")
        h.add_binding("c", T0 - timedelta(days=2), 2, "b")
    book = PlanBook()
    book.add(T0 - timedelta(days=5), 1, PLAN)
    return Ledger(history=h, plans=book, accruals=state.get("accruals", {}), known_orders=set(), records={},
                  direct_pairs=set(), refunds_seen=set())


def cause():
    return SimpleNamespace(event_id=uuid.uuid4())


def paid(order_id: str, at: datetime, paid_fen: int = 1000, qty: int = 2) -> PaidOrder:
    return PaidOrder(order_id, "c", at, (PaidLine("l1", "p", None, qty, paid_fen),))


def test_refund_after_settlement_is_reversed_from_settled():
    lg = ledger()
    lg.on_paid(paid("o1", T0), cause())
    lg.on_completed("o1", T0 + timedelta(days=1), uuid.uuid4())
    assert {d.accrual_id for d in lg.dues} == {"o1:l1:level1", "o1:l1:level2"}
    st = lg.by_id["o1:l1:level1"]
    st.settled_fen, st.settled_at = settlement_amount(st.amount_fen, st.reversed_fen), T0 + timedelta(days=1)
    lg.on_refund("o1", "r1", [("l1", 250)], T0 + timedelta(days=2), cause())
    lg.on_refund("o1", "r1", [("l1", 250)], T0 + timedelta(days=2), cause())  # the same refund twice: once
    got = {(r.state.accrual_id, r.from_status, r.amount_fen) for r in lg.reversals}
    assert got == {("o1:l1:level1", "settled", 25), ("o1:l1:level2", "frozen", 12)}
    lg.on_refund("o1", "r2", [("l1", 750)], T0 + timedelta(days=3), cause())
    assert sum(r.amount_fen for r in lg.reversals if r.state.accrual_id == "o1:l1:level1") == 100
    assert sum(r.amount_fen for r in lg.reversals if r.state.accrual_id == "o1:l1:level2") == 50


def test_refund_after_withdrawal_takes_the_balance_negative():
    deltas: dict[str, Delta] = {}
    ev = [("CommissionAccrued", SimpleNamespace(beneficiary_id="b", amount_fen=100)),
          ("CommissionSettled", SimpleNamespace(beneficiary_id="b", amount_fen=100)),
          ("WithdrawalRequested", SimpleNamespace(promoter_id="b", amount_fen=100)),
          ("WithdrawalPaid", SimpleNamespace(promoter_id="b", amount_fen=100)),
          ("CommissionReversed", SimpleNamespace(beneficiary_id="b", amount_fen=40, from_status="settled")),
          ("CommissionAccrued", SimpleNamespace(beneficiary_id="b", amount_fen=30)),
          ("CommissionSettled", SimpleNamespace(beneficiary_id="b", amount_fen=30))]
    for et, p in ev:
        fold(deltas, *delta_of(et, p))
    assert deltas["b"] == Delta(frozen_fen=0, available_fen=-10, reserved_fen=0, withdrawn_fen=100, reversed_fen=40)


def test_tier_reached_by_an_order_applies_to_the_next_order_only():
    lg = ledger()
    lg.on_paid(paid("o1", T0), cause())
    assert [(t.promoter_id, t.from_tier, t.to_tier) for t in lg.tier_changes] == [("b", "sharer", "partner")]
    lg.on_paid(paid("o2", T0 + timedelta(seconds=1)), cause())
    first = {a.accrual_id: (a.tier, a.amount_fen) for a, _ in lg.accruals}
    assert first["o1:l1:level1"] == ("sharer", 100)
    assert first["o2:l1:level1"] == ("partner", 200)
    assert lg.records["b"].orders == 2 and lg.records["b"].direct_buyers == 1


def test_duplicate_payment_accrues_once_and_no_plan_records_skips():
    lg = ledger()
    lg.on_paid(paid("o1", T0), cause())
    lg.on_paid(paid("o1", T0), cause())
    assert len(lg.accruals) == 2
    lg.plans = PlanBook()  # no plan published yet
    lg.on_paid(paid("o0", T0), cause())
    assert {(s.level, s.reason) for s, _, _ in lg.skips} == {("level1", "no_plan_in_force"), ("level2", "no_plan_in_force")}


money = st.sampled_from(["CommissionAccrued", "CommissionReversedF", "CommissionReversedS", "CommissionSettled",
                         "WithdrawalRequested", "WithdrawalRejected", "WithdrawalReleased", "WithdrawalPaid"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(money, st.sampled_from(["a", "b", "c"]), st.integers(1, 10_000)), max_size=60), st.randoms())
def test_balances_do_not_depend_on_the_order_events_are_folded(events, rnd):
    def payload(kind, pid, amount):
        if kind.startswith("CommissionReversed"):
            return "CommissionReversed", SimpleNamespace(beneficiary_id=pid, amount_fen=amount,
                                                         from_status="frozen" if kind.endswith("F") else "settled")
        return kind, SimpleNamespace(beneficiary_id=pid, promoter_id=pid, amount_fen=amount)

    def run(evs):
        out: dict[str, Delta] = {}
        for e in evs:
            fold(out, *delta_of(*payload(*e)))
        return out

    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert run(events) == run(shuffled)
    # money is conserved: every column move is matched except what enters (accrued) and leaves (withdrawn, reversed)
    for pid, d in run(events).items():
        accrued = sum(a for k, p, a in events if p == pid and k == "CommissionAccrued")
        assert d.frozen_fen + d.available_fen + d.reserved_fen + d.withdrawn_fen + d.reversed_fen == accrued


def test_fast_outbox_envelope_is_what_new_event_builds():
    from services.commission.handlers.projection import _Outgoing
    from shared.contracts.commission import CommissionReversed
    from shared.events import Envelope, catalog, new_event
    from shared.projector import Batch

    cause = new_event(CommissionReversed(accrual_id="a", order_id="o", line_id="l", beneficiary_id="b", out_refund_no="r",
                                         amount_fen=1, from_status="frozen", reversed_at=T0))
    payload = CommissionReversed(accrual_id="a2", order_id="o", line_id="l", beneficiary_id="b2", out_refund_no="r",
                                 amount_fen=7, from_status="settled", reversed_at=T0)
    batch = Batch(events=[])
    eid = uuid.uuid4()
    out = _Outgoing(batch)
    out.add(payload, eid, cause)
    out.finish()
    rec = batch.emitted[0]
    got = Envelope.from_bytes(rec.value)
    want = new_event(payload, event_id=eid, cause=cause)
    assert got.model_dump(exclude={"occurred_at"}) == want.model_dump(exclude={"occurred_at"})
    assert catalog.payload(got) == payload and rec.key == "b2" and rec.event_id == eid
    assert rec.headers["event_type"] == "CommissionReversed"
