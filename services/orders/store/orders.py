"""SQL for orders, lines, refunds, notices and promoter codes. Every function takes a
connection and leaves the transaction to the caller."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

import asyncpg

from shared.contracts.orders import OrderLine, RefundedLine

Record = asyncpg.Record


# -- orders ------------------------------------------------------------------------------------
async def insert_order(conn: asyncpg.Connection, *, order_id: str, out_trade_no: str, buyer_id: str,
                       promoter_code: str | None, postage_fen: int, total_fen: int, fingerprint: str,
                       placed_at: datetime, placed_event_id: Any, due_at: datetime,
                       lines: Sequence[OrderLine]) -> bool:
    """Insert a placed order and its lines; False (and nothing written) if out_trade_no exists.
    Concurrent inserts of one number serialize on the unique index."""
    inserted = await conn.fetchval(
        """INSERT INTO orders (order_id, out_trade_no, buyer_id, promoter_code, postage_fen, total_fen, fingerprint,
                               status, placed_at, placed_event_id, due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'placed', $8, $9, $10)
           ON CONFLICT (out_trade_no) DO NOTHING RETURNING 1""",
        order_id, out_trade_no, buyer_id, promoter_code, postage_fen, total_fen, fingerprint,
        placed_at, placed_event_id, due_at,
    )
    if not inserted:
        return False
    await conn.executemany(
        """INSERT INTO order_lines (order_id, line_id, position, product_id, category_id, sku, quantity,
                                    unit_price_fen, paid_fen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [(order_id, ln.line_id, i, ln.product_id, ln.category_id, ln.sku, ln.quantity, ln.unit_price_fen, ln.paid_fen)
         for i, ln in enumerate(lines)],
    )
    return True


async def get_order(conn: asyncpg.Connection, order_id: str, *, lock: bool = False) -> Record | None:
    """One order row; with `lock`, FOR UPDATE (every change to an order goes through this lock)."""
    return await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1" + (" FOR UPDATE" if lock else ""), order_id)


async def get_order_by_trade_no(conn: asyncpg.Connection, out_trade_no: str, *, lock: bool = False) -> Record | None:
    return await conn.fetchrow("SELECT * FROM orders WHERE out_trade_no = $1" + (" FOR UPDATE" if lock else ""),
                               out_trade_no)


async def get_lines(conn: asyncpg.Connection, order_id: str) -> tuple[OrderLine, ...]:
    rows = await conn.fetch("SELECT * FROM order_lines WHERE order_id = $1 ORDER BY position", order_id)
    return tuple(OrderLine(line_id=r["line_id"], product_id=r["product_id"], category_id=r["category_id"], sku=r["sku"],
                           quantity=r["quantity"], unit_price_fen=r["unit_price_fen"], paid_fen=r["paid_fen"])
                 for r in rows)


async def get_lines_of(conn: asyncpg.Connection, order_ids: Sequence[str]) -> dict[str, list[Record]]:
    rows = await conn.fetch("SELECT * FROM order_lines WHERE order_id = ANY($1::text[]) ORDER BY order_id, position",
                            list(order_ids))
    out: dict[str, list[Record]] = {}
    for r in rows:
        out.setdefault(r["order_id"], []).append(r)
    return out


async def mark_paid(conn: asyncpg.Connection, order_id: str, *, transaction_id: str, paid_at: datetime,
                    due_at: datetime) -> None:
    await conn.execute(
        """UPDATE orders SET status = 'paid', transaction_id = $2, paid_at = $3, due_at = $4
           WHERE order_id = $1 AND status = 'placed'""",
        order_id, transaction_id, paid_at, due_at,
    )


async def mark_late_payment(conn: asyncpg.Connection, order_id: str, transaction_id: str) -> None:
    await conn.execute("UPDATE orders SET late_transaction_id = $2 WHERE order_id = $1", order_id, transaction_id)


async def mark_completed(conn: asyncpg.Connection, order_id: str, *, reason: str, at: datetime) -> None:
    await conn.execute(
        """UPDATE orders SET status = 'completed', completed_at = $3, completion_reason = $2, due_at = NULL
           WHERE order_id = $1 AND status = 'paid'""",
        order_id, reason, at,
    )


async def mark_cancelled(conn: asyncpg.Connection, order_id: str, *, reason: str, at: datetime) -> None:
    await conn.execute(
        """UPDATE orders SET status = 'cancelled', cancelled_at = $3, cancel_reason = $2, due_at = NULL
           WHERE order_id = $1 AND status = 'placed'""",
        order_id, reason, at,
    )


async def lock_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Record]:
    """Lock up to `limit` orders whose timed transition is due, oldest first, skipping rows
    another transaction holds. Reads through the partial index `orders_due`."""
    return await conn.fetch(LOCK_DUE_SQL, now, limit)


