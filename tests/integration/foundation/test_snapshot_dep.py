"""`shared.deps.SnapshotConnDep`: a read route's statements see one snapshot (what commits between
two of them shows in neither) and cannot write; payout's read routes use it."""
from __future__ import annotations

from types import SimpleNamespace

import asyncpg
import pytest
from fastapi.routing import APIRoute

from shared.deps import get_conn, get_snapshot_conn
from tests.integration.pg import pool_and_writer

pytestmark = pytest.mark.integration


async def test_a_snapshot_connection_sees_one_state_and_cannot_write(infra, fresh_schema):
    async with pool_and_writer(infra["db"], fresh_schema) as (pool, other):
        await other.execute("CREATE TABLE ledger_rows (fen int)")
        await other.execute("INSERT INTO ledger_rows VALUES (100)")
        rt = SimpleNamespace(pool=pool)

        gen = get_snapshot_conn(rt)
        conn = await gen.__anext__()
        balance = await conn.fetchval("SELECT sum(fen) FROM ledger_rows")
        await other.execute("INSERT INTO ledger_rows VALUES (-40)")  # a withdrawal commits meanwhile
        usage = await conn.fetchval("SELECT count(*) FROM ledger_rows WHERE fen < 0")
        assert (balance, usage) == (100, 0)  # one state: neither sees the withdrawal
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("INSERT INTO ledger_rows VALUES (1)")
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()  # the request ends: the transaction and the connection go back

        gen = get_snapshot_conn(rt)
        conn = await gen.__anext__()
        assert await conn.fetchval("SELECT sum(fen) FROM ledger_rows") == 60  # the next answer sees it
        await gen.aclose()


def _calls(dependant) -> set:
    out = {dependant.call}
    for d in dependant.dependencies:
        out |= _calls(d)
    return out


def test_payout_read_routes_answer_from_one_snapshot():
    from services.payout.api import admin, tax, withdrawals

    gets = [r for m in (withdrawals, admin, tax) for r in m.router.routes if isinstance(r, APIRoute) and "GET" in r.methods]
    assert len(gets) >= 9
    for route in gets:
        calls = _calls(route.dependant)
        assert get_snapshot_conn in calls and get_conn not in calls, route.path
