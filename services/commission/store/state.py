"""Loads and writes of the projection's state, batch-sized: every function takes whole lists and
makes one round trip (`= ANY($1)`, unnest, or COPY)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Iterable, Sequence

import asyncpg

from services.commission.domain.accrual import Accrual
from services.commission.domain.balance import Deltas
from services.commission.domain.ledger import AccrualState, Due, TierChange
from services.commission.domain.tiers import PromoterRecord


# -- plans ------------------------------------------------------------------------------------
async def insert_plan(conn: asyncpg.Connection, version: int, plan: dict[str, Any], published_by: str,
                      published_at: datetime, event_id: uuid.UUID) -> bool:
    """Store a plan version; False when that version is already there."""
    r = await conn.fetchval(
        """INSERT INTO plans (plan_version, plan, published_by, published_at, event_id) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (plan_version) DO NOTHING RETURNING 1""",
        version, json.dumps(plan), published_by, published_at, event_id)
    return r is not None


async def plan_count(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM plans")


async def plan_versions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT plan_version, published_at FROM plans ORDER BY published_at, plan_version")


async def plans_by_version(conn: asyncpg.Connection, versions: Sequence[int]) -> dict[int, dict[str, Any]]:
    rows = await conn.fetch("SELECT plan_version, plan FROM plans WHERE plan_version = ANY($1::int[])", list(versions))
    return {r["plan_version"]: json.loads(r["plan"]) for r in rows}


async def latest_plan(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT plan_version, plan, published_by, published_at FROM plans ORDER BY plan_version DESC LIMIT 1")


# -- referral copies --------------------------------------------------------------------------
async def lock_reference(conn: asyncpg.Connection) -> None:
    """Serialise writers of the reference rows until commit, so that their seq order is their
    commit order (readers follow them by seq)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.commission_reference'))")


async def reference_rows_since(conn: asyncpg.Connection, binding_seq: int, status_seq: int) -> list[asyncpg.Record]:
    """Bindings and statuses committed after these seqs, in one round trip."""
    return await conn.fetch(
        """SELECT 'b' AS kind, seq, customer_id AS who, promoter_id, bound_at AS at, NULL::text AS status,
                  NULL::timestamptz AS until FROM bindings WHERE seq > $1
           UNION ALL
           SELECT 's', seq, promoter_id, NULL, changed_at, status, until FROM promoter_statuses WHERE seq > $2""",
        binding_seq, status_seq)


async def insert_statuses(conn: asyncpg.Connection, rows: list[tuple[str, str, datetime | None, datetime, str | None, uuid.UUID]]) -> None:
    """(promoter_id, status, until, changed_at, reason, event_id) rows."""
    if not rows:
        return
    cols = list(zip(*rows))
    await conn.execute(
        """INSERT INTO promoter_statuses (promoter_id, status, until, changed_at, reason, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::uuid[])
           ON CONFLICT (event_id) DO NOTHING""", *[list(c) for c in cols])


async def insert_bindings(conn: asyncpg.Connection, rows: list[tuple[str, str, datetime, uuid.UUID]]) -> None:
    """(customer_id, promoter_id, bound_at, event_id) rows."""
    if not rows:
        return
    cols = list(zip(*rows))
    await conn.execute(
        """INSERT INTO bindings (customer_id, promoter_id, bound_at, event_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[])
           ON CONFLICT (event_id) DO NOTHING""", *[list(c) for c in cols])