LOCK_DUE_SQL = """SELECT order_id, out_trade_no, status, due_at, placed_event_id, prepay_requested_at FROM orders
                  WHERE status IN ('placed', 'paid') AND due_at <= $1
                  ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED"""


async def list_by_buyer(conn: asyncpg.Connection, buyer_id: str, *, limit: int, before: datetime | None) -> list[Record]:
    return await conn.fetch(
        """SELECT * FROM orders WHERE buyer_id = $1 AND ($3::timestamptz IS NULL OR placed_at < $3)
           ORDER BY placed_at DESC LIMIT $2""",
        buyer_id, limit, before,
    )


async def list_by_codes(conn: asyncpg.Connection, codes: Sequence[str], *, limit: int,
                        before: datetime | None) -> list[Record]:
    return await conn.fetch(
        """SELECT * FROM orders WHERE promoter_code = ANY($1::text[]) AND ($3::timestamptz IS NULL OR placed_at < $3)
           ORDER BY placed_at DESC LIMIT $2""",
        list(codes), limit, before,
    )


_ORDER_FOLLOW_FIELDS = frozenset({"payer_openid", "prepay_id", "prepay_expires_at", "prepay_requested_at",
                                  "next_query_at", "query_checks", "wechat_last_error", "due_at"})
_REFUND_FOLLOW_FIELDS = frozenset({"submit_state", "wechat_status", "next_check_at", "checks", "submissions",
                                   "last_error"})


async def update_order_follow(conn: asyncpg.Connection, order_id: str, **fields: Any) -> None:
    """Set the WeChat-call bookkeeping of an order (prepay, queries); never its status."""
    assert fields and set(fields) <= _ORDER_FOLLOW_FIELDS, fields
    cols = list(fields)
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    await conn.execute(f"UPDATE orders SET {sets} WHERE order_id = $1", order_id, *[fields[c] for c in cols])


CLAIM_QUERY_DUE_SQL = """UPDATE orders SET next_query_at = $2
    WHERE order_id IN (SELECT order_id FROM orders
                       WHERE status = 'placed' AND next_query_at IS NOT NULL AND next_query_at <= $1
                       ORDER BY next_query_at LIMIT $3 FOR UPDATE SKIP LOCKED)
    RETURNING order_id, out_trade_no, query_checks"""


async def claim_query_due(conn: asyncpg.Connection, now: datetime, lease_until: datetime, limit: int) -> list[Record]:
    """Placed orders whose query is due, leased to the caller until `lease_until` (another
    replica skips rows being claimed and, until the lease ends, the claimed ones)."""
    return await conn.fetch(CLAIM_QUERY_DUE_SQL, now, lease_until, limit)


async def bump_due(conn: asyncpg.Connection, order_id: str, due_at: datetime) -> None:
    await conn.execute("UPDATE orders SET due_at = $2 WHERE order_id = $1 AND status = 'placed'", order_id, due_at)


