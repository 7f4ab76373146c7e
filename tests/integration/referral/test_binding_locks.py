"""The binding graph's locks (`services.referral.store.bindings`): a bind waits only for binds
of its own customer or that would move its promoter, a customer with a team waits for the other
team binds only, rings closed by concurrent binds are still refused, and a bind PostgreSQL picks
as a deadlock's victim is run again. Real PostgreSQL; the test holds the locks on its own
connection as an in-flight bind would."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.referral.store.bindings import _TEAM_BINDS, lock_customer_sql, lock_read_sql
from tests.conftest import eventually
from tests.integration.referral.conftest import bind, enrol

pytestmark = pytest.mark.integration


@asynccontextmanager
async def _in_flight(dsn: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction on the service's schema (node keys hash current_schema()),
    standing for a bind in flight: the locks it takes go when the block ends."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("BEGIN")
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        yield conn
    finally:
        await conn.execute("ROLLBACK")
        await conn.close()


async def _waiting(db_conn: asyncpg.Connection, schema: str) -> int:
    """Backends waiting for one of this schema's node locks (two-key advisory locks)."""
    return await db_conn.fetchval(
        """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2
           AND classid = hashtext($1 || '.bindings')::oid""", schema)


async def _waiting_one_key(db_conn: asyncpg.Connection, schema: str, suffix: str) -> int:
    """Backends waiting for this schema's one-key advisory lock named `suffix`."""
    return await db_conn.fetchval(
        """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
           AND objid = hashtext($1 || $2)::oid""", schema, suffix)


def _retries() -> float:
    return REGISTRY.get_sample_value("fenxiao_referral_deadlock_retries_total") or 0.0


async def test_a_bind_waits_only_for_binds_that_change_an_upline_it_reads(make_svc, ids, infra, db_conn, fresh_schema):
    async with make_svc() as svc:
        p, q, c1, c2, y = ids("p"), ids("q"), ids("c1"), ids("c2"), ids("y")
        code_p, code_q, code_c1 = await enrol(svc, p), await enrol(svc, q), await enrol(svc, c1)
        # an in-flight bind c1 -> p: c1's node exclusive, p's shared
        async with _in_flight(infra["db"], fresh_schema) as held:
            await held.execute(f"SELECT {lock_customer_sql('$1')}, {lock_read_sql('$2')}", c1, p)
            # another customer to the same promoter goes through at once
            r = await asyncio.wait_for(bind(svc, c2, code_p), 20)
            assert r.status_code == 200, r.text
            # the same customer waits (its current binding is being changed) ...
            same_customer = asyncio.create_task(bind(svc, c1, code_q))
            # ... and so does a bind to c1, whose chain read starts at c1's upline
            below_c1 = asyncio.create_task(bind(svc, y, code_c1))
            await eventually(lambda: _is(2, _waiting(db_conn, fresh_schema)))
            assert not same_customer.done() and not below_c1.done()
        r1, r2 = await asyncio.wait_for(asyncio.gather(same_customer, below_c1), 20)
        assert (r1.status_code, r1.json()["outcome"]) == (200, "bound"), r1.text
        assert (r2.status_code, r2.json()["outcome"]) == (200, "bound"), r2.text
        assert r1.json()["binding"]["promoter_id"] == q and r2.json()["binding"]["promoter_id"] == c1


async def _is(n: int, value) -> bool:
    return await value == n


async def test_a_customer_with_a_team_binds_under_the_team_lock_and_new_users_do_not(make_svc, ids, infra, db_conn,
                                                                                      fresh_schema):
    async with make_svc() as svc:
        p, t, u, n = ids("p"), ids("t"), ids("u"), ids("n")
        code_p, code_t = await enrol(svc, p), await enrol(svc, t)
        assert (await bind(svc, u, code_t)).status_code == 200  # t has a team: u
        async with _in_flight(infra["db"], fresh_schema) as held:  # another team's bind in flight
            await held.execute(_TEAM_BINDS)
            r = await asyncio.wait_for(bind(svc, n, code_p), 20)  # a new user: no team, no wait
            assert (r.status_code, r.json()["outcome"]) == (200, "bound"), r.text
            team_bind = asyncio.create_task(bind(svc, t, code_p))
            await eventually(lambda: _is(1, _waiting_one_key(db_conn, fresh_schema, '.bindings.team')))
            assert not team_bind.done()
        r = await asyncio.wait_for(team_bind, 20)
        assert (r.status_code, r.json()["binding"]["promoter_id"]) == (200, p), r.text


async def test_a_bind_of_an_older_replica_runs_alone(make_svc, ids, infra, db_conn, fresh_schema):
    # versions before the node locks took one lock per merchant exclusively for every bind; during a
    # rolling deploy such a bind must not run beside this version's, which it does not know about
    async with make_svc() as svc:
        p, c = ids("p"), ids("c")
        code_p = await enrol(svc, p)
        async with _in_flight(infra["db"], fresh_schema) as held:
            await held.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.bindings'))")
            task = asyncio.create_task(bind(svc, c, code_p))
            await eventually(lambda: _is(1, _waiting_one_key(db_conn, fresh_schema, '.bindings')))
            assert not task.done()
        r = await asyncio.wait_for(task, 20)
        assert (r.status_code, r.json()["outcome"]) == (200, "bound"), r.text


async def test_concurrent_binds_closing_a_ring_through_committed_links_leave_one_refused(make_svc, ids):
    # a -> b and c -> d are in place; b -> c and d -> a sent at once share no user, so locking only
    # each bind's two users would let both through and close a -> b -> c -> d -> a (b and d have
    # teams: their binds take the team lock and read the chain one after the other)
    async with make_svc() as svc:
        for round_ in range(4):
            a, b, c, d = (ids(f"{x}{round_}") for x in "abcd")
            code = {u: await enrol(svc, u) for u in (a, b, c, d)}
            assert (await bind(svc, a, code[b])).status_code == 200
            assert (await bind(svc, c, code[d])).status_code == 200
            rs = await asyncio.gather(bind(svc, b, code[c]), bind(svc, d, code[a]))
            assert sorted(r.status_code for r in rs) == [200, 409], [r.text for r in rs]
            assert sorted(str(r.json().get("code")) for r in rs) == ["None", "cycle"]


async def test_a_deadlock_victim_is_run_again_and_binds(make_svc, ids, infra, db_conn, fresh_schema):
    async with make_svc() as svc:
        a, b = ids("a"), ids("b")
        code_b = await enrol(svc, b)
        before = _retries()
        # an in-flight bind of b holds b's node; the bind a -> b takes a's node and waits for b's
        async with _in_flight(infra["db"], fresh_schema) as held:
            await held.execute(f"SELECT {lock_customer_sql('$1')}", b)
            task = asyncio.create_task(bind(svc, a, code_b))
            await eventually(lambda: _is(1, _waiting(db_conn, fresh_schema)))
            # now the held bind reads a's node: a ring of waits; the bind began waiting first, so its
            # deadlock check runs first and it is the victim (rolled back, which frees a's node)
            await asyncio.wait_for(held.execute(f"SELECT {lock_read_sql('$1')}", a), 20)
            await eventually(lambda: _is(1, _waiting(db_conn, fresh_schema)))  # the bind, run again, waits
            assert not task.done()
        r = await asyncio.wait_for(task, 20)
        assert (r.status_code, r.json()["outcome"]) == (200, "bound"), r.text
        assert _retries() == before + 1
        n = await db_conn.fetchval(f'SELECT count(*) FROM "{fresh_schema}".bindings WHERE customer_id = $1', a)
        assert n == 1
