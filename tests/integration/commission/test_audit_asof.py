"""Time travel over the real log: a promoter's balance and records as of instants between the
steps of an order's life (paid, partly refunded, settled, withdrawn) equal what the live balance
API showed at those instants; the admin API answers the same, others are refused."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from services.commission.audit.asof import as_of
from services.commission.main import create_app
from shared.contracts.orders import OrderCompleted, OrderRefunded, RefundedLine
from shared.contracts.payout import WithdrawalRequested
from tests.conftest import eventually, running_app
from tests.integration.commission.conftest import PLAN, now, settings, who
from tests.integration.commission.test_lifecycle import bind, enrol, paid

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


async def test_balance_and_records_as_of_past_instants(infra, schema, feed, ids):
    a, b, c = ids("pa"), ids("pb"), ids("buyer")
    t = now() - timedelta(hours=1)
    async with running_app(create_app(settings(), schema=schema)) as client:
        assert (await client.put("/v1/admin/plan", json=PLAN, headers=who("op", "plan_admin"))).status_code == 201
        await enrol(feed, a, t)
        await enrol(feed, b, t)
        await bind(feed, b, a, t)
        await bind(feed, c, b, t)
        order = ids("o")
        before = now()
        await feed.send(paid(order, c, now(), ("l1", "sku", 1, 10000)))

        async def balance_is(**want):
            got = (await client.get(f"/v1/admin/promoters/{b}/balance", headers=who("op", "auditor"))).json()
            return got if all(got[k] == v for k, v in want.items()) else None

        shown = {"paid": await eventually(lambda: balance_is(frozen_fen=1000))}
        t_paid = now()
        await feed.send(OrderRefunded(order_id=order, out_refund_no="r1", amount_fen=2500, refunded_at=now(),
                                      lines=(RefundedLine(line_id="l1", quantity=1, amount_fen=2500),)))
        shown["refunded"] = await eventually(lambda: balance_is(frozen_fen=750, reversed_fen=250))
        t_refunded = now()
        await feed.send(OrderCompleted(order_id=order, reason="receipt_confirmed", completed_at=now()))
        shown["settled"] = await eventually(lambda: balance_is(frozen_fen=0, available_fen=750))
        t_settled = now()
        await feed.send(WithdrawalRequested(withdrawal_id=ids("w"), promoter_id=b, amount_fen=700, fee_fen=0, requested_at=now()))
        shown["withdrawing"] = await eventually(lambda: balance_is(available_fen=50, reserved_fen=700))
        t_end = now()

        bootstrap = infra["kafka"]
        empty = await as_of(bootstrap, b, before)
        assert empty.records == [] and set(empty.balance.values()) == {0}
        for label, at in (("paid", t_paid), ("refunded", t_refunded), ("settled", t_settled), ("withdrawing", t_end)):
            r = await as_of(bootstrap, b, at)
            want = {k: v for k, v in shown[label].items() if k != "promoter_id"}
            assert r.balance == want, label
        r = await as_of(bootstrap, b, t_refunded)
        [rec] = r.records
        assert (rec["order_id"], rec["level"], rec["amount_fen"], rec["reversed_fen"], rec["status"]) == (order, "level1", 1000, 250, "frozen")
        [rec] = (await as_of(bootstrap, b, t_settled)).records
        assert (rec["status"], rec["settled_fen"]) == ("settled", 750)
        assert (await as_of(bootstrap, a, t_paid)).balance["frozen_fen"] == 500

        # the admin API
        resp = await client.get(f"/v1/admin/promoters/{b}/as-of", params={"at": t_refunded.isoformat()}, headers=who("op", "auditor"))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["balance"]["frozen_fen"] == 750 and body["records"][0]["reversed_fen"] == 250
        assert (await client.get(f"/v1/admin/promoters/{b}/as-of", params={"at": t_end.isoformat()}, headers=who(b))).status_code == 403
        future = (now() + timedelta(days=1)).isoformat()
        assert (await client.get(f"/v1/admin/promoters/{b}/as-of", params={"at": future}, headers=who("op", "auditor"))).status_code == 422
        assert (await client.get(f"/v1/admin/promoters/{b}/as-of", params={"at": "yesterday"}, headers=who("op", "auditor"))).status_code == 422

    # the CLI
    done = subprocess.run([sys.executable, "-m", "services.commission.audit", "as-of", "--promoter", b, "--at", t_settled.isoformat(),
                           "--quiet"], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "frozen_fen=0, available_fen=750" in done.stdout and f"order {order} line l1 level1: 1000 fen, reversed 250, settled" in done.stdout
