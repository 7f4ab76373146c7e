"""Tax over the real PostgreSQL: the payee identity is recorded only with consent and only
encrypted with the person's own key; the withholding quote counts this year's earlier payments (paid
and in flight) and the months of the run; the period's income report lists identity, income and tax
per person; erasure shreds the person's key (identity unreadable, refused afterwards) while amounts
stay in the report."""
from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


def resident_id(body17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, weights)) % 11]


async def add_withdrawal(conn, promoter: str, amount_fen: int, at: datetime, status: str = "paid") -> None:
    await conn.execute(
        """INSERT INTO withdrawals (withdrawal_id, promoter_id, idempotency_key, amount_fen, fee_fen, net_fen, openid, status,
               business_day, requested_at, finished_at)
           VALUES ($1, $2, $3, $4, 0, $4, $5, $6, $7, $8, $9)""",
        uuid.uuid4(), promoter, uuid.uuid4().hex, amount_fen, f"openid-{promoter}", status, at.astimezone(TZ).date(), at,
        at if status == "paid" else None)


async def test_identity_quote_report_and_erasure(make_svc, ids, schema_conn):
    p, q = ids("payee"), ids("nobody")
    number = resident_id("11010519491231002")
    async with make_svc() as svc:
        put = lambda body, who=p: svc.client.put("/v1/promoters/me/payee-identity", json=body, headers=svc.who(who))  # noqa: E731
        r = await put({"real_name": "张三丰", "id_number": number, "consent": False})
        assert r.status_code == 422 and r.json()["code"] == "consent_required", r.text
        r = await put({"real_name": "张三丰", "id_number": number[:-1] + ("0" if number[-1] != "0" else "1"), "consent": True})
        assert r.status_code == 422 and r.json()["code"] == "invalid_id_number", r.text
        r = await put({"real_name": "张三丰", "id_number": number, "consent": True})
        assert r.status_code == 200, r.text
        assert (r.json()["real_name_masked"], r.json()["id_number_masked"]) == ("张**", "1" + "*" * 13 + number[-4:])
        got = (await svc.client.get("/v1/promoters/me/payee-identity", headers=svc.who(p))).json()
        assert got["consent_version"] and got["id_number_masked"].endswith(number[-4:])
        row = await schema_conn.fetchrow("SELECT * FROM payee_identities WHERE promoter_id = $1", p)
        assert number.encode() not in row["id_number_ct"] and "张三丰".encode() not in row["real_name_ct"]
        assert row["consent_purpose"] == "tax_withholding_and_platform_reporting"

        # last month 3,000 yuan paid; this month 3,000 paid and 4,000 approved (in flight): a two-month run
        now = datetime.now(timezone.utc)
        month_start = now.astimezone(TZ).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
        last_month = (month_start - timedelta(days=10)).astimezone(timezone.utc)
        await add_withdrawal(schema_conn, p, 300_000, last_month)
        await add_withdrawal(schema_conn, p, 300_000, now - timedelta(seconds=5))
        await add_withdrawal(schema_conn, p, 400_000, now - timedelta(seconds=4), status="approved")
        await add_withdrawal(schema_conn, q, 200_000, now - timedelta(seconds=3))
        r = await svc.client.get("/v1/promoters/me/tax-quote", params={"amount_fen": 500_000}, headers=svc.who(p))
        assert r.status_code == 200, r.text
        quote = r.json()
        # cumulative 15,000 yuan over 2 months: 12,000 - 10,000 = 2,000 x 3 % = 60 yuan; nothing withheld before
        assert (quote["months"], quote["cumulative_income_fen"], quote["taxable_fen"], quote["withheld_fen"]) == (2, 1_500_000, 200_000, 6_000)
        assert quote["after_tax_fen"] == 494_000 and quote["withheld_before_fen"] == 0
        assert (await svc.client.get("/v1/promoters/me/tax-quote", params={"amount_fen": 0}, headers=svc.who(p))).status_code == 422

        # the income report: paid only, per person, with identity
        start = (month_start - timedelta(days=40)).date()
        end = (now.astimezone(TZ) + timedelta(days=1)).date()
        report = lambda: svc.client.get("/v1/admin/tax/income-report", params={"from": str(start), "to": str(end)},  # noqa: E731
                                        headers=svc.admin())
        r = await report()
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
        rows = {x["promoter_id"]: x for x in csv.DictReader(io.StringIO(r.text))}
        assert (rows[p]["real_name"], rows[p]["id_number"], rows[p]["identity"], rows[p]["payments"], rows[p]["income_fen"]) == (
            "张三丰", number, "ok", "2", "600000")
        assert rows[q]["identity"] == "missing" and rows[q]["income_fen"] == "200000"
        assert (await svc.client.get("/v1/admin/tax/income-report", params={"from": str(start), "to": str(end)},
                                     headers=svc.who(p))).status_code == 403

        # erasure: the key is shredded, the money stays
        erase = lambda headers: svc.client.post(f"/v1/admin/persons/{p}/erase",  # noqa: E731
                                                json={"reason": "account deleted at the user's request"}, headers=headers)
        assert (await erase(svc.admin())).status_code == 403  # finance files the report; an operator erases
        r = await erase(svc.who("operator-2", "operator"))
        assert r.status_code == 200 and r.json()["keys_shredded"] == 1 and r.json()["withdrawals_cleared"] == 3, r.text
        assert (await svc.client.get("/v1/promoters/me/payee-identity", headers=svc.who(p))).status_code == 410
        assert (await put({"real_name": "张三丰", "id_number": number, "consent": True})).status_code == 410
        rows = {x["promoter_id"]: x for x in csv.DictReader(io.StringIO((await report()).text))}
        assert (rows[p]["identity"], rows[p]["real_name"], rows[p]["id_number"], rows[p]["income_fen"]) == ("erased", "", "", "600000")
        assert await schema_conn.fetchval("SELECT count(*) FROM withdrawals WHERE promoter_id = $1 AND openid <> 'erased'", p) == 0
        assert await schema_conn.fetchval("SELECT sum(amount_fen) FROM withdrawals WHERE promoter_id = $1", p) == 1_000_000
