"""Promoters and promoter applications."""
from __future__ import annotations

from typing import Any

import asyncpg

from services.referral.domain.promoters import Application, Promoter

_COLS = "user_id, code, status, enrolled_by, enrolled_at, status_reason, suspended_until, status_changed_at"


def _promoter(row: Any) -> Promoter | None:
    return Promoter(**dict(row)) if row else None


async def get(conn: asyncpg.Connection, user_id: str, *, for_update: bool = False) -> Promoter | None:
    sql = f"SELECT {_COLS} FROM promoters WHERE user_id = $1" + (" FOR UPDATE" if for_update else "")
    return _promoter(await conn.fetchrow(sql, user_id))


async def by_code(conn: asyncpg.Connection, code: str) -> Promoter | None:
    return _promoter(await conn.fetchrow(f"SELECT {_COLS} FROM promoters WHERE code = $1", code))


async def insert(conn: asyncpg.Connection, p: Promoter) -> bool:
    """Insert a new promoter; False if the user is already one (a concurrent enrolment won).
    A code collision raises asyncpg.UniqueViolationError (the caller draws another code)."""
    row = await conn.fetchrow(
        f"""INSERT INTO promoters ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (user_id) DO NOTHING RETURNING 1""",
        p.user_id, p.code, p.status, p.enrolled_by, p.enrolled_at, p.status_reason, p.suspended_until,
        p.status_changed_at,
    )
    return row is not None


async def code_taken(conn: asyncpg.Connection, code: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM promoters WHERE code = $1", code))


async def save_status(conn: asyncpg.Connection, p: Promoter) -> None:
    await conn.execute(
        """UPDATE promoters SET status = $2, status_reason = $3, suspended_until = $4, status_changed_at = $5
           WHERE user_id = $1""",
        p.user_id, p.status, p.status_reason, p.suspended_until, p.status_changed_at,
    )


async def lock_user(conn: asyncpg.Connection, user_id: str) -> None:
    """Serialise enrolment and applications of one user (transaction-scoped)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.promoter:' || $1))", user_id)


_APP_COLS = "user_id, state, submitted_at, note, decided_at, decided_by, reason"


async def application(conn: asyncpg.Connection, user_id: str) -> Application | None:
    row = await conn.fetchrow(f"SELECT {_APP_COLS} FROM promoter_applications WHERE user_id = $1", user_id)
    return Application(**dict(row)) if row else None


async def save_application(conn: asyncpg.Connection, a: Application) -> None:
    await conn.execute(
        f"""INSERT INTO promoter_applications ({_APP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state, submitted_at = EXCLUDED.submitted_at,
                note = EXCLUDED.note, decided_at = EXCLUDED.decided_at, decided_by = EXCLUDED.decided_by,
                reason = EXCLUDED.reason""",
        a.user_id, a.state, a.submitted_at, a.note, a.decided_at, a.decided_by, a.reason,
    )


async def applications(conn: asyncpg.Connection, state: str | None, limit: int, offset: int) -> list[Application]:
    rows = await conn.fetch(
        f"""SELECT {_APP_COLS} FROM promoter_applications WHERE ($1::text IS NULL OR state = $1)
            ORDER BY submitted_at, user_id LIMIT $2 OFFSET $3""",
        state, limit, offset,
    )
    return [Application(**dict(r)) for r in rows]


async def search(conn: asyncpg.Connection, q: str | None, status: str | None, limit: int, offset: int) -> list[dict]:
    """Operators' promoter list: by id, code or nickname (substring), newest first, with the size
    of the current level-1 team."""
    rows = await conn.fetch(
        f"""SELECT {", ".join("p." + c for c in _COLS.split(", "))}, u.nickname,
                   (SELECT count(*) FROM bindings b WHERE b.promoter_id = p.user_id AND b.superseded_at IS NULL) AS team_size
            FROM promoters p LEFT JOIN users u ON u.user_id = p.user_id
            WHERE ($1::text IS NULL OR p.user_id ILIKE '%' || $1 || '%' OR p.code = $1 OR u.nickname ILIKE '%' || $1 || '%')
              AND ($2::text IS NULL OR p.status = $2)
            ORDER BY p.enrolled_at DESC, p.user_id LIMIT $3 OFFSET $4""",
        q, status, limit, offset,
    )
    return [dict(r) for r in rows]
