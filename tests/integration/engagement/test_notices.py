"""Notices: live on a connected stream, resumable with Last-Event-ID on any replica, shown once."""
from __future__ import annotations

import asyncio

import pytest

from tests.conftest import eventually
from tests.integration.engagement.conftest import open_stream, uid

pytestmark = pytest.mark.integration

#: the issue's promise: a promoter hears of an accrual within a second
DEADLINE_S = 1.0


async def warm_up(svc, events, promoter: str) -> None:
    """The projector has its partitions and has caught up: a first accrual became a notice."""
    await events.accrue(promoter, 1)

    async def seen():
        r = await svc.client.get("/v1/me/notices", headers=svc.who(promoter))
        return r.json()["items"]
    await eventually(seen, timeout=60)


async def test_an_accrual_reaches_a_connected_stream_before_the_deadline(make_svc, events):
    promoter = uid("p")
    async with make_svc() as svc:
        await warm_up(svc, events, promoter)
        async with open_stream(svc, promoter) as stream:
            loop = asyncio.get_running_loop()
            sent = await events.accrue(promoter, 1234)
            published_at = loop.time()
            # arrival before the deadline is the property: a TimeoutError here is the failure
            notice = await stream.next_notice(timeout=DEADLINE_S)
            assert loop.time() - published_at <= DEADLINE_S
        assert notice["kind"] == "commission_accrued" and notice["amount_fen"] == 1234
        assert notice["title"] == "新佣金 ¥12.34" and notice["ref"] == sent.payload["order_id"]
        assert notice["id"] == stream.ready_after + 1


async def test_reconnecting_with_the_last_event_id_on_another_replica_loses_nothing(make_svc, events):
    promoter, other = uid("p"), uid("o")
    async with make_svc(instances=2) as (a, b):
        await warm_up(a, events, promoter)
        async with open_stream(a, promoter) as stream:
            await events.accrue(promoter, 100)
            first = await stream.next_notice(timeout=30)
        # disconnected: money keeps moving (and another promoter's too)
        sent = [await events.accrue(promoter, 200 + i) for i in range(3)]
        await events.accrue(other, 999)
        dup = await events.send(env=sent[0])  # an at-least-once repeat of an event is shown once
        assert dup.event_id == sent[0].event_id
        await events.settle(promoter, 100)
        async with open_stream(b, promoter, last_event_id=first["id"]) as stream:
            got = [await stream.next_notice(timeout=30) for _ in range(4)]
            with pytest.raises(TimeoutError):
                await stream.next_notice(timeout=1.5)  # nothing more: not the repeat, not the other's
        assert [n["id"] for n in got] == [first["id"] + i for i in range(1, 5)]
        assert [n["amount_fen"] for n in got] == [200, 201, 202, 100]
        assert [n["kind"] for n in got] == ["commission_accrued"] * 3 + ["commission_settled"]


async def test_a_promoter_streams_only_their_own_notices(make_svc, events):
    me, other = uid("me"), uid("other")
    async with make_svc() as svc:
        await warm_up(svc, events, me)
        async with open_stream(svc, me) as stream:
            await events.accrue(other, 555)
            await events.accrue(me, 777)
            n = await stream.next_notice(timeout=30)
            assert n["amount_fen"] == 777
        r = await svc.client.get("/v1/me/notices", headers=svc.who(me))
        assert 555 not in [i["amount_fen"] for i in r.json()["items"]]
        r = await svc.client.get("/v1/me/notices/stream", headers={})
        assert r.status_code == 401


async def test_a_lost_listener_connection_loses_no_notice(make_svc, events, fresh_schema, db_conn):
    promoter = uid("p")
    async with make_svc() as svc:
        await warm_up(svc, events, promoter)
        async with open_stream(svc, promoter) as stream:
            # PostgreSQL drops the replica's LISTEN session (a failover, a network cut)
            killed = await db_conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                f"fenxiao-{fresh_schema}-listener")
            assert killed == 1
            await events.accrue(promoter, 4321)
            n = await stream.next_notice(timeout=30)  # found by the stream's own re-read, or after the reconnect
            assert n["amount_fen"] == 4321

        async def listening_again():
            return await db_conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                          f"fenxiao-{fresh_schema}-listener") == 1
        await eventually(listening_again, timeout=30)
        async with open_stream(svc, promoter) as stream:
            await events.accrue(promoter, 1111)
            assert (await stream.next_notice(timeout=30))["amount_fen"] == 1111
