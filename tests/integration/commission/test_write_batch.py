"""The batch write (store.write_batch) on real PostgreSQL: the rows read back equal the domain's
values, field by field, for random batches (None fields, timestamps with microseconds in any
zone, text that would need quoting, refunds and settlements within the batch), and a second
batch adds to the record buckets and balances and keeps the earliest first purchase."""
from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from services.commission.domain.accrual import Accrual
from services.commission.domain.balance import COLUMNS, Delta, Deltas
from services.commission.domain.ledger import AccrualState
from services.commission.main import MIGRATIONS
from services.commission.store import state as store
from tests.conftest import migrated

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=timezone.utc)
CST = timezone(timedelta(hours=8))
ODD_TEXT = ['sku-"quoted"', "sku-(paren),comma", "sku-\\back", "sku-商品", "sku-plain", ""]


def _at(rng: random.Random) -> datetime:
    t = T0 + timedelta(seconds=rng.randrange(30 * 86400), microseconds=rng.randrange(1, 10**6))
    return t.astimezone(CST) if rng.random() < 0.5 else t


def random_batch(rng: random.Random, n_orders: int, tag: str):
    """write_batch's arguments for `n_orders` random orders (order ids unique per `tag`;
    promoters and buyers shared between tags, so that batches meet on the same rows)."""
    orders, accruals, skips, buckets, firsts, deltas = [], [], [], {}, {}, Deltas()
    promoters = [f"p-{i}" for i in range(12)]
    for o in range(n_orders):
        oid, buyer, paid = f"o-{tag}-{o}", f"c-{rng.randrange(8)}", _at(rng)
        orders.append((oid, buyer, paid))
        for ln in range(rng.randint(1, 3)):
            for level in ("level1", "level2", "self_purchase"):
                ben = rng.choice(promoters)
                if rng.random() < 0.15:
                    skips.append((oid, rng.choice([f"l{ln}", None]), ben, level, rng.choice(["not_active", "原因"]), paid))
                    continue
                pct, base = rng.random() < 0.6, rng.randrange(1, 10**9)
                amount = rng.randrange(0, 10**6)
                acc = Accrual(f"{oid}:l{ln}:{level}", oid, f"l{ln}", level, ben, buyer, rng.choice(ODD_TEXT), base,
                              rng.randint(1, 99), rng.randrange(1, 3000) if pct else None,
                              None if pct else rng.randrange(1, 500), amount, rng.randint(1, 9),
                              rng.choice(["standard", "金牌", "a,b"]), rng.randint(0, 15),
                              rng.choice(["on_completion", "after_days"]), paid,
                              rng.choice(["commission", "management_bonus"]))
                refunded, settled = rng.random() < 0.3, rng.random() < 0.3
                st = AccrualState(acc.accrual_id, oid, acc.line_id, level, ben, base, amount,
                                  reversed_fen=rng.randrange(0, amount + 1) if refunded else 0,
                                  line_refunded_fen=rng.randrange(0, base + 1) if refunded else 0,
                                  settled_fen=rng.randrange(0, amount + 1) if settled else None,
                                  settled_at=_at(rng) if settled else None,
                                  freeze_days=acc.freeze_days, new=True, dirty=True, accrual=acc)
                accruals.append((st, uuid.UUID(int=rng.getrandbits(128))))
                deltas.add(ben, Delta(*(rng.randrange(-10**6, 10**6) for _ in COLUMNS)))
                v = buckets.setdefault((ben, rng.randrange(-2, 4)), [0, 0])
                v[0] += rng.randint(0, 1)
                v[1] += rng.randrange(10**5)
                at = rng.choice([paid, _at(rng)])
                if (ben, buyer) not in firsts or at < firsts[(ben, buyer)]:
                    firsts[(ben, buyer)] = at
    return orders, accruals, skips, buckets, firsts, deltas