async def stream_positions(conn: asyncpg.Connection, reference: str, referral_topic: str, orders: str,
                           order_topic: str) -> list[asyncpg.Record]:
    """Where the reference projection is in the referral partitions and the order workers in the
    order partitions (stored positions and event-time watermarks, whoever applied them), and the
    earliest payment held back per order partition."""
    return await conn.fetch(
        """SELECT o.projection, o.partition, o.next_offset, w.occurred_at,
                  CASE WHEN o.projection = $3 THEN (SELECT min(d.paid_at) FROM deferred_order_events d
                                                    WHERE d.partition = o.partition AND d.paid_at IS NOT NULL) END AS held_from
           FROM projector_offsets o LEFT JOIN stream_watermarks w ON w.topic = o.topic AND w.partition = o.partition
           WHERE (o.projection = $1 AND o.topic = $2) OR (o.projection = $3 AND o.topic = $4)""",
        reference, referral_topic, orders, order_topic)


async def batch_context(conn: asyncpg.Connection, marks: list[tuple[str, int, datetime]], reference: str,
                        referral_topic: str, orders: str, order_topic: str, binding_seq: int, status_seq: int,
                        order_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Everything an order batch reads before deciding, in one round trip (one snapshot): it
    raises this batch's order-partition watermarks, and returns rows by `kind`:
    'p' stream positions (a=projection, n1=partition, n2=next offset, t1=watermark, t2=earliest
    held payment), 'b' bindings after `binding_seq` (a=customer, b=promoter, n1=seq, t1=bound_at),
    's' statuses after `status_seq` (a=promoter, c=status, n1=seq, t1=changed_at, t2=until),
    'n' the number of plan versions (n1), 'k' the orders among `order_ids` already decided (a)."""
    cols = list(zip(*marks)) if marks else [(), (), ()]
    return await conn.fetch(
        """WITH w AS (
               INSERT INTO stream_watermarks AS w (topic, partition, occurred_at)
               SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[])
               ON CONFLICT (topic, partition) DO UPDATE SET occurred_at = greatest(w.occurred_at, EXCLUDED.occurred_at))
           SELECT 'p' AS kind, o.projection AS a, NULL::text AS b, NULL::text AS c, o.partition::bigint AS n1,
                  o.next_offset AS n2, m.occurred_at AS t1,
                  CASE WHEN o.projection = $6 THEN (SELECT min(d.paid_at) FROM deferred_order_events d
                                                    WHERE d.partition = o.partition AND d.paid_at IS NOT NULL) END AS t2
           FROM projector_offsets o LEFT JOIN stream_watermarks m ON m.topic = o.topic AND m.partition = o.partition
           WHERE (o.projection = $4 AND o.topic = $5) OR (o.projection = $6 AND o.topic = $7)
           UNION ALL
           SELECT 'b', customer_id, promoter_id, NULL, seq, NULL, bound_at, NULL FROM bindings WHERE seq > $8
           UNION ALL
           SELECT 's', promoter_id, NULL, status, seq, NULL, changed_at, until FROM promoter_statuses WHERE seq > $9
           UNION ALL
           SELECT 'n', NULL, NULL, NULL, count(*), NULL, NULL, NULL FROM plans
           UNION ALL
           SELECT 'k', order_id, NULL, NULL, NULL, NULL, NULL, NULL FROM paid_orders WHERE order_id = ANY($10::text[])""",
        list(cols[0]), list(cols[1]), list(cols[2]), reference, referral_topic, orders, order_topic, binding_seq,
        status_seq, list(order_ids))


async def record_late_bindings(conn: asyncpg.Connection, rows: list[tuple[str, str, datetime]]) -> int:
    """Bindings (customer, promoter, bound_at) that arrive after an order of that customer paid at
    or after bound_at was already accrued without them: kept for operators. Returns how many."""
    if not rows:
        return 0
    cols = list(zip(*rows))
    found = await conn.fetch(
        """INSERT INTO late_bindings (customer_id, promoter_id, bound_at, order_id, paid_at)
           SELECT b.c, b.p, b.t, o.order_id, o.paid_at
           FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS b(c, p, t)
           JOIN paid_orders o ON o.buyer_id = b.c AND o.paid_at >= b.t
           RETURNING order_id""", *[list(c) for c in cols])
    return len(found)


async def load_bindings(conn: asyncpg.Connection, customers: Iterable[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT customer_id, promoter_id, bound_at, seq FROM bindings WHERE customer_id = ANY($1::text[])", list(customers))


async def load_statuses(conn: asyncpg.Connection, promoters: Iterable[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT promoter_id, status, until, changed_at, seq FROM promoter_statuses WHERE promoter_id = ANY($1::text[])",
        list(promoters))


async def load_tiers(conn: asyncpg.Connection, promoters: Iterable[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT promoter_id, to_tier, effective_at, seq FROM tier_changes WHERE promoter_id = ANY($1::text[])", list(promoters))


# -- orders and accruals ----------------------------------------------------------------------
async def known_orders(conn: asyncpg.Connection, order_ids: Iterable[str]) -> set[str]:
    rows = await conn.fetch("SELECT order_id FROM paid_orders WHERE order_id = ANY($1::text[])", list(order_ids))
    return {r["order_id"] for r in rows}


async def load_accruals(conn: asyncpg.Connection, order_ids: Sequence[str], accrual_ids: Sequence[str]) -> list[AccrualState]:
    """The lifecycle of the accruals of these orders (and these accrual ids), locked for this
    transaction in a fixed order (the settlement scheduler skips locked rows)."""
    if not order_ids and not accrual_ids:
        return []
    rows = await conn.fetch(
        """SELECT a.accrual_id, a.order_id, a.line_id, a.level, a.beneficiary_id, a.base_fen, a.amount_fen, a.reversed_fen,
                  a.line_refunded_fen, a.settled_fen, a.settled_at, a.freeze_days,
                  EXISTS (SELECT 1 FROM settlement_due d WHERE d.accrual_id = a.accrual_id) AS due
           FROM accruals a WHERE a.order_id = ANY($1::text[]) OR a.accrual_id = ANY($2::text[])
           ORDER BY a.accrual_id FOR UPDATE OF a""", list(order_ids), list(accrual_ids))
    return [AccrualState(r["accrual_id"], r["order_id"], r["line_id"], r["level"], r["beneficiary_id"], r["base_fen"],
                         r["amount_fen"], r["reversed_fen"], r["line_refunded_fen"], r["settled_fen"], r["settled_at"],
                         r["freeze_days"], r["due"]) for r in rows]


async def refunds_seen(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    rows = await conn.fetch(
        """SELECT r.order_id, r.out_refund_no FROM refunds_applied r
           JOIN unnest($1::text[], $2::text[]) AS k(o, n) ON r.order_id = k.o AND r.out_refund_no = k.n""",
        [k[0] for k in keys], [k[1] for k in keys])
    return {(r["order_id"], r["out_refund_no"]) for r in rows}


async def load_records(conn: asyncpg.Connection, promoters: Iterable[str]) -> dict[str, PromoterRecord]:
    rows = await conn.fetch(
        "SELECT promoter_id, orders, direct_buyers, settled_sales_fen FROM promoter_records WHERE promoter_id = ANY($1::text[])",
        list(promoters))
    return {r["promoter_id"]: PromoterRecord(r["orders"], r["direct_buyers"], r["settled_sales_fen"]) for r in rows}


async def load_pairs(conn: asyncpg.Connection, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    if not pairs:
        return set()
    rows = await conn.fetch(
        """SELECT d.promoter_id, d.buyer_id FROM direct_buyers d
           JOIN unnest($1::text[], $2::text[]) AS k(p, b) ON d.promoter_id = k.p AND d.buyer_id = k.b""",
        [p[0] for p in pairs], [p[1] for p in pairs])
    return {(r["promoter_id"], r["buyer_id"]) for r in rows}


ACCRUAL_COLUMNS = [
    "accrual_id", "order_id", "line_id", "level", "beneficiary_id", "buyer_id", "product_id", "base_fen", "quantity",
    "rate_bp", "fixed_fen_per_unit", "amount_fen", "reversed_fen", "line_refunded_fen", "settled_fen", "settled_at",
    "plan_version", "tier", "freeze_days", "unfreeze", "paid_at", "event_id",
]

# The batch's rows go as one array per kind, each of a row type of migration 0005 (one array to
# encode instead of one per column, and the tuples as they are). `accrual_row` is an Accrual's
# fields in their order, then the end-of-batch lifecycle and the event id: the check below keeps
# the two in step.
_ACCRUAL_ROW_FIELDS = ("accrual_id", "order_id", "line_id", "level", "beneficiary_id", "buyer_id", "product_id",
                       "base_fen", "quantity", "rate_bp", "fixed_fen_per_unit", "amount_fen", "plan_version", "tier",
                       "freeze_days", "unfreeze", "paid_at", "kind")
if Accrual._fields != _ACCRUAL_ROW_FIELDS:  # pragma: no cover - a change of Accrual needs a new accrual_row
    raise ImportError(f"Accrual's fields {Accrual._fields} no longer match the accrual_row type")

# A batch's new rows, its record buckets and first purchases and its balance deltas in one
# statement (one round trip, whatever the batch holds; empty arrays insert nothing). Each step
# reads the previous one's RETURNING count, which makes PostgreSQL run them in this order:
# records before balances, the lock order every writer of these tables follows (the settlement
# scheduler writes through here too), and rows sorted by key within each step.
_WRITE_BATCH = f"""
WITH o AS (
    INSERT INTO paid_orders (order_id, buyer_id, paid_at)
    SELECT order_id, buyer_id, paid_at FROM unnest($1::paid_order_row[]) RETURNING 1
), a AS (
    INSERT INTO accruals ({", ".join(ACCRUAL_COLUMNS)})
    SELECT {", ".join(ACCRUAL_COLUMNS)} FROM unnest($2::accrual_row[]) RETURNING 1
), s AS (
    INSERT INTO accrual_skips (order_id, line_id, beneficiary_id, level, reason, paid_at)
    SELECT order_id, line_id, beneficiary_id, level, reason, paid_at FROM unnest($3::accrual_skip_row[]) RETURNING 1
), r AS (
    INSERT INTO promoter_record_buckets AS r (promoter_id, bucket, orders, settled_sales_fen)
    SELECT u.promoter_id, u.bucket, u.orders, u.settled_sales_fen FROM unnest($4::record_bucket_row[]) AS u
    WHERE (SELECT count(*) FROM o) + (SELECT count(*) FROM a) + (SELECT count(*) FROM s) >= 0
    ON CONFLICT (promoter_id, bucket) DO UPDATE SET orders = r.orders + EXCLUDED.orders,
        settled_sales_fen = r.settled_sales_fen + EXCLUDED.settled_sales_fen
    RETURNING 1
), f AS (
    INSERT INTO direct_buyers AS d (promoter_id, buyer_id, first_paid_at)
    SELECT u.promoter_id, u.buyer_id, u.first_paid_at FROM unnest($5::first_purchase_row[]) AS u
    WHERE (SELECT count(*) FROM r) >= 0
    ON CONFLICT (promoter_id, buyer_id) DO UPDATE SET first_paid_at = EXCLUDED.first_paid_at
    WHERE d.first_paid_at > EXCLUDED.first_paid_at
    RETURNING 1
), b AS (
    INSERT INTO balances (promoter_id, frozen_fen, available_fen, reserved_fen, withdrawn_fen, reversed_fen)
    SELECT u.promoter_id, u.frozen_fen, u.available_fen, u.reserved_fen, u.withdrawn_fen, u.reversed_fen
    FROM unnest($6::balance_delta_row[]) AS u
    WHERE (SELECT count(*) FROM f) >= 0
    ON CONFLICT (promoter_id) DO UPDATE SET
        frozen_fen = balances.frozen_fen + EXCLUDED.frozen_fen,
        available_fen = balances.available_fen + EXCLUDED.available_fen,
        reserved_fen = balances.reserved_fen + EXCLUDED.reserved_fen,
        withdrawn_fen = balances.withdrawn_fen + EXCLUDED.withdrawn_fen,
        reversed_fen = balances.reversed_fen + EXCLUDED.reversed_fen,
        updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM b)"""


async def write_batch(conn: asyncpg.Connection, orders: list[tuple[str, str, datetime]],
                      accruals: list[tuple[AccrualState, uuid.UUID]], skips: list[tuple],
                      buckets: dict[tuple[str, int], list[int]], firsts: dict[tuple[str, str], datetime],
                      batch_deltas: Deltas) -> None:
    """What a batch adds, in one round trip: paid orders (order_id, buyer_id, paid_at) tuples,
    new accruals (in their end-of-batch state, with their event ids), skips (order_id, line_id,
    beneficiary_id, level, reason, paid_at) tuples, (promoter, epoch) record buckets added to,
    first purchases per direct buyer (the earliest wins), and each promoter's summed balance delta
    (in promoter order)."""
    recs = []
    for st, event_id in accruals:
        a = st.accrual
        assert a is not None
        recs.append(a + (st.reversed_fen, st.line_refunded_fen, st.settled_fen, st.settled_at, event_id))
    await conn.fetchval(
        _WRITE_BATCH, orders, recs, skips,
        [(k[0], k[1], *buckets[k]) for k in sorted(buckets)],
        [k + (firsts[k],) for k in sorted(firsts)],
        batch_deltas.rows() if batch_deltas else [])


async def update_accruals(conn: asyncpg.Connection, states: list[AccrualState]) -> None:
    """Write back the lifecycle columns of existing accruals changed by this batch."""
    if not states:
        return
    await conn.execute(
        """UPDATE accruals a SET reversed_fen = u.rev, line_refunded_fen = u.ref,
                  settled_fen = COALESCE(a.settled_fen, u.sfen), settled_at = COALESCE(a.settled_at, u.sat)
           FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[]) AS u(id, rev, ref, sfen, sat)
           WHERE a.accrual_id = u.id""",
        [s.accrual_id for s in states], [s.reversed_fen for s in states], [s.line_refunded_fen for s in states],
        [s.settled_fen for s in states], [s.settled_at for s in states])


async def write_refunds_applied(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> None:
    if keys:
        await conn.execute(
            """INSERT INTO refunds_applied SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING""",
            [k[0] for k in keys], [k[1] for k in keys])


async def write_dues(conn: asyncpg.Connection, dues: list[Due]) -> None:
    if dues:
        await conn.execute(
            """INSERT INTO settlement_due (accrual_id, due_at, cause_event_id)
               SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::uuid[]) ON CONFLICT DO NOTHING""",
            [d.accrual_id for d in dues], [d.due_at for d in dues], [d.cause_event_id for d in dues])


async def delete_dues(conn: asyncpg.Connection, accrual_ids: list[str]) -> None:
    if accrual_ids:
        await conn.execute("DELETE FROM settlement_due WHERE accrual_id = ANY($1::text[])", accrual_ids)


async def write_tier_changes(conn: asyncpg.Connection, changes: list[TierChange]) -> None:
    if changes:
        await conn.execute(
            """INSERT INTO tier_changes (promoter_id, from_tier, to_tier, rule, effective_at)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])""",
            [c.promoter_id for c in changes], [c.from_tier for c in changes], [c.to_tier for c in changes],
            [c.rule for c in changes], [c.effective_at for c in changes])


async def write_records(conn: asyncpg.Connection, records: dict[str, PromoterRecord]) -> None:
    if not records:
        return
    ids = sorted(records)
    await conn.execute(
        """INSERT INTO promoter_records (promoter_id, orders, direct_buyers, settled_sales_fen)
           SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::bigint[])
           ON CONFLICT (promoter_id) DO UPDATE SET orders = EXCLUDED.orders, direct_buyers = EXCLUDED.direct_buyers,
               settled_sales_fen = EXCLUDED.settled_sales_fen""",
        ids, [records[i].orders for i in ids], [records[i].direct_buyers for i in ids],
        [records[i].settled_sales_fen for i in ids])


async def records_before(conn: asyncpg.Connection, promoters: list[str], epochs: list[int],
                         starts: list[datetime]) -> list[asyncpg.Record]:
    """Per (promoter, epoch): the record made of the contributions of the epochs before it, in
    the order asked."""
    return await conn.fetch(
        """SELECT k.i,
                  coalesce((SELECT sum(r.orders) FROM promoter_record_buckets r
                            WHERE r.promoter_id = k.p AND r.bucket < k.e), 0)::int AS orders,
                  coalesce((SELECT sum(r.settled_sales_fen) FROM promoter_record_buckets r
                            WHERE r.promoter_id = k.p AND r.bucket < k.e), 0)::bigint AS settled_sales_fen,
                  (SELECT count(*) FROM direct_buyers d
                   WHERE d.promoter_id = k.p AND (d.first_paid_at IS NULL OR d.first_paid_at <= k.s))::int AS direct_buyers
           FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) WITH ORDINALITY AS k(p, e, s, i)
           ORDER BY k.i""", promoters, epochs, starts)


async def record_histories(conn: asyncpg.Connection, keys: Sequence[tuple[str, int, datetime]]
                           ) -> list[tuple[list[tuple[int, int, int]], list[datetime | None]]]:
    """Per (promoter, epoch, epoch start), in the order asked: the promoter's contributions
    before the epoch as (bucket, orders, settled sales) rows, and the first purchase of each
    direct buyer up to the start. One statement however many are asked: at an epoch boundary in
    a sale, hundreds of promoters can step up in one batch."""
    out: list[tuple[list[tuple[int, int, int]], list[datetime | None]]] = [([], []) for _ in keys]
    if not keys:
        return out
    rows = await conn.fetch(
        """WITH k AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) WITH ORDINALITY AS k(p, e, s, i))
           SELECT k.i, r.bucket, r.orders, r.settled_sales_fen, NULL::timestamptz AS first_paid_at, false AS first
           FROM k JOIN promoter_record_buckets r ON r.promoter_id = k.p AND r.bucket < k.e
           UNION ALL
           SELECT k.i, NULL, NULL, NULL, d.first_paid_at, true
           FROM k JOIN direct_buyers d ON d.promoter_id = k.p AND (d.first_paid_at IS NULL OR d.first_paid_at <= k.s)""",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
    for i, bucket, orders, sales, first_paid_at, first in rows:
        buckets, firsts = out[i - 1]
        if first:
            firsts.append(first_paid_at)
        else:
            buckets.append((bucket, orders, sales))
    return out


async def insert_tier_changes(conn: asyncpg.Connection, changes: list[TierChange]) -> set[tuple[str, str]]:
    """Record tier changes once per promoter and tier; returns those recorded now."""
    if not changes:
        return set()
    rows = await conn.fetch(
        """INSERT INTO tier_changes (promoter_id, from_tier, to_tier, rule, effective_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
           ON CONFLICT (promoter_id, to_tier) DO NOTHING RETURNING promoter_id, to_tier""",
        [c.promoter_id for c in changes], [c.from_tier for c in changes], [c.to_tier for c in changes],
        [c.rule for c in changes], [c.effective_at for c in changes])
    return {(r["promoter_id"], r["to_tier"]) for r in rows}


async def write_pairs(conn: asyncpg.Connection, pairs: list[tuple[str, str]]) -> None:
    if pairs:
        await conn.execute(
            "INSERT INTO direct_buyers SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            [p[0] for p in pairs], [p[1] for p in pairs])


async def notify_due(conn: asyncpg.Connection, channel: str) -> None:
    """Wake the settlement scheduler when this transaction commits (NOTIFY is transactional)."""
    await conn.execute("SELECT pg_notify($1, '')", channel)


# -- the cross-topic ordering guard -----------------------------------------------------------
async def advance_watermarks(conn: asyncpg.Connection, rows: list[tuple[str, int, datetime]]) -> None:
    """Raise the per-partition event-time watermarks."""
    if rows:
        cols = list(zip(*rows))
        await conn.execute(
            """INSERT INTO stream_watermarks AS w (topic, partition, occurred_at)
               SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[])
               ON CONFLICT (topic, partition) DO UPDATE SET occurred_at = greatest(w.occurred_at, EXCLUDED.occurred_at)""",
            *[list(c) for c in cols])


async def watermarks(conn: asyncpg.Connection) -> dict[tuple[str, int], datetime]:
    return {(r["topic"], r["partition"]): r["occurred_at"]
            for r in await conn.fetch("SELECT topic, partition, occurred_at FROM stream_watermarks")}


async def any_deferred(conn: asyncpg.Connection, partitions: Sequence[int] | None = None) -> bool:
    """Whether events are held (of these order partitions, or of any; -1: held before partitions were recorded)."""
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM deferred_order_events
                          WHERE $1::int[] IS NULL OR partition = ANY($1::int[]) OR partition = -1)""",
        None if partitions is None else list(partitions))


