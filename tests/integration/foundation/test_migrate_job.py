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
