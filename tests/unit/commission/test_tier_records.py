"""Which tier records the order worker asks PostgreSQL for (`CommissionProjection._tiers_for`):
only for whoever is a promoter at the payment, and still for every slot the chain reads a tier
for. The query is replaced by a stand-in that records what it was asked."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from services.commission.domain.chain import History, beneficiaries
from services.commission.domain.ledger import PlanBook
from services.commission.domain.plan import Plan
from services.commission.handlers import projection as module
from services.commission.handlers.projection import CommissionProjection

PLAN = Plan.model_validate({
    "levels": 2, "cap_bp": 3000, "freeze_days": 0,
    "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 300, "self_purchase_bp": 500},
              {"name": "partner", "level1_bp": 1500, "level2_bp": 500, "self_purchase_bp": 800,
               "upgrade": {"min_orders": 3}}],
})
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def paid(buyer: str, at: datetime) -> SimpleNamespace:
    return SimpleNamespace(payload=SimpleNamespace(buyer_id=buyer, paid_at=at))


@pytest.fixture
def asked(monkeypatch) -> list[str]:
    """The promoters whose records were asked for (each answered with an empty record)."""
    seen: list[str] = []

    async def records_before(conn, promoters, epochs, starts):
        seen.extend(promoters)
        return [{"orders": 0, "direct_buyers": 0, "settled_sales_fen": 0} for _ in promoters]

    monkeypatch.setattr(module.store, "records_before", records_before)
    return seen


def worker() -> tuple[CommissionProjection, PlanBook]:
    proj = CommissionProjection(emit=False)
    plans = PlanBook()
    plans.add(T0 - timedelta(days=1), 1, PLAN)
    return proj, plans


async def test_a_plain_customers_record_is_not_asked_for_and_a_promoters_is(asked):
    proj, plans = worker()
    ref = proj.reference.history
    for p in ("p1", "p2", "buyer-promoter"):
        ref.add_status(p, T0 - timedelta(hours=5), 1, "active", None)
    ref.add_binding("c1", T0 - timedelta(hours=4), 1, "p1")
    ref.add_binding("p1", T0 - timedelta(hours=4), 2, "p2")
    ref.add_binding("buyer-promoter", T0 - timedelta(hours=4), 3, "p1")
    history = History(bindings=ref.bindings, statuses=ref.statuses, tiers={})
    at = T0 + timedelta(minutes=30)
    await proj._tiers_for(None, [paid("c1", at), paid("buyer-promoter", at)], plans, history)  # noqa: SLF001
    assert sorted(asked) == ["buyer-promoter", "p1", "p2"]
    assert history.tier_at("p1", at) == "sharer" and history.tier_at("buyer-promoter", at) == "sharer"
    assert history.tier_at("c1", at) is None


async def test_every_tier_the_chain_reads_is_there(asked):
    """For random bindings and statuses (promoters enrolled, suspended, revoked, customers never
    enrolled, some enrolled after the payment), every slot `beneficiaries` pays has its tier."""
    rnd = random.Random(19)
    for _ in range(30):
        asked.clear()
        proj, plans = worker()
        ref = proj.reference.history
        users = [f"u{i}" for i in range(25)]
        seq = 0
        for u in users:
            seq += 1
            roll = rnd.random()
            if roll < 0.5:
                ref.add_status(u, T0 + timedelta(minutes=rnd.randrange(-60, 90)), seq,
                               rnd.choice(["active", "active", "suspended", "revoked"]), None)
            if rnd.random() < 0.8:
                ref.add_binding(u, T0 - timedelta(minutes=rnd.randrange(0, 120)), seq, rnd.choice(users))
        history = History(bindings=ref.bindings, statuses=ref.statuses, tiers={})
        orders = [paid(rnd.choice(users), T0 + timedelta(minutes=rnd.randrange(0, 120))) for _ in range(40)]
        await proj._tiers_for(None, orders, plans, history)  # noqa: SLF001
        for o in orders:
            for b in beneficiaries(history, o.payload.buyer_id, o.payload.paid_at, 2):
                if b.eligible:
                    assert b.tier is not None, (b, o.payload)
        assert all(ref.status_at(u, T0 + timedelta(days=1)) is not None or u not in asked for u in users)
