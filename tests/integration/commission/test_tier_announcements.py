"""Tier announcements cost a constant number of statements per batch: at an epoch boundary in a
sale, hundreds of promoters can step up in one batch, and their records are read in one
statement (`store.record_histories`), not two per promoter."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.commission.domain.plan import Plan
from services.commission.domain.tiers import epoch_start
from services.commission.handlers.projection import CommissionProjection, _Outgoing
from services.commission.main import MIGRATIONS
from services.commission.store import state as store
from shared.projector import Batch
from tests.conftest import migrated, statements_of

pytestmark = pytest.mark.integration

EPOCH = timedelta(hours=1)
PLAN = Plan.model_validate({
    "levels": 2, "cap_bp": 3000, "freeze_days": 0,
    "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 300, "self_purchase_bp": 500},
              {"name": "partner", "level1_bp": 1500, "level2_bp": 500, "self_purchase_bp": 800,
               "upgrade": {"min_orders": 3}}],
})


async def _seed(conn: asyncpg.Connection, rnd: random.Random, promoters: list[str], base: datetime
                ) -> tuple[dict[str, list[tuple[int, int, int]]], dict[str, list[datetime | None]]]:
    """Random buckets and direct buyers (some without a first purchase, rows written before it was kept)."""
    buckets: dict[str, list[tuple[int, int, int]]] = {}
    firsts: dict[str, list[datetime | None]] = {}
    for p in promoters:
        for b in rnd.sample(range(100, 110), rnd.randrange(0, 6)):
            buckets.setdefault(p, []).append((b, rnd.randrange(0, 9), rnd.randrange(0, 50_000)))
        for j in range(rnd.randrange(0, 5)):
            firsts.setdefault(p, []).append(
                None if rnd.random() < 0.2 else base + timedelta(minutes=rnd.randrange(0, 600)))
    rows = [(p, b, o, s) for p, bs in buckets.items() for b, o, s in bs]
    await conn.executemany("INSERT INTO promoter_record_buckets VALUES ($1, $2, $3, $4)", rows)
    await conn.executemany("INSERT INTO direct_buyers (promoter_id, buyer_id, first_paid_at) VALUES ($1, $2, $3)",
                           [(p, f"{p}-buyer{j}", t) for p, ts in firsts.items() for j, t in enumerate(ts)])
    return buckets, firsts


async def test_record_histories_answers_each_key_as_asked(infra, fresh_schema):
    """For random records, each (promoter, epoch, start) gets exactly its buckets before the
    epoch and its buyers first seen by the start, in the order asked, repeats included."""
    rnd = random.Random(7)
    base = epoch_start(100, EPOCH)
    async with migrated(infra["db"], fresh_schema, MIGRATIONS) as conn:
        promoters = [f"p{i}" for i in range(40)]
        buckets, firsts = await _seed(conn, rnd, promoters, base)
        keys = []
        for _ in range(60):
            e = rnd.randrange(100, 111)
            keys.append((rnd.choice(promoters + ["nobody"]), e, epoch_start(e, EPOCH)))
        got = await store.record_histories(conn, keys)
        assert len(got) == len(keys)
        for (p, e, start), (bs, fs) in zip(keys, got):
            assert sorted(bs) == sorted(b for b in buckets.get(p, []) if b[0] < e)
            want = [t for t in firsts.get(p, []) if t is None or t <= start]
            assert sorted(fs, key=lambda t: (t is not None, t)) == sorted(want, key=lambda t: (t is not None, t))
        assert await store.record_histories(conn, []) == []


async def test_announcing_many_tier_steps_takes_as_many_statements_as_one(infra, fresh_schema):
    """`_announce_tiers` with 1 and with 150 promoters stepping up: the same statements, and every
    promoter's PromoterTierChanged effective from the epoch after the one its record reached."""
    async with migrated(infra["db"], fresh_schema, MIGRATIONS) as conn:
        counts = []
        # the first run warms the connection's statement cache (its type lookups are statements too)
        for run, n in enumerate((1, 1, 150)):
            promoters = [f"r{run}-p{i}" for i in range(n)]
            # three orders in epoch 100 (the rule: min_orders 3) -> partner from the start of epoch 101
            await conn.executemany("INSERT INTO promoter_record_buckets VALUES ($1, 100, 3, 0)", [(p,) for p in promoters])
            proj = CommissionProjection(emit=True, tier_epoch=EPOCH)
            proj._pending_tiers = [(p, 102, PLAN, "partner") for p in promoters]  # noqa: SLF001
            batch = Batch(events=[])
            out = _Outgoing(batch, datetime(2026, 12, 3, tzinfo=timezone.utc))
            with statements_of(conn) as statements:
                async with conn.transaction():
                    await proj._announce_tiers(conn, out)  # noqa: SLF001
            out.finish()
            counts.append(len(statements))
            rows = await conn.fetch("SELECT promoter_id, from_tier, to_tier, effective_at FROM tier_changes "
                                    "WHERE promoter_id = ANY($1::text[])", promoters)
            assert {r["promoter_id"] for r in rows} == set(promoters)
            assert {(r["from_tier"], r["to_tier"], r["effective_at"]) for r in rows} == {
                ("sharer", "partner", epoch_start(101, EPOCH))}
            assert len(batch.emitted) == n
        assert counts[1] == counts[2], counts