async def paid_between(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[Record]:
    """Orders whose payment succeeded in [start, end) (cancelled ones with a late payment too)."""
    return await conn.fetch(
        """SELECT order_id, out_trade_no, total_fen, transaction_id, paid_at, status FROM orders
           WHERE paid_at >= $1 AND paid_at < $2 ORDER BY paid_at""", start, end)


async def orders_by_trade_nos(conn: asyncpg.Connection, nos: Sequence[str]) -> dict[str, Record]:
    rows = await conn.fetch(
        """SELECT order_id, out_trade_no, total_fen, transaction_id, late_transaction_id, paid_at, status
           FROM orders WHERE out_trade_no = ANY($1::text[])""", list(nos))
    return {r["out_trade_no"]: r for r in rows}


async def refunds_succeeded_between(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[Record]:
    return await conn.fetch(
        """SELECT r.out_refund_no, r.refund_id, r.amount_fen, r.finished_at, o.out_trade_no FROM refunds r
           JOIN orders o USING (order_id)
           WHERE r.status = 'succeeded' AND r.finished_at >= $1 AND r.finished_at < $2 ORDER BY r.finished_at""",
        start, end)


async def refunds_by_nos(conn: asyncpg.Connection, nos: Sequence[str]) -> dict[str, Record]:
    rows = await conn.fetch("SELECT * FROM refunds WHERE out_refund_no = ANY($1::text[])", list(nos))
    return {r["out_refund_no"]: r for r in rows}


# -- reconciliation ----------------------------------------------------------------------------
async def claim_reconciliation(conn: asyncpg.Connection, bill_date: Any, now: datetime, *, retry_failed: bool) -> bool:
    """True for the one caller that may reconcile this date (one row per date)."""
    if await conn.fetchval(
            """INSERT INTO reconciliations (bill_date, started_at, status) VALUES ($1, $2, 'running')
               ON CONFLICT (bill_date) DO NOTHING RETURNING 1""", bill_date, now):
        return True
    if retry_failed:
        return bool(await conn.fetchval(
            """UPDATE reconciliations SET started_at = $2, status = 'running', finished_at = NULL
               WHERE bill_date = $1 AND status = 'failed' RETURNING 1""", bill_date, now))
    return False


async def finish_reconciliation(conn: asyncpg.Connection, bill_date: Any, now: datetime, *, status: str,
                                summary: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> None:
    await conn.execute(
        """INSERT INTO reconciliations (bill_date, started_at, finished_at, status, summary, findings)
           VALUES ($1, $2, $2, $3, $4::jsonb, $5::jsonb)
           ON CONFLICT (bill_date) DO UPDATE SET finished_at = $2, status = $3, summary = $4::jsonb,
                                                 findings = $5::jsonb""",
        bill_date, now, status, json.dumps(dict(summary)), json.dumps(list(findings), ensure_ascii=False))


async def get_reconciliation(conn: asyncpg.Connection, bill_date: Any) -> Record | None:
    return await conn.fetchrow("SELECT * FROM reconciliations WHERE bill_date = $1", bill_date)


# -- refunds -----------------------------------------------------------------------------------
async def update_refund_follow(conn: asyncpg.Connection, out_refund_no: str, **fields: Any) -> None:
    """Set the submitter's bookkeeping of a refund; never its status."""
    assert fields and set(fields) <= _REFUND_FOLLOW_FIELDS, fields
    cols = list(fields)
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    await conn.execute(f"UPDATE refunds SET {sets} WHERE out_refund_no = $1", out_refund_no,
                       *[fields[c] for c in cols])


CLAIM_DUE_REFUNDS_SQL = """UPDATE refunds r SET next_check_at = $2 FROM orders o
    WHERE o.order_id = r.order_id AND r.out_refund_no IN (
        SELECT out_refund_no FROM refunds WHERE status IN ('pending', 'abnormal') AND next_check_at <= $1
        ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED)
    RETURNING r.out_refund_no, r.order_id, r.status, r.submit_state, r.amount_fen, r.reason, r.checks,
              o.out_trade_no, o.total_fen"""


async def claim_due_refunds(conn: asyncpg.Connection, now: datetime, lease_until: datetime, limit: int) -> list[Record]:
    """Refunds to submit or to query, leased to the caller until `lease_until`."""
    return await conn.fetch(CLAIM_DUE_REFUNDS_SQL, now, lease_until, limit)


async def held_refund_lines(conn: asyncpg.Connection, order_id: str, statuses: Iterable[str]) -> list[RefundedLine]:
    """The lines of this order's refunds in `statuses` (what they hold of each line)."""
    rows = await conn.fetch(
        """SELECT rl.line_id, rl.quantity, rl.amount_fen FROM refund_lines rl JOIN refunds r USING (out_refund_no)
           WHERE r.order_id = $1 AND r.status = ANY($2::text[])""",
        order_id, list(statuses),
    )
    return [RefundedLine(line_id=r["line_id"], quantity=r["quantity"], amount_fen=r["amount_fen"]) for r in rows]


async def insert_refund(conn: asyncpg.Connection, *, out_refund_no: str, order_id: str, amount_fen: int,
                        fingerprint: str, reason: str | None, requested_by: str, requested_at: datetime,
                        lines: Sequence[RefundedLine]) -> bool:
    """Store a pending refund; False (nothing written) if out_refund_no exists."""
    inserted = await conn.fetchval(
        """INSERT INTO refunds (out_refund_no, order_id, status, amount_fen, fingerprint, reason, requested_by,
                                requested_at, updated_at, next_check_at)
           VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $7, $7) ON CONFLICT (out_refund_no) DO NOTHING RETURNING 1""",
        out_refund_no, order_id, amount_fen, fingerprint, reason, requested_by, requested_at,
    )
    if not inserted:
        return False
    await conn.executemany(
        "INSERT INTO refund_lines (out_refund_no, line_id, quantity, amount_fen) VALUES ($1, $2, $3, $4)",
        [(out_refund_no, ln.line_id, ln.quantity, ln.amount_fen) for ln in lines],
    )
    return True


async def get_refund(conn: asyncpg.Connection, out_refund_no: str, *, lock: bool = False) -> Record | None:
    return await conn.fetchrow("SELECT * FROM refunds WHERE out_refund_no = $1" + (" FOR UPDATE" if lock else ""),
                               out_refund_no)


async def get_refund_lines(conn: asyncpg.Connection, out_refund_no: str) -> tuple[RefundedLine, ...]:
    rows = await conn.fetch(
        """SELECT rl.line_id, rl.quantity, rl.amount_fen FROM refund_lines rl
           JOIN refunds r USING (out_refund_no)
           JOIN order_lines ol ON ol.order_id = r.order_id AND ol.line_id = rl.line_id
           WHERE rl.out_refund_no = $1 ORDER BY ol.position""",
        out_refund_no,
    )
    return tuple(RefundedLine(line_id=r["line_id"], quantity=r["quantity"], amount_fen=r["amount_fen"]) for r in rows)


async def list_refunds(conn: asyncpg.Connection, order_id: str) -> list[Record]:
    return await conn.fetch("SELECT * FROM refunds WHERE order_id = $1 ORDER BY requested_at, out_refund_no", order_id)


async def set_refund_status(conn: asyncpg.Connection, out_refund_no: str, *, status: str, refund_id: str | None,
                            at: datetime, final: bool) -> None:
    await conn.execute(
        """UPDATE refunds SET status = $2, refund_id = COALESCE($3, refund_id), updated_at = $4,
                              finished_at = CASE WHEN $5 THEN $4 ELSE finished_at END
           WHERE out_refund_no = $1""",
        out_refund_no, status, refund_id, at, final,
    )


# -- notices -----------------------------------------------------------------------------------
async def claim_notice(conn: asyncpg.Connection, notice_id: str, outcome: str) -> bool:
    """True for the first transaction to act on this notification id; a concurrent repeat
    waits on the unique key and then gets False."""
    return bool(await conn.fetchval(
        "INSERT INTO processed_notices (notice_id, outcome) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        notice_id, outcome,
    ))


async def archive_notice(conn: asyncpg.Connection, *, notice_id: str | None, event_type: str | None,
                         headers: Mapping[str, str], body_sha256: str, body_size: int, out_trade_no: str | None,
                         out_refund_no: str | None, outcome: str, http_status: int, reason_code: str | None = None,
                         reason: str | None = None) -> None:
    """Append one delivery to the audit archive."""
    await conn.execute(
        """INSERT INTO notice_archive (notice_id, event_type, headers, body_sha256, body_size, out_trade_no,
                                       out_refund_no, outcome, http_status, reason_code, reason)
           VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11)""",
        notice_id, event_type, json.dumps(dict(headers)), body_sha256, body_size, out_trade_no, out_refund_no,
        outcome, http_status, reason_code, reason,
    )


# -- promoter codes ----------------------------------------------------------------------------
async def upsert_promoter_codes(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, datetime]]) -> None:
    """(code, promoter_id, enrolled_at); a code re-enrolled keeps its latest owner."""
    if rows:
        await conn.executemany(
            """INSERT INTO promoter_codes (promoter_code, promoter_id, enrolled_at) VALUES ($1, $2, $3)
               ON CONFLICT (promoter_code) DO UPDATE SET promoter_id = EXCLUDED.promoter_id,
                                                       enrolled_at = EXCLUDED.enrolled_at""",
            rows,
        )


async def codes_of(conn: asyncpg.Connection, promoter_id: str) -> list[str]:
    return [r["promoter_code"] for r in
            await conn.fetch("SELECT promoter_code FROM promoter_codes WHERE promoter_id = $1", promoter_id)]


async def refund_line_rows(conn: asyncpg.Connection, order_ids: Sequence[str]) -> dict[str, list[Record]]:
    """Per order: (line_id, quantity, amount_fen, status) of every refund line, for views."""
    rows = await conn.fetch(
        """SELECT r.order_id, rl.line_id, rl.quantity, rl.amount_fen, r.status
           FROM refund_lines rl JOIN refunds r USING (out_refund_no) WHERE r.order_id = ANY($1::text[])""",
        list(order_ids),
    )
    out: dict[str, list[Record]] = {}
    for r in rows:
        out.setdefault(r["order_id"], []).append(r)
    return out


async def refund_lines_of(conn: asyncpg.Connection, out_refund_nos: Sequence[str]) -> dict[str, list[Record]]:
    rows = await conn.fetch("SELECT * FROM refund_lines WHERE out_refund_no = ANY($1::text[]) ORDER BY line_id",
                            list(out_refund_nos))
    out: dict[str, list[Record]] = {}
    for r in rows:
        out.setdefault(r["out_refund_no"], []).append(r)
    return out


async def list_notices(conn: asyncpg.Connection, *, out_trade_no: str | None, limit: int) -> list[Record]:
    return await conn.fetch(
        """SELECT * FROM notice_archive WHERE ($1::text IS NULL OR out_trade_no = $1)
           ORDER BY seq DESC LIMIT $2""",
        out_trade_no, limit,
    )