@pytest.fixture
async def conn(infra, fresh_schema):
    async with migrated(infra["db"], fresh_schema, MIGRATIONS) as c:
        yield c


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_rows_read_back_equal_the_domains_values(conn, seed):
    rng = random.Random(seed)
    batches = [random_batch(rng, n, f"{seed}{i}") for i, n in enumerate([40, 1, 25])]
    # and a batch with nothing but record buckets and balance deltas (a settlement batch)
    only = random_batch(rng, 5, f"{seed}x")
    batches.append(([], [], [], only[3], {}, only[5]))
    for b in batches:
        async with conn.transaction():
            await store.write_batch(conn, *b)

    want_orders = {o for b in batches for o in b[0]}
    got_orders = {tuple(r) for r in await conn.fetch("SELECT order_id, buyer_id, paid_at FROM paid_orders")}
    assert got_orders == want_orders and len(want_orders) == sum(len(b[0]) for b in batches)

    want_accruals = {}
    for b in batches:
        for st, eid in b[1]:
            a = st.accrual
            want_accruals[a.accrual_id] = {
                **{f: getattr(a, f) for f in store.ACCRUAL_COLUMNS if f in a._fields},
                "reversed_fen": st.reversed_fen, "line_refunded_fen": st.line_refunded_fen,
                "settled_fen": st.settled_fen, "settled_at": st.settled_at, "event_id": eid}
    rows = await conn.fetch(f"SELECT {', '.join(store.ACCRUAL_COLUMNS)} FROM accruals")
    got_accruals = {r["accrual_id"]: dict(r) for r in rows}
    assert len(rows) == len(want_accruals)
    assert got_accruals == want_accruals
    assert any(a["rate_bp"] is None for a in got_accruals.values())
    assert any(a["settled_at"] is not None and a["reversed_fen"] for a in got_accruals.values())

    want_skips = Counter(s for b in batches for s in b[2])
    got_skips = Counter(tuple(r) for r in await conn.fetch(
        "SELECT order_id, line_id, beneficiary_id, level, reason, paid_at FROM accrual_skips"))
    assert got_skips == want_skips and any(s[1] is None for s in want_skips)

    want_buckets: Counter = Counter()
    want_firsts: dict[tuple[str, str], datetime] = {}
    want_balances: dict[str, list[int]] = {}
    for b in batches:
        for k, (orders, sales) in b[3].items():
            want_buckets[(*k, "orders")] += orders
            want_buckets[(*k, "sales")] += sales
        for k, at in b[4].items():
            want_firsts[k] = min(at, want_firsts.get(k, at))
        for pid, *cols in b[5].rows():
            want_balances[pid] = [x + y for x, y in zip(want_balances.get(pid, [0] * 5), cols)]
    got_buckets: Counter = Counter()
    for r in await conn.fetch("SELECT promoter_id, bucket, orders, settled_sales_fen FROM promoter_record_buckets"):
        got_buckets[(r[0], r[1], "orders")] += r[2]
        got_buckets[(r[0], r[1], "sales")] += r[3]
    assert +got_buckets == +want_buckets
    got_firsts = {(r[0], r[1]): r[2] for r in await conn.fetch(
        "SELECT promoter_id, buyer_id, first_paid_at FROM direct_buyers")}
    assert got_firsts == want_firsts
    got_balances = {r[0]: list(r[1:]) for r in await conn.fetch(
        f"SELECT promoter_id, {', '.join(COLUMNS)} FROM balances")}
    assert got_balances == want_balances


def test_accrual_rows_follow_the_accrual_tuple():
    """The accrual_row type takes an Accrual's fields in their order (write_batch passes the
    tuple as it is), then the lifecycle columns and the event id."""
    sql = (MIGRATIONS / "0005_write_batch_row_types.sql").read_text()
    body = sql[sql.index("CREATE TYPE accrual_row AS ("):]
    body = body[body.index("(") + 1:body.index(");")]
    names = [f.split()[0] for f in body.replace("\n", " ").split(",")]
    assert names == [*Accrual._fields, "reversed_fen", "line_refunded_fen", "settled_fen", "settled_at", "event_id"]
