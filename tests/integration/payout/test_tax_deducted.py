"""The income tax withheld is taken out of the WeChat transfer, not out of the balances: the stand-in
receives amount - fee - tax, every balance (payout's ledger, commission's algebra over the same
events) moves by the whole amount, the events carry the tax, the second withdrawal of the month
withholds after what the first really withheld, the income report shows the recorded tax, and the
rebuild of the ledger from the log equals live."""
from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.commission.domain.balance import delta_of as commission_delta_of
from services.payout.replay import compare, rebuild
from shared.db import drop_schema
from shared.events import Envelope, catalog
from tests.integration.payout.conftest import outbox_events, published_end

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


async def test_the_transfer_is_the_amount_less_fee_and_withheld_tax(make_svc, commission, ids, standin, schema_conn,
                                                                     infra, fresh_schema, origin):
    p = ids("taxed")
    await commission.settle(p, 1_200_000)                                    # 12,000 yuan available
    settings = dict(max_withdrawal_fen=2_000_000, auto_approve_max_fen=2_000_000, fee_bp=100, fee_max_fen=500,
                    daily_amount_max_fen=10_000_000)
    async with make_svc(**settings) as svc:
        await svc.wait_available(p, 1_200_000)
        # shown before confirming: 10,000 yuan this month is 8,000 - 5,000 = 3,000 taxable x 3 % = 90 yuan
        quote = (await svc.client.get("/v1/promoters/me/tax-quote", params={"amount_fen": 1_000_000},
                                      headers=svc.who(p))).json()
        assert (quote["fee_fen"], quote["withheld_fen"], quote["transfer_fen"]) == (500, 9_000, 990_500), quote
        short = (await svc.client.get("/v1/withdrawals/quote", params={"amount_fen": 1_000_000}, headers=svc.who(p))).json()
        assert (short["fee_fen"], short["tax_withheld_fen"], short["net_fen"]) == (500, 9_000, 990_500), short

        r = await svc.request(p, 1_000_000, "k1", real_name="张三丰")
        assert r.status_code == 201, r.text
        first = r.json()
        assert (first["amount_fen"], first["fee_fen"], first["tax_withheld_fen"], first["net_fen"]) == (
            1_000_000, 500, 9_000, 990_500)
        w = await svc.wait_status(p, first["withdrawal_id"], "transferring")
        assert standin.bill(w["out_bill_no"]).request["transfer_amount"] == 990_500     # gross - fee - tax
        await standin.confirm(w["out_bill_no"])
        await svc.wait_status(p, first["withdrawal_id"], "paid")

        # the second this month withholds after the 90 yuan really withheld: cumulative 11,000 yuan,
        # 8,800 - 5,000 = 3,800 x 3 % = 114, minus 90 = 24 yuan
        quote = (await svc.client.get("/v1/promoters/me/tax-quote", params={"amount_fen": 100_000},
                                      headers=svc.who(p))).json()
        assert (quote["withheld_before_fen"], quote["withheld_fen"], quote["transfer_fen"]) == (9_000, 2_400, 97_100)
        second = (await svc.request(p, 100_000, "k2")).json()
        assert (second["tax_withheld_fen"], second["net_fen"]) == (2_400, 97_100), second
        w2 = await svc.wait_status(p, second["withdrawal_id"], "transferring")
        assert standin.bill(w2["out_bill_no"]).request["transfer_amount"] == 97_100
        await standin.confirm(w2["out_bill_no"])
        await svc.wait_status(p, second["withdrawal_id"], "paid")

        # balances move by the whole amount: the tax is part of the promoter's remuneration
        a = await svc.available(p)
        assert (a["available_fen"], a["reserved_fen"], a["withdrawn_fen"]) == (100_000, 0, 1_100_000)
        requested = await outbox_events(schema_conn, "WithdrawalRequested")
        paid = await outbox_events(schema_conn, "WithdrawalPaid")
        assert sorted((e["amount_fen"], e["fee_fen"], e["tax_withheld_fen"]) for e in paid) == [
            (100_000, 500, 2_400), (1_000_000, 500, 9_000)]
        assert sorted(e["tax_withheld_fen"] for e in requested) == [2_400, 9_000]

        # commission's balance algebra over the very events published: it moves by the gross too
        rows = await schema_conn.fetch("SELECT value FROM outbox ORDER BY seq")
        moved = {"available": 0, "reserved": 0, "withdrawn": 0}
        for row in rows:
            env = Envelope.from_bytes(bytes(row["value"]))
            d = commission_delta_of(env.event_type, catalog.payload(env))
            if d is not None:
                moved["available"] += d[1].available_fen
                moved["reserved"] += d[1].reserved_fen
                moved["withdrawn"] += d[1].withdrawn_fen
        assert moved == {"available": -1_100_000, "reserved": 0, "withdrawn": 1_100_000}
        assert sum(catalog.payload(Envelope.from_bytes(bytes(r["value"]))).transfer_fen for r in rows
                   if json.loads(bytes(r["value"]))["event_type"] == "WithdrawalPaid") == 990_500 + 97_100

        # the income report files the tax as withheld
        today = datetime.now(timezone.utc).astimezone(TZ).date()
        report = await svc.client.get("/v1/admin/tax/income-report", headers=svc.admin(),
                                      params={"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))})
        row = {x["promoter_id"]: x for x in csv.DictReader(io.StringIO(report.text))}[p]
        assert (row["payments"], row["income_fen"], row["withheld_fen"], row["after_tax_fen"]) == (
            "2", "1100000", "11400", "1088600")

        stop_at = await published_end(schema_conn, infra["kafka"])

    replay_schema = "t_" + uuid.uuid4().hex[:12]
    try:
        assert await rebuild(infra["db"], infra["kafka"], replay_schema, stop_at, start_at=origin) > 0
        assert await compare(infra["db"], fresh_schema, replay_schema, [p]) == []
    finally:
        await drop_schema(infra["db"], replay_schema)
