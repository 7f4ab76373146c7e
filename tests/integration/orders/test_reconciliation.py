"""Daily reconciliation against WeChat Pay's bills (stand-in over real HTTP): trade bill and
fund-flow bill downloaded, hash checked, gunzipped and compared with orders' records; a
planted difference is found, by the function and by the command."""
from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime

import pytest

from services.orders.domain.wechatpay import CST
from services.orders.main import build_calls
from services.orders.reconcile import run_and_store
from shared import db

pytestmark = pytest.mark.integration


async def _paid(paying, ids, tag):
    order = await paying.place(ids("buyer"), ids(tag).replace("-", ""), openid=ids("oB"))
    _, resp = await paying.pay.request_payment(order["payment"])
    assert resp is not None and resp.status_code == 204
    return order


async def test_reconciliation_matches_then_finds_planted_differences(paying, ids):
    a, b = await _paid(paying, ids, "A"), await _paid(paying, ids, "B")
    rno = ids("RA")
    r = await paying.http.post(f"/v1/orders/{a['order_id']}/refunds", headers=paying.who("op", "operator"),
                               json={"out_refund_no": rno, "lines": [{"line_id": "2", "quantity": 1, "amount_fen": 3000}]})
    assert r.status_code == 201
    await paying.events.until_type(a["order_id"], "OrderRefunded")   # submitted, PROCESSING, then SUCCESS by notice
    today = datetime.now(CST).date()

    pool = await db.create_pool(paying.settings.database_url, paying.schema, min_size=1, max_size=2)
    calls = build_calls(paying.settings)
    try:
        clean = await run_and_store(pool, calls, today, now=paying.clock())
        assert clean.status == "matched", clean.findings
        assert clean.summary["our_payments"] == 2 and clean.summary["our_refunds"] == 1

        # planted: WeChat has a payment orders never saw, and bills B for one fen more
        stranger = ids("X").replace("-", "")
        paying.pay.payment_resource(stranger, 777)
        paying.pay.transactions[b["out_trade_no"]]["amount"]["total"] += 1
        found = await run_and_store(pool, calls, today, now=paying.clock())
        assert found.status == "differences"
        got = {(f.kind, f.subject, f.key, f.ours_fen, f.wechat_fen) for f in found.findings}
        assert ("extra", "payment", stranger, None, 777) in got
        assert ("amount", "payment", b["out_trade_no"], b["total_fen"], b["total_fen"] + 1) in got
        assert len(got) == 2, got
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, summary FROM reconciliations WHERE bill_date = $1", today)
        assert row["status"] == "differences"

        # the command says the same (exit 1) and lists the planted number
        env = {**os.environ, **paying.pay.env(), **paying.pay.client_env(paying.standin_url, paying.notify_url),
               "DATABASE_URL": paying.settings.database_url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.orders.reconcile", "--date", today.isoformat(), "--schema", paying.schema,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 1, out.decode()
        assert stranger in out.decode() and b["out_trade_no"] in out.decode()

        # a download that does not match its hash is refused, never compared
        paying.pay.corrupt_bills = True
        broken = await run_and_store(pool, calls, today, now=paying.clock())
        assert broken.status == "failed" and "SHA1" in broken.summary["error"]
    finally:
        await calls.aclose()
        await pool.close()
