"""Time travel: one promoter's balance and commission records as of any past instant, from the log.

Commission's money events and payout's withdrawals are keyed by the promoter, so all of one
promoter's events sit on one partition of each topic (the one the producer's partitioner picks
for the key). Those two partitions are read from their earliest record; the promoter's events
recorded at or before the instant (the envelope's `occurred_at`: when the service recorded it,
i.e. what it showed at that moment) are folded with the balance algebra (`delta_of`), and each
accrual's life (reversed so far, settled) is rebuilt. Nothing is read from the live tables."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from services.commission.domain.balance import COLUMNS, Deltas, delta_of
import shared.contracts  # noqa: F401  (registers every event type)
from shared import logread
from shared.events import Envelope, catalog
from shared.topics import COMMISSION_EVENTS, PAYOUT_EVENTS

MONEY = frozenset({"CommissionAccrued", "CommissionReversed", "CommissionSettled", "WithdrawalRequested",
                   "WithdrawalRejected", "WithdrawalReleased", "WithdrawalPaid"})


@dataclass
class AsOf:
    promoter_id: str
    at: datetime
    balance: dict[str, int]
    records: list[dict[str, Any]]
    events: int
    withdrawals: list[dict[str, Any]] = field(default_factory=list)


def fold(promoter_id: str, at: datetime, events: list[tuple[Envelope, Any]]) -> AsOf:
    """The promoter's balance and records from their events (pure). Events after `at` are ignored;
    an event id is folded once."""
    acc = Deltas()
    records: dict[str, dict[str, Any]] = {}
    withdrawals: dict[str, dict[str, Any]] = {}
    seen: set[uuid.UUID] = set()
    n = 0
    for env, p in sorted(events, key=lambda e: e[0].occurred_at):
        if env.occurred_at > at or env.event_id in seen:
            continue
        seen.add(env.event_id)
        found = delta_of(env.event_type, p)
        if found is None or found[0] != promoter_id:
            continue
        n += 1
        acc.add(*found)
        et = env.event_type
        if et == "CommissionAccrued":
            records[p.accrual_id] = {
                "accrual_id": p.accrual_id, "order_id": p.order_id, "line_id": p.line_id, "level": p.level,
                "buyer_id": p.buyer_id, "base_fen": p.base_fen, "quantity": p.quantity, "rate_bp": p.rate_bp,
                "fixed_fen_per_unit": p.fixed_fen_per_unit, "amount_fen": p.amount_fen, "reversed_fen": 0,
                "settled_fen": None, "settled_at": None, "plan_version": p.plan_version, "tier": p.tier,
                "paid_at": p.paid_at, "recorded_at": env.occurred_at, "kind": getattr(p, "kind", "commission")}
        elif et == "CommissionReversed" and p.accrual_id in records:
            records[p.accrual_id]["reversed_fen"] += p.amount_fen
        elif et == "CommissionSettled" and p.accrual_id in records:
            records[p.accrual_id]["settled_fen"] = p.amount_fen
            records[p.accrual_id]["settled_at"] = p.settled_at
        elif et.startswith("Withdrawal"):
            w = withdrawals.setdefault(p.withdrawal_id, {"withdrawal_id": p.withdrawal_id, "amount_fen": p.amount_fen})
            w["status"] = et.removeprefix("Withdrawal").lower()
            w["at"] = env.occurred_at
    for r in records.values():
        r["net_fen"] = r["amount_fen"] - r["reversed_fen"]
        r["status"] = ("reversed" if r["reversed_fen"] >= r["amount_fen"]
                       else "settled" if r["settled_at"] is not None else "frozen")
    totals = acc.items().get(promoter_id)
    balance = dict(zip(COLUMNS, totals.as_tuple() if totals is not None else (0,) * len(COLUMNS)))
    ordered = sorted(records.values(), key=lambda r: (r["paid_at"], r["accrual_id"]), reverse=True)
    return AsOf(promoter_id, at, balance, ordered, n, list(withdrawals.values()))


async def as_of(bootstrap: str, promoter_id: str, at: datetime, *, progress: bool = False) -> AsOf:
    """Read the promoter's partitions of the commission and payout topics and fold them up to `at`."""
    key = promoter_id.encode()
    parts = await logread.partitions_of(bootstrap, [COMMISSION_EVENTS, PAYOUT_EVENTS])
    partitioner = DefaultPartitioner()
    tps = []
    for topic in (COMMISSION_EVENTS, PAYOUT_EVENTS):
        ps = parts.get(topic) or []
        if ps:
            tps.append(TopicPartition(topic, partitioner(key, ps, ps)))
    begin, end = await logread.offsets(bootstrap, tps)
    events: list[tuple[Envelope, Any]] = []

    def on_record(tp: TopicPartition, r: Any) -> None:
        if r.key != key:
            return
        et = logread.header(r, "event_type")
        if et is not None and et not in MONEY:
            return
        try:
            env = Envelope.from_bytes(r.value)
            if env.event_type not in MONEY or env.occurred_at > at:
                return
            events.append((env, catalog.payload(env)))
        except Exception:
            return  # unparseable: not part of anyone's balance (the services dead-letter it)

    await logread.read(bootstrap, {tp: (begin[tp], end[tp]) for tp in tps}, on_record, progress=progress, desc="as-of")
    return fold(promoter_id, at, events)


def as_json(r: AsOf) -> dict[str, Any]:
    def iso(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else v

    return {"promoter_id": r.promoter_id, "at": r.at.isoformat(), "balance": r.balance, "events": r.events,
            "records": [{k: iso(v) for k, v in rec.items()} for rec in r.records],
            "withdrawals": [{k: iso(v) for k, v in w.items()} for w in r.withdrawals]}
