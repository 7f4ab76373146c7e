"""The plan simulator and the compliance report over the real log (the history of the re-deriving
audit's test): the simulated current cost of a promoter equals what the live service accrued net of
reversals; a draft with a higher level-1 rate costs more by exactly the difference of the rates; an
invalid draft is refused; the compliance report passes every check and writes CSV and HTML."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from services.commission.main import create_app
from tests.conftest import running_app
from tests.integration.commission.conftest import PLAN, now, settings, who
from tests.integration.commission.test_audit_rederive import play_history

pytestmark = pytest.mark.integration
#: tiers by epoch with no epoch boundary during the test (every tier stays the first one)
NO_EPOCH_BOUNDARY = {"tier_epoch_s": 1e9}
ENV = {"COMMISSION_TIER_EPOCH_S": "1e9"}
ROOT = Path(__file__).resolve().parents[3]


async def test_simulate_a_draft_and_report_compliance(infra, schema, feed, ids, dbc, tmp_path):
    start = now()
    app = create_app(settings(**NO_EPOCH_BOUNDARY), schema=schema)
    async with running_app(app) as client:
        people = await play_history(client, feed, dbc, ids)
        end = now() + timedelta(seconds=1)
        b = people["b"]
        # the same draft as plan version 1 but level 1 pays 20 % (partner tier unchanged)
        draft = {**PLAN, "tiers": [{**PLAN["tiers"][0], "level1_bp": 2000}, PLAN["tiers"][1]]}
        r = await client.post("/v1/admin/plan/simulate", json={"plan": draft, "from": start.isoformat(), "to": end.isoformat()},
                              headers=who("op", "plan_admin"))
        assert r.status_code == 200, r.text
        sim = r.json()
        rows = {x["key"]: x for x in sim["by_promoter"]}
        for p in (people["a"], b):
            live = await dbc.fetchval("SELECT sum(amount_fen - reversed_fen) FROM accruals WHERE beneficiary_id = $1", p)
            assert rows[p]["current_fen"] == live
        row = rows[b]
        # no epoch boundary during the test: b stays at sharer. o1 was fully refunded (nets 0 at any rate); the
        # self-purchase rate is the same; o3 was paid under version 2 (b level 1 at 12 %, a level 2 at 3 %), which
        # the draft (20 %, 5 %) replaces inside the period: b +5000 fen * 8 % = 400, a +5000 fen * 2 % = 100
        assert rows[b]["difference_fen"] == 400 and rows[people["a"]]["difference_fen"] == 100
        assert {x["key"] for x in sim["by_product"]} >= {"sku", "fixed-sku"}
        # an invalid draft is refused like PUT /v1/admin/plan
        bad = {**PLAN, "cap_bp": 4000}
        r = await client.post("/v1/admin/plan/simulate", json={"plan": bad, "from": start.isoformat(), "to": end.isoformat()},
                              headers=who("op", "plan_admin"))
        assert r.status_code == 422 and r.json()["code"] == "cap_above_ceiling", r.text
        assert (await client.post("/v1/admin/plan/simulate", json={"plan": draft, "from": end.isoformat(), "to": start.isoformat()},
                                  headers=who("op", "plan_admin"))).status_code == 422
        assert (await client.post("/v1/admin/plan/simulate", json={"plan": draft, "from": start.isoformat(), "to": end.isoformat()},
                                  headers=who(b))).status_code == 403

        # the compliance report over HTTP, for auditors: HTML, the checks as CSV, the teams as CSV
        period = {"from": start.isoformat(), "to": end.isoformat()}
        r = await client.get("/v1/admin/compliance-report", params=period, headers=who("aud", "auditor"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text
        assert r.headers["x-compliance-result"] == "pass" and "Overall: <b>PASS</b>" in r.text
        r = await client.get("/v1/admin/compliance-report", params={**period, "format": "csv"}, headers=who("aud", "auditor"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
        assert [x["result"] for x in csv.DictReader(r.text.splitlines()) if x["result"] != "finding"] == ["pass"] * 5
        r = await client.get("/v1/admin/compliance-report", params={**period, "format": "teams.csv"}, headers=who("aud", "auditor"))
        team = next(t for t in csv.DictReader(r.text.splitlines()) if t["promoter_id"] == people["a"] and t["ranking"] == "by_size")
        assert (int(team["team_size"]), int(team["team_depth"])) == (4, 2)
        for refused in (who("op", "plan_admin"), who("op", "operator"), who(b)):
            r = await client.get("/v1/admin/compliance-report", params=period, headers=refused)
            assert r.status_code == 403, r.text
        r = await client.get("/v1/admin/compliance-report", params={"from": end.isoformat(), "to": start.isoformat()},
                             headers=who("aud", "auditor"))
        assert r.status_code == 422 and r.json()["detail"]["code"] == "empty_period", r.text

        # and from the console's audit page: an auditor gets commission's report, a finance operator is refused
        await console_fetches_the_report(infra, app, start, end)

    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "services.commission.audit", "compliance", "--from", start.isoformat(),
                           "--to", end.isoformat(), "--out", str(out), "--quiet", "--schema", schema], cwd=ROOT, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("[PASS]") == 5 and "deepest level paid: 2" in done.stdout
    rows = list(csv.DictReader((out / "compliance.csv").open()))
    assert [r["result"] for r in rows if r["result"] != "finding"] == ["pass"] * 5
    teams = list(csv.DictReader((out / "teams.csv").open()))
    a_team = next(t for t in teams if t["promoter_id"] == people["a"] and t["ranking"] == "by_size")
    assert (int(a_team["team_size"]), int(a_team["team_depth"])) == (4, 2)  # b, s, and their customers c and d
    assert "Overall: <b>PASS</b>" in (out / "compliance.html").read_text()

    done = subprocess.run([sys.executable, "-m", "services.commission.audit", "simulate", "--plan", str(_write(tmp_path, draft)),
                           "--from", start.isoformat(), "--to", end.isoformat(), "--quiet", "--top", "1000", "--schema", schema], cwd=ROOT,
                          env={**os.environ, **ENV}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"  {b}: current {row['current_fen']}, draft {row['draft_fen']}" in done.stdout


async def console_fetches_the_report(infra, commission_app, start, end) -> None:
    import re
    import uuid

    import httpx

    from services.console.main import create_app as console_app
    from services.console.settings import ConsoleSettings
    from shared.db import drop_schema

    pw = "pass-word-1"
    console_schema = "t_" + uuid.uuid4().hex[:12]
    cs = ConsoleSettings(bootstrap_operators=f"aud:auditor:{pw};fin:finance:{pw}", referral_url="http://127.0.0.1:9",
                         commission_url="http://commission", payout_url="http://127.0.0.1:9", backend_timeout_s=30)
    try:
        app = console_app(cs, schema=console_schema, backend_transport=httpx.ASGITransport(app=commission_app))
        async with running_app(app) as console:
            async def login(user: str) -> None:
                console.cookies.clear()
                page = await console.get("/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                r = await console.post("/login", data={"username": user, "password": pw, "csrf_token": token, "next": "/audit"})
                assert r.status_code == 303, r.text

            period = {"start": (start - timedelta(days=1)).date().isoformat(), "end": (end + timedelta(days=1)).date().isoformat()}
            await login("aud")
            page = await console.get("/audit")
            assert 'action="/audit/compliance"' in page.text
            r = await console.get("/audit/compliance", params=period)
            assert r.status_code == 200 and "Overall: <b>PASS</b>" in r.text, r.text[:500]
            r = await console.get("/audit/compliance", params={**period, "format": "csv"})
            assert r.status_code == 200 and r.text.startswith("check,result,value,finding"), r.text[:300]
            await login("fin")
            r = await console.get("/audit/compliance", params=period)
            assert r.status_code == 403
    finally:
        await drop_schema(infra["db"], console_schema)


def _write(tmp_path: Path, plan: dict) -> Path:
    import json

    p = tmp_path / "draft.json"
    p.write_text(json.dumps(plan))
    return p
