"""The live ledger (commission events + withdrawals written directly) equals a rebuild from
the event log alone (commission + payout topics) into a fresh schema, to the fen."""
from __future__ import annotations

import uuid

import pytest

from services.payout.replay import compare, rebuild
from shared.db import drop_schema
from tests.integration.payout.conftest import published_end

pytestmark = pytest.mark.integration


async def test_rebuilding_the_ledger_from_events_equals_live(make_svc, commission, ids, standin, schema_conn, infra,
                                                         fresh_schema, origin):
    p, q = ids("promoter-p"), ids("promoter-q")
    lapse_openid = "o-lapse-" + p
    standin.behave(lapse_openid, outcome="overdue")
    await commission.settle(p, 10_000, 5_000)
    await commission.reverse(p, 3_000, "settled")     # already settled: taken from available
    await commission.reverse(p, 999, "frozen")        # still frozen: payout never had it
    await commission.settle(q, 777)
    async with make_svc(auto_approve_max_fen=5_000) as svc:
        await svc.wait_available(p, 12_000)
        await svc.wait_available(q, 777)
        paid = (await svc.request(p, 2_000, "k1", openid="o-paid-" + p)).json()["withdrawal_id"]
        rejected = (await svc.request(p, 6_000, "k2")).json()["withdrawal_id"]
        lapsed = (await svc.request(p, 1_500, "k3", openid=lapse_openid)).json()["withdrawal_id"]
        waiting = (await svc.request(p, 1_000, "k4", openid="o-wait-" + p)).json()["withdrawal_id"]
        (await svc.request(q, 500, "k1")).json()
        r = await svc.client.post(f"/v1/admin/withdrawals/{rejected}/decision",
                                  json={"decision": "reject", "reason": "资料不全"}, headers=svc.admin())
        assert r.status_code == 200
        w = await svc.wait_status(p, paid, "transferring")
        await standin.confirm(w["out_bill_no"])
        w = await svc.wait_status(p, lapsed, "transferring")
        await standin.lapse(w["out_bill_no"])
        await svc.wait_status(p, paid, "paid")
        await svc.wait_status(p, lapsed, "released")
        await svc.wait_status(p, waiting, "transferring")

        a = await svc.available(p)
        assert (a["available_fen"], a["reserved_fen"], a["withdrawn_fen"]) == (9_000, 1_000, 2_000)

        stop_at = await published_end(schema_conn, infra["kafka"])

    replay_schema = "t_" + uuid.uuid4().hex[:12]
    try:
        # from where the live ledger started (earlier tests' events on the shared topics are not its)
        read = await rebuild(infra["db"], infra["kafka"], replay_schema, stop_at, start_at=origin)
        assert read > 0
        assert await compare(infra["db"], fresh_schema, replay_schema, [p, q]) == []
        # and the rebuild is not trivially empty
        from shared import db as shared_db
        pool = await shared_db.create_pool(infra["db"], replay_schema, min_size=1, max_size=1)
        try:
            rows = {r["promoter_id"]: tuple(r)[1:] for r in await pool.fetch(
                "SELECT promoter_id, available_fen, reserved_fen, withdrawn_fen FROM balances WHERE promoter_id = ANY($1)",
                [p, q])}
        finally:
            await pool.close()
        assert rows == {p: (9_000, 1_000, 2_000), q: (277, 500, 0)}
        # and the comparison does see a fen out of place
        await schema_conn.execute("UPDATE balances SET available_fen = available_fen + 1 WHERE promoter_id = $1", q)
        assert [d.promoter_id for d in await compare(infra["db"], fresh_schema, replay_schema, [p, q])] == [q]
    finally:
        await drop_schema(infra["db"], replay_schema)

