"""Audit runs and the console's own action log (its outbox: every OperatorActionRecorded)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime

import asyncpg

from shared.outbox import PUBLISHED


async def start_run(conn: asyncpg.Connection, run_id: uuid.UUID, kind: str, by: str, at: datetime) -> None:
    await conn.execute("INSERT INTO audit_runs (run_id, kind, started_by, started_at) VALUES ($1, $2, $3, $4)",
                       run_id, kind, by, at)


async def finish_run(conn: asyncpg.Connection, run_id: uuid.UUID, exit_code: int, output: str, at: datetime) -> None:
    await conn.execute("UPDATE audit_runs SET exit_code = $2, output = $3, finished_at = $4 WHERE run_id = $1",
                       run_id, exit_code, output, at)


async def runs(conn: asyncpg.Connection, limit: int = 20) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM audit_runs ORDER BY started_at DESC LIMIT $1", limit)


async def run(conn: asyncpg.Connection, run_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM audit_runs WHERE run_id = $1", run_id)


async def recent_actions(conn: asyncpg.Connection, limit: int = 50) -> list[dict]:
    rows = await conn.fetch(
        f"SELECT event_id, convert_from(value, 'UTF8') AS v, {PUBLISHED} AS published FROM outbox ORDER BY seq DESC LIMIT $1",
        limit)
    out = []
    for r in rows:
        env = json.loads(r["v"])
        if env.get("event_type") == "OperatorActionRecorded":
            out.append({**env["payload"], "event_id": str(r["event_id"]), "published": r["published"]})
    return out
