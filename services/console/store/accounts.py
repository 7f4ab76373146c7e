"""Operator accounts and sessions (SQL only; the caller owns the transaction)."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.db import rows_affected


async def upsert_operator(conn: asyncpg.Connection, username: str, role: str, password_hash: str,
                          display_name: str | None = None) -> None:
    await conn.execute(
        """INSERT INTO operators (username, role, password_hash, display_name) VALUES ($1, $2, $3, $4)
           ON CONFLICT (username) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash,
               display_name = COALESCE(EXCLUDED.display_name, operators.display_name), disabled = false""",
        username, role, password_hash, display_name)


async def operator(conn: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT username, role, password_hash, disabled, display_name FROM operators WHERE username = $1",
                               username)


async def insert_session(conn: asyncpg.Connection, token_hash: str, username: str, role: str, csrf: str,
                         created_at: datetime, expires_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO sessions (token_hash, username, role, csrf_token, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)""", token_hash, username, role, csrf, created_at, expires_at)


async def session(conn: asyncpg.Connection, token_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT s.token_hash, s.username, s.role, s.csrf_token, s.created_at, s.expires_at, o.disabled, o.display_name
           FROM sessions s JOIN operators o USING (username) WHERE s.token_hash = $1""", token_hash)


async def touch_session(conn: asyncpg.Connection, token_hash: str, expires_at: datetime) -> None:
    await conn.execute("UPDATE sessions SET expires_at = $2 WHERE token_hash = $1", token_hash, expires_at)


async def delete_session(conn: asyncpg.Connection, token_hash: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> int:
    r = await conn.execute("DELETE FROM sessions WHERE expires_at <= $1", now)
    return rows_affected(r)
