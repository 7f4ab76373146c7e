"""`python -m shared.migrate <service>`: the Kubernetes migration Job's command."""
from __future__ import annotations

import os
import subprocess
import sys

import asyncpg


def _migrate(service: str, schema: str, dsn: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": dsn, f"{service.upper()}_SCHEMA": schema}
    return subprocess.run([sys.executable, "-m", "shared.migrate", service], capture_output=True, text=True, env=env, timeout=120)


async def test_the_migration_job_migrates_once_and_then_does_nothing(infra, fresh_schema):
    first = _migrate("payout", fresh_schema, infra["db"])
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"payout: schema {fresh_schema}, ") and " 0 migration" not in first.stdout
    conn = await asyncpg.connect(infra["db"])
    try:
        tables = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", fresh_schema)}
    finally:
        await conn.close()
    assert {"outbox", "projector_offsets"} <= tables
    again = _migrate("payout", fresh_schema, infra["db"])
    assert again.returncode == 0 and f"payout: schema {fresh_schema}, 0 migration(s) applied" in again.stdout


def test_an_unknown_service_is_refused():
    r = subprocess.run([sys.executable, "-m", "shared.migrate", "billing"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


async def test_replicas_migrating_a_new_schema_at_once_all_start(infra, fresh_schema):
    """Several processes starting together on a schema that does not exist yet (replicas, the
    bench's two commission workers): none fails on creating it, and the migrations apply once."""
    import asyncio
    import threading
    from pathlib import Path

    from shared import db

    migrations = Path(__file__).resolve().parents[3] / "services" / "payout" / "store" / "migrations"
    start = threading.Barrier(6)

    def one() -> list[str]:
        start.wait()
        return db.migrate_sync(infra["db"], fresh_schema, migrations)

    applied = await asyncio.gather(*(asyncio.to_thread(one) for _ in range(6)))
    assert sum(1 for a in applied if a) == 1 and len(set(map(tuple, applied)) - {()}) == 1
    conn = await asyncpg.connect(infra["db"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", fresh_schema) == 1
    finally:
        await conn.close()
