"""Plan simulator: replay a period of real events under a draft plan before publishing it.

The source events of the log (the same ones the re-deriving audit reads: referral, orders, the
published plans, payout) are folded twice through the domain `Ledger`: once with the plan
versions really in force, once with the draft in force from the start of the period (versions
published before it stay in force before it; versions published inside the period are replaced by
the draft). The cost of the orders paid in [from, to), net of their refunds up to `to`, is compared
per promoter, per product and per tier (the tier the accrual was paid at), with totals.

Nothing is published and no live table is read: the draft is validated with the same rules as
`PUT /v1/admin/plan` (`parse_plan`), so a draft that could not be published cannot be simulated."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from aiokafka import TopicPartition

import shared.contracts  # noqa: F401  (registers every event type)
from services.commission.audit.rederive import Derived, Published, Source, derive, read_source
from services.commission.domain.ledger import PlanBook
from services.commission.domain.plan import Plan
from shared import logread
from shared.topics import COMMISSION_EVENTS, ORDER_EVENTS, PAYOUT_EVENTS, REFERRAL_EVENTS

DRAFT_VERSION = 10**9  # a version no real plan has


async def origin_of(dsn: str, schema: str) -> dict[TopicPartition, int]:
    """Where a commission schema's log starts (`replay_origin`: tests start schemas mid-topic on
    shared topics; empty in production, where the log starts at its beginning)."""
    import asyncpg

    from shared.db import check_schema

    try:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": check_schema(schema)})
    except (OSError, asyncpg.PostgresError):
        return {}
    try:
        rows = await conn.fetch("SELECT topic, partition, from_offset FROM replay_origin")
    except asyncpg.UndefinedTableError:
        rows = []
    finally:
        await conn.close()
    return {TopicPartition(r["topic"], r["partition"]): r["from_offset"] for r in rows}


async def load_source(bootstrap: str, *, until: datetime | None = None, progress: bool = False,
                      published: Published | None = None, origin: dict[TopicPartition, int] | None = None) -> Source:
    """The source events of the whole retained log, from `origin` where given (order events
    recorded before `until`); with `published`, commission's money events are collected into it too."""
    topics = [REFERRAL_EVENTS, ORDER_EVENTS, COMMISSION_EVENTS, PAYOUT_EVENTS]
    parts = await logread.partitions_of(bootstrap, topics)
    tps = [TopicPartition(t, p) for t in topics for p in parts.get(t, [])]
    begin, end = await logread.offsets(bootstrap, tps)
    src = Source()
    origin = origin or {}
    await read_source(bootstrap, {tp: (max(begin[tp], origin.get(tp, 0)), end[tp]) for tp in tps}, src,
                      until=until, published=published, progress=progress)
    return src


@dataclass
class Row:
    current_fen: int = 0
    draft_fen: int = 0

    @property
    def difference_fen(self) -> int:
        return self.draft_fen - self.current_fen


@dataclass
class Simulation:
    period: tuple[datetime, datetime]
    orders: int = 0
    total: Row = field(default_factory=Row)
    by: dict[str, dict[str, Row]] = field(default_factory=lambda: {"promoter": {}, "product": {}, "tier": {}})

    def as_json(self, top: int | None = None) -> dict[str, Any]:
        def rows(d: dict[str, Row]) -> list[dict[str, Any]]:
            items = sorted(d.items(), key=lambda kv: (-abs(kv[1].difference_fen), kv[0]))
            return [{"key": k, "current_fen": r.current_fen, "draft_fen": r.draft_fen, "difference_fen": r.difference_fen}
                    for k, r in (items[:top] if top else items)]

        return {"from": self.period[0].isoformat(), "to": self.period[1].isoformat(), "orders": self.orders,
                "total": {"current_fen": self.total.current_fen, "draft_fen": self.total.draft_fen,
                          "difference_fen": self.total.difference_fen},
                "by_promoter": rows(self.by["promoter"]), "by_product": rows(self.by["product"]), "by_tier": rows(self.by["tier"])}


def draft_book(real: PlanBook, draft: Plan, start: datetime) -> PlanBook:
    """The real versions published before `start`, then the draft from `start` on."""
    book = PlanBook()
    for at, version, plan in real.versions:
        if at < start:
            book.add(at, version, plan)
    book.add(start, DRAFT_VERSION, draft)
    return book


def _costs(d: Derived, start: datetime, end: datetime) -> dict[str, tuple[str, str, str, int]]:
    """accrual id -> (promoter, product, tier, net fen) for orders paid in [start, end)."""
    reversed_: dict[str, int] = {}
    for r in d.reversals.values():
        reversed_[r.accrual_id] = reversed_.get(r.accrual_id, 0) + r.amount_fen
    return {aid: (a.beneficiary_id, a.product_id, a.tier, a.amount_fen - reversed_.get(aid, 0))
            for aid, a in d.accruals.items() if start <= a.paid_at < end}


def simulate(src: Source, draft: Plan, start: datetime, end: datetime, *, tier_epoch: timedelta | None = None) -> Simulation:
    """Both folds and the comparison (pure; `src` is not changed). `tier_epoch`: the service's
    `COMMISSION_TIER_EPOCH_S` (tiers move at epoch boundaries)."""
    # the fold adds tier changes to the history: each run gets its own copy
    current = derive(replace(src, history=copy.deepcopy(src.history)), settle_until=end, tier_epoch=tier_epoch)
    drafted = derive(replace(src, history=copy.deepcopy(src.history), plans=draft_book(src.plans, draft, start)),
                     settle_until=end, tier_epoch=tier_epoch)
    sim = Simulation((start, end))
    sim.orders = sum(1 for t, _, env, p in src.orders if env.event_type == "OrderPaid" and start <= p.paid_at < end)
    for which, costs in (("current_fen", _costs(current, start, end)), ("draft_fen", _costs(drafted, start, end))):
        for promoter, product, tier, fen in costs.values():
            for dim, key in (("promoter", promoter), ("product", product), ("tier", tier)):
                row = sim.by[dim].setdefault(key, Row())
                setattr(row, which, getattr(row, which) + fen)
            setattr(sim.total, which, getattr(sim.total, which) + fen)
    return sim


def report(sim: Simulation, out: Any, top: int = 20) -> None:
    j = sim.as_json(top)
    t = j["total"]
    print(f"period {j['from']} .. {j['to']}: {j['orders']} paid orders", file=out)
    print(f"commission cost (net of refunds): current {t['current_fen']} fen, draft {t['draft_fen']} fen, "
          f"difference {t['difference_fen']:+d} fen", file=out)
    for dim in ("by_tier", "by_product", "by_promoter"):
        print(f"{dim.replace('_', ' ')} (largest differences first):", file=out)
        for r in j[dim]:
            print(f"  {r['key']}: current {r['current_fen']}, draft {r['draft_fen']}, difference {r['difference_fen']:+d}",
                  file=out)
