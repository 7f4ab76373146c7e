"""The projection's direct envelope building: for any input, the outbox bytes are exactly what
`new_event(<contract payload>, event_id=..., occurred_at=..., cause=...).to_bytes()` builds, and
they parse back (`Envelope.from_bytes` + `catalog.payload`) into the same envelope and payload."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from services.commission.domain.accrual import Accrual, Skip
from services.commission.domain.balance import delta_of
from services.commission.domain.chain import History
from services.commission.domain.ledger import Ledger, PlanBook
from services.commission.handlers.projection import _Outgoing
from shared.contracts.commission import (
    CommissionAccrualSkipped, CommissionAccrued, CommissionReversed, CommissionSettled, PromoterTierChanged,
)
from shared.events import Envelope, catalog, new_event
from shared.projector import Batch

texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
ids = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
zones = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60))
times = st.builds(lambda d, tz: d.replace(tzinfo=tz),
                  st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)), zones)
levels = st.sampled_from(["level1", "level2", "self_purchase"])
fen = st.integers(0, 10**12)


@st.composite
def causes(draw):
    origin = CommissionSettled(accrual_id="a", order_id="o", beneficiary_id="b", amount_fen=1, settled_at=draw(times))
    corr = draw(st.none() | st.uuids())
    return new_event(origin, event_id=draw(st.uuids()), cause=None, correlation_id=corr)


@st.composite
def accruals(draw):
    percent = draw(st.booleans())
    return Accrual(
        accrual_id=draw(texts), order_id=draw(texts), line_id=draw(texts), level=draw(levels),
        beneficiary_id=draw(ids), buyer_id=draw(texts), product_id=draw(texts), base_fen=draw(fen),
        quantity=draw(st.integers(1, 10**6)), rate_bp=draw(st.integers(0, 3000)) if percent else None,
        fixed_fen_per_unit=None if percent else draw(fen), amount_fen=draw(fen), plan_version=draw(st.integers(1, 10**6)),
        tier=draw(texts), freeze_days=draw(st.integers(0, 365)), unfreeze=draw(texts), paid_at=draw(times),
    )


def _ledger() -> Ledger:
    return Ledger(history=History(), plans=PlanBook(), accruals={}, known_orders=set(), records={},
                  direct_pairs=set(), refunds_seen=set())


def _check(rec, out: _Outgoing, payload, eid, cause) -> None:
    want = new_event(payload, event_id=eid, occurred_at=out.now, cause=cause)
    assert rec.value == want.to_bytes()
    got = Envelope.from_bytes(rec.value)
    assert got == want
    assert catalog.payload(got) == payload
    assert rec.key == payload.aggregate_key() and rec.event_id == eid
    assert rec.headers["event_type"] == payload.event_type and rec.headers["event_version"] == str(payload.version)


@settings(max_examples=300, deadline=None)
@given(accruals(), causes(), st.uuids(), times)
def test_accrued_bytes_are_what_new_event_builds_and_move_the_same_balance(a, cause, eid, now):
    batch = Batch(events=[])
    out = _Outgoing(batch, now)
    led = _ledger()
    out.accrued(led, a, eid, cause)
    assert batch.emitted == []  # the bytes come with finish(), the balance move at once
    pid0, d0 = delta_of(CommissionAccrued.event_type, a)
    assert led.deltas.items() == {pid0: d0}
    out.finish()
    payload = CommissionAccrued(
        accrual_id=a.accrual_id, order_id=a.order_id, line_id=a.line_id, beneficiary_id=a.beneficiary_id,
        buyer_id=a.buyer_id, level=a.level, base_fen=a.base_fen, quantity=a.quantity, rate_bp=a.rate_bp,
        fixed_fen_per_unit=a.fixed_fen_per_unit, amount_fen=a.amount_fen, plan_version=a.plan_version,
        tier=a.tier, unfreeze=a.unfreeze, paid_at=a.paid_at,
    )
    [rec] = batch.emitted
    _check(rec, out, payload, eid, cause)
    pid, d = delta_of(payload.event_type, payload)
    assert led.deltas.items() == {pid: d}


@settings(max_examples=200, deadline=None)
@given(texts, st.none() | texts, ids, levels, texts, causes(), st.uuids())
def test_skipped_bytes_are_what_new_event_builds(order_id, line_id, beneficiary_id, level, reason, cause, eid):
    batch = Batch(events=[])
    out = _Outgoing(batch)
    out.skipped(Skip(order_id, line_id, beneficiary_id, level, reason), eid, cause)
    out.finish()
    payload = CommissionAccrualSkipped(order_id=order_id, line_id=line_id, beneficiary_id=beneficiary_id, level=level,
                                       reason=reason)
    _check(batch.emitted[0], out, payload, eid, cause)


@settings(max_examples=100, deadline=None)
@given(ids, texts, fen, st.sampled_from(["frozen", "settled"]), times, causes(), st.uuids())
def test_model_events_bytes_are_what_new_event_builds(pid, text, amount, from_status, at, cause, eid):
    for payload in (
        CommissionReversed(accrual_id=text, order_id=text, line_id=text, beneficiary_id=pid, out_refund_no=text,
                           amount_fen=amount, from_status=from_status, reversed_at=at),
        CommissionSettled(accrual_id=text, order_id=text, beneficiary_id=pid, amount_fen=amount, settled_at=at),
        PromoterTierChanged(promoter_id=pid, from_tier=text, to_tier=text, rule=text, effective_at=at),
    ):
        batch = Batch(events=[])
        out = _Outgoing(batch)
        out.add(payload, eid, cause)
        out.finish()
        _check(batch.emitted[0], out, payload, eid, cause)


def test_a_cause_without_correlation_correlates_to_itself():
    batch = Batch(events=[])
    out = _Outgoing(batch)
    cause = new_event(CommissionSettled(accrual_id="a", order_id="o", beneficiary_id="b", amount_fen=1,
                                        settled_at=datetime(2026, 1, 1, tzinfo=timezone.utc)))
    out.skipped(Skip("o", None, "b", "level2", "suspended"), uuid.uuid4(), cause)
    out.finish()
    got = Envelope.from_bytes(batch.emitted[0].value)
    assert got.causation_id == cause.event_id and got.correlation_id == cause.correlation_id


@settings(max_examples=300, deadline=None)
@given(st.uuids(), st.lists(st.one_of(texts, st.integers(-10**9, 10**9)), max_size=4))
def test_fast_derived_ids_are_derive_event_id(cause_id, parts):
    from services.commission.handlers.projection import _derive
    from shared.events import derive_event_id

    got = _derive(str(cause_id), *parts)
    want = derive_event_id(cause_id, *parts)
    assert got == want and str(got) == str(want) and got.version == 5


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["accrued", "skipped", "settled"]), accruals()), max_size=12), causes())
def test_finish_keeps_the_recording_order_and_runs_once(kinds, cause):
    """What the outbox gets (and so the log's order per key) is the order the events were recorded,
    whichever kind; a second finish() adds nothing."""
    batch = Batch(events=[])
    out = _Outgoing(batch)
    led = _ledger()
    want = []
    for i, (kind, a) in enumerate(kinds):
        eid = uuid.UUID(int=i + 1)
        if kind == "accrued":
            out.accrued(led, a, eid, cause)
        elif kind == "skipped":
            out.skipped(Skip(a.order_id, a.line_id, a.beneficiary_id, a.level, "suspended"), eid, cause)
        else:
            out.money(led, CommissionSettled(accrual_id=a.accrual_id, order_id=a.order_id, beneficiary_id=a.beneficiary_id,
                                             amount_fen=a.amount_fen, settled_at=a.paid_at), eid, cause)
        want.append(eid)
    out.finish()
    out.finish()
    assert [r.event_id for r in batch.emitted] == want
