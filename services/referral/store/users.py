"""Users referral has seen, with the profile the mini-program passed (nickname, avatar)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class User:
    user_id: str
    nickname: str | None
    avatar_url: str | None
    first_seen_at: datetime
    last_seen_at: datetime


async def touch(conn: asyncpg.Connection, user_id: str, now: datetime, *, nickname: str | None = None,
                avatar_url: str | None = None) -> bool:
    """Record a visit (and any profile given). Returns True when the user was already known."""
    known = await conn.fetchval(
        """INSERT INTO users AS u (user_id, nickname, avatar_url, first_seen_at, last_seen_at)
           VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT (user_id) DO UPDATE SET
               nickname = COALESCE(EXCLUDED.nickname, u.nickname),
               avatar_url = COALESCE(EXCLUDED.avatar_url, u.avatar_url),
               last_seen_at = GREATEST(u.last_seen_at, EXCLUDED.last_seen_at)
           RETURNING (xmax <> 0)""",
        user_id, nickname, avatar_url, now,
    )
    return bool(known)


async def get(conn: asyncpg.Connection, user_id: str) -> User | None:
    row = await conn.fetchrow("SELECT user_id, nickname, avatar_url, first_seen_at, last_seen_at FROM users WHERE user_id = $1", user_id)
    return User(**dict(row)) if row else None
