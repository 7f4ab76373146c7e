"""SQL of withdrawals, transfer notices and transfer calls. Functions take a connection and
never commit; the caller owns the transaction."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

from services.payout.domain.policy import DayUsage
from services.payout.domain.withdrawal import RETURNED_STATUSES

_UPDATABLE = frozenset({
    "status", "automatic", "decided_by", "decided_at", "reject_reason", "attempt", "out_bill_no", "transfer_bill_no",
    "bill_state", "package_info", "fail_reason", "release_reason", "finished_at", "checks", "next_check_at",
    "lease_until", "last_error", "first_approved_by", "first_approved_at",
})


async def insert(conn: asyncpg.Connection, **row: Any) -> asyncpg.Record:
    """Insert a new withdrawal; returns the stored row."""
    cols = list(row)
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    return await conn.fetchrow(
        f"INSERT INTO withdrawals ({', '.join(cols)}) VALUES ({placeholders}) RETURNING *", *row.values())


async def update(conn: asyncpg.Connection, withdrawal_id: uuid.UUID, **fields: Any) -> asyncpg.Record:
    """Set some columns of one withdrawal (the caller holds its lock); returns the new row."""
    bad = set(fields) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(fields, start=2))
    return await conn.fetchrow(
        f"UPDATE withdrawals SET {sets}, updated_at = now() WHERE withdrawal_id = $1 RETURNING *",
        withdrawal_id, *fields.values())


async def get(conn: asyncpg.Connection, withdrawal_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM withdrawals WHERE withdrawal_id = $1", withdrawal_id)


async def lock(conn: asyncpg.Connection, withdrawal_id: uuid.UUID) -> asyncpg.Record | None:
    """The withdrawal, locked until the transaction ends: every state change goes through here."""
    return await conn.fetchrow("SELECT * FROM withdrawals WHERE withdrawal_id = $1 FOR UPDATE", withdrawal_id)


async def lock_by_bill(conn: asyncpg.Connection, out_bill_no: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM withdrawals WHERE out_bill_no = $1 FOR UPDATE", out_bill_no)


async def by_idempotency_key(conn: asyncpg.Connection, promoter_id: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM withdrawals WHERE promoter_id = $1 AND idempotency_key = $2", promoter_id, key)


async def day_usage(conn: asyncpg.Connection, promoter_id: str, day: date) -> DayUsage:
    """Count and sum of the day's withdrawals whose money did not come back. Read under the
    promoter's balance lock, so concurrent requests see each other."""
    row = await conn.fetchrow(
        """SELECT count(*) AS n, coalesce(sum(amount_fen), 0) AS fen FROM withdrawals
           WHERE promoter_id = $1 AND business_day = $2 AND status <> ALL($3::text[])""",
        promoter_id, day, list(RETURNED_STATUSES))
    return DayUsage(count=row["n"], amount_fen=row["fen"])


async def list_for_promoter(conn: asyncpg.Connection, promoter_id: str, *, status: str | None, limit: int,
                            before: datetime | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM withdrawals WHERE promoter_id = $1 AND ($2::text IS NULL OR status = $2)
             AND ($3::timestamptz IS NULL OR requested_at < $3)
           ORDER BY requested_at DESC LIMIT $4""",
        promoter_id, status, before, limit)


async def list_all(conn: asyncpg.Connection, *, status: str | None, promoter_id: str | None, limit: int,
                   after: datetime | None) -> list[asyncpg.Record]:
    """The operators' queue: oldest first."""
    return await conn.fetch(
        """SELECT * FROM withdrawals WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR promoter_id = $2)
             AND ($3::timestamptz IS NULL OR requested_at > $3)
           ORDER BY requested_at ASC LIMIT $4""",
        status, promoter_id, after, limit)


async def claim_due(conn: asyncpg.Connection, now: datetime, lease_until: datetime, limit: int) -> list[asyncpg.Record]:
    """Withdrawals whose bill needs a create or a query now, leased to this caller so another
    instance leaves them alone (a lapsed lease is taken over)."""
    return await conn.fetch(
        """UPDATE withdrawals w SET lease_until = $2, updated_at = now()
           WHERE w.withdrawal_id IN (
               SELECT withdrawal_id FROM withdrawals
               WHERE status IN ('approved', 'transferring') AND next_check_at <= $1
                 AND (lease_until IS NULL OR lease_until < $1)
               ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED)
           RETURNING w.*""",
        now, lease_until, limit)


async def record_call(conn: asyncpg.Connection, *, withdrawal_id: uuid.UUID, out_bill_no: str, operation: str,
                      result: str, http_status: int | None, code: str | None, state: str | None) -> None:
    await conn.execute(
        """INSERT INTO transfer_calls (withdrawal_id, out_bill_no, operation, result, http_status, code, state)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        withdrawal_id, out_bill_no, operation, result, http_status, code, state)


async def remember_notice(conn: asyncpg.Connection, *, notice_id: str, event_type: str, out_bill_no: str | None,
                          state: str | None, outcome: str, body_sha256: str) -> bool:
    """Record a transfer notice; False when this notice id was already received."""
    row = await conn.fetchrow(
        """INSERT INTO transfer_notices (notice_id, event_type, out_bill_no, state, outcome, body_sha256)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (notice_id) DO NOTHING RETURNING notice_id""",
        notice_id, event_type, out_bill_no, state, outcome, body_sha256)
    return row is not None


async def set_notice_outcome(conn: asyncpg.Connection, notice_id: str, outcome: str) -> None:
    await conn.execute("UPDATE transfer_notices SET outcome = $2 WHERE notice_id = $1", notice_id, outcome)


async def tax_basis(conn: asyncpg.Connection, promoter_id: str, since: date, until: date) -> list[asyncpg.Record]:
    """The promoter's withdrawals of business days [since, until] whose money did not come back (paid
    or still in flight), with the tax withheld on each: what a new withholding is computed after."""
    return await conn.fetch(
        """SELECT business_day, amount_fen, tax_withheld_fen FROM withdrawals
           WHERE promoter_id = $1 AND business_day >= $2 AND business_day <= $3 AND status <> ALL($4::text[])
           ORDER BY business_day, requested_at""",
        promoter_id, since, until, list(RETURNED_STATUSES))
