"""PostgreSQL helpers the integration tests share: the scan nodes of a prepared statement's plan,
and a pool on a fresh schema beside a second session that commits while a test reads."""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg

from shared import db


def _scans(plan: dict) -> list[tuple[str, str | None]]:
    out = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", ()):
        out += _scans(child)
    return out


async def plan_nodes(conn: asyncpg.Connection, execute: str) -> list[tuple[str, str | None]]:
    """(node type, relation) of every node of the plan `EXECUTE <execute>` runs (a prepared
    statement's cached plan included)."""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {execute}")
    return _scans((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


@asynccontextmanager
async def pool_and_writer(dsn: str, schema: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Connection]]:
    """A service-style pool on the new schema `schema`, and another session on it (to commit while
    the pool's connection reads)."""
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    pool = await db.create_pool(dsn, schema)
    other = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        yield pool, other
    finally:
        await other.close()
        await pool.close()