async def deferred_orders(conn: asyncpg.Connection, order_ids: Sequence[str]) -> set[str]:
    """Those of these orders that have events held back."""
    if not order_ids:
        return set()
    rows = await conn.fetch("SELECT DISTINCT order_id FROM deferred_order_events WHERE order_id = ANY($1::text[])", list(order_ids))
    return {r["order_id"] for r in rows}


async def release_deferred(conn: asyncpg.Connection, cutoff: datetime | None,
                           partitions: Sequence[int] | None = None, limit: int | None = None) -> list[asyncpg.Record]:
    """Take (delete and return, in arrival order) every held event of the orders paid at or before
    `cutoff` (all of them when None), of these order partitions (None: all); with `limit`, of the
    `limit` earliest-paid such orders only (the rest stay held for the next call), so that a
    backlog held at start is folded in batch-sized steps rather than in one outsized transaction."""
    # Also the follow-ups (refund, completion) whose payment is no longer held: a payment released
    # by one worker while another, taking the partition over, held a follow-up behind it.
    rows = await conn.fetch(
        """DELETE FROM deferred_order_events WHERE order_id IN (
               (SELECT order_id FROM deferred_order_events WHERE paid_at IS NOT NULL AND ($1::timestamptz IS NULL OR paid_at <= $1)
                AND ($2::int[] IS NULL OR partition = ANY($2::int[]) OR partition = -1)
                ORDER BY paid_at, seq LIMIT $3)
               UNION
               SELECT d.order_id FROM deferred_order_events d
               WHERE d.paid_at IS NULL AND ($2::int[] IS NULL OR d.partition = ANY($2::int[]) OR d.partition = -1)
               AND NOT EXISTS (SELECT 1 FROM deferred_order_events h WHERE h.order_id = d.order_id AND h.paid_at IS NOT NULL))
           RETURNING seq, order_id, envelope, greatest(partition, 0) AS partition""",
        cutoff, None if partitions is None else list(partitions), limit)
    return sorted(rows, key=lambda r: r["seq"])


async def defer(conn: asyncpg.Connection, rows: list[tuple[str, datetime | None, bytes, int]]) -> None:
    """(order_id, paid_at or None, envelope bytes, order partition) rows, in arrival order."""
    if rows:
        await conn.copy_records_to_table("deferred_order_events", records=rows,
                                         columns=["order_id", "paid_at", "envelope", "partition"])
