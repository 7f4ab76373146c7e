"""The outbox relay in its own process (FENXIAO_OUTBOX_RELAY=process, shared.relay_process), with
the tally service as a separate OS process on the real broker and database: every caused event
reaches Kafka in outbox order per partition and the chains verify; a relay process killed (-9) is
restarted while the service says it is not ready; a service killed (-9) takes its relay process
with it, and the next one publishes what was left."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared import chain
from shared.events import derive_event_id
from simulation.cluster import relay_children, stat_fields
from tests.conftest import create_topics, eventually
from tests.integration.foundation.test_chain import read_all
from tests.integration.foundation.test_projector import TallyProcess, publish_tallies, totals

pytestmark = pytest.mark.integration

PROCESS = {"FENXIAO_OUTBOX_RELAY": "process"}


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


async def relay_pid(svc: TallyProcess) -> int:
    got: list[int] = []

    async def one() -> bool:
        got[:] = relay_children(svc.proc.pid)
        return len(got) == 1

    await eventually(one, timeout=30)
    return got[0]


async def readyz(svc: TallyProcess) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as c:
        return await c.get(f"http://127.0.0.1:{svc.env['TALLY_PORT']}/readyz")


async def metric(svc: TallyProcess, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(f"http://127.0.0.1:{svc.env['TALLY_PORT']}/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))


async def outbox_order(dsn: str, schema: str) -> list[tuple[str, int | None]]:
    """(event id, seq) of every outbox row, by seq."""
    conn = await asyncpg.connect(dsn)
    try:
        return [(str(r["event_id"]), r["seq"]) for r in await conn.fetch(f"SELECT event_id, seq FROM {schema}.outbox ORDER BY seq")]
    finally:
        await conn.close()


async def unpublished(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox_pending")
    finally:
        await conn.close()


async def check_log(infra, schema: str, out: str, n: int) -> None:
    """Every outbox row is published, exactly the `n` expected event ids are in the log, each
    partition holds them in outbox (seq) order (a resend after a kill repeats a record, never
    reorders), and the chains verify against the relay's stored heads."""
    await eventually(lambda: _all_published(infra["db"], schema, n), timeout=60)
    rows = await outbox_order(infra["db"], schema)
    seq_of = dict(rows)
    records = await read_all(infra["kafka"], out)
    ids_in_log = [json.loads(r.value)["event_id"] for r in records]
    assert set(ids_in_log) == set(seq_of) and len(seq_of) == n
    firsts: dict[int, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for r, eid in zip(records, ids_in_log):
        if eid not in seen:
            seen.add(eid)
            firsts[r.partition].append(seq_of[eid])
    for part, seqs in firsts.items():
        assert seqs == sorted(seqs), f"partition {part} is out of outbox order"
    v = await chain.verify(infra["kafka"], [out], expected=await chain.stored_heads(infra["db"], schema))
    assert v.ok, [str(p) for p in v.problems]
    assert sum(w.records for w in v.walks) == len(records)


async def _all_published(dsn: str, schema: str, n: int) -> bool:
    return (await totals(dsn, schema))[0] >= n and await unpublished(dsn, schema) == 0


async def test_a_relay_process_publishes_every_row_in_order_and_chained(infra, fresh_schema, ids):
    topic, out = ids("rp-in"), ids("rp-out")
    await create_topics(infra["kafka"], [topic, out])
    svc = await TallyProcess(infra, fresh_schema, topic, out, **PROCESS).start()
    try:
        child = await relay_pid(svc)
        assert child != svc.proc.pid
        await publish_tallies(infra["kafka"], topic, 1200, counters=16)
        await check_log(infra, fresh_schema, out, 1200)
        # the relay process's counts reach the service's own /metrics
        async def counted() -> bool:
            return await metric(svc, "fenxiao_outbox_published_total") >= 1200
        await eventually(counted, timeout=30)
        assert (await readyz(svc)).status_code == 200
        assert relay_children(svc.proc.pid) == [child]  # one relay process all along
        # it runs on the loop its service runs on (uvloop, installed with uvicorn[standard])
        maps = Path(f"/proc/{child}/maps").read_text()
        assert "uvloop" in maps and "uvloop" in Path(f"/proc/{svc.proc.pid}/maps").read_text()
    finally:
        svc.kill()


async def test_a_killed_relay_process_is_restarted_and_the_service_is_not_ready_meanwhile(infra, fresh_schema, ids):
    topic, out = ids("rp-kill-in"), ids("rp-kill-out")
    await create_topics(infra["kafka"], [topic, out])
    # a restart delay that leaves the not-ready window wide open to a poll
    svc = await TallyProcess(infra, fresh_schema, topic, out, TALLY_DELAY_S="0.02", FENXIAO_OUTBOX_RELAY_RESTART_S="2",
                             **PROCESS).start()
    try:
        first = await relay_pid(svc)
        await publish_tallies(infra["kafka"], topic, 1500, counters=16)
        await eventually(lambda: _applied(infra["db"], fresh_schema, 200), timeout=60)
        os.kill(first, signal.SIGKILL)  # while the service works through its backlog

        async def not_ready() -> bool:
            r = await readyz(svc)
            return r.status_code == 503 and "outbox_relay" in r.json().get("not_ready", {})
        await eventually(not_ready, timeout=30, interval=0.02)

        async def ready_again() -> bool:
            return (await readyz(svc)).status_code == 200
        await eventually(ready_again, timeout=60)
        second = await relay_pid(svc)
        assert second != first and not alive(first)
        assert await metric(svc, "fenxiao_outbox_relay_process_exits_total") == 1
        await publish_tallies(infra["kafka"], topic, 300, counters=16, start=1500)
        await check_log(infra, fresh_schema, out, 1800)
        # deterministic ids: each echo is the one its tally causes, once
        conn = await asyncpg.connect(infra["db"])
        try:
            seen = {str(r[0]) for r in await conn.fetch(f"SELECT event_id FROM {fresh_schema}.tally_seen")}
        finally:
            await conn.close()
        assert {eid for eid, _ in await outbox_order(infra["db"], fresh_schema)} == {
            str(derive_event_id(uuid.UUID(s), "echo")) for s in seen}
    finally:
        svc.kill()


async def _applied(dsn: str, schema: str, at_least: int) -> bool:
    return (await totals(dsn, schema))[0] >= at_least


async def test_a_killed_service_takes_its_relay_process_along_and_the_next_publishes_what_was_left(infra, fresh_schema, ids):
    topic, out = ids("rp-parent-in"), ids("rp-parent-out")
    await create_topics(infra["kafka"], [topic, out])
    svc = await TallyProcess(infra, fresh_schema, topic, out, TALLY_DELAY_S="0.1", PROJECTOR_BATCH_MAX="100",
                             **PROCESS).start()
    child = await relay_pid(svc)
    await publish_tallies(infra["kafka"], topic, 2000, counters=16)
    await eventually(lambda: _applied(infra["db"], fresh_schema, 300), timeout=60)
    svc.kill()  # SIGKILL: no shutdown code runs; the kernel closes its end of the wake pipe

    async def gone() -> bool:
        return not alive(child)
    await eventually(gone, timeout=30)
    assert (await totals(infra["db"], fresh_schema))[0] < 2000, "the service was not killed mid-backlog"
    svc = await TallyProcess(infra, fresh_schema, topic, out, **PROCESS).start()
    try:
        await check_log(infra, fresh_schema, out, 2000)
    finally:
        svc.kill()
    async def reaped() -> bool:
        return not any(alive(p) for p in relay_children(svc.proc.pid))
    await eventually(reaped, timeout=30)


async def test_a_crash_between_commit_and_publish_loses_nothing_with_a_relay_process(infra, fresh_schema, ids):
    """As test_projector's crash test, the service dying (exit 9) right after a commit that caused
    events: its relay process publishes what was committed or leaves it in the outbox; either way
    the restarted service has every caused event on Kafka, in order, chained."""
    topic, out = ids("rp-crash-in"), ids("rp-crash-out")
    await create_topics(infra["kafka"], [topic, out])
    svc = await TallyProcess(infra, fresh_schema, topic, out, TALLY_CRASH_AFTER_COMMIT="1", **PROCESS).start()
    child = await relay_pid(svc)
    await publish_tallies(infra["kafka"], topic, 50)
    assert await svc.exited() == 9

    async def gone() -> bool:
        return not alive(child)
    await eventually(gone, timeout=30)
    assert (await totals(infra["db"], fresh_schema))[0] > 0
    svc = await TallyProcess(infra, fresh_schema, topic, out, **PROCESS).start()
    try:
        await check_log(infra, fresh_schema, out, 50)
    finally:
        svc.kill()
