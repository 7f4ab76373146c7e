"""概览: daily sales through distribution, commission cost and its ratio, new promoters and
customers (the console's own projection), and what waits for a decision (the services' APIs)."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from services.console.api.deps import OperatorDep, RuntimeDep, backends, now_of, render
from services.console.domain.overview import COLUMNS, business_day, totals
from services.console.store import figures

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root():
    return RedirectResponse("/overview", status_code=303)


@router.get("/overview")
async def overview(request: Request, rt: RuntimeDep, op: OperatorDep, days: int = 0):
    n = days if 1 <= days <= 366 else rt.settings.overview_days  # type: ignore[attr-defined]
    tz = ZoneInfo(rt.settings.business_timezone)  # type: ignore[attr-defined]
    today = business_day(now_of(rt), tz)
    since = today - timedelta(days=n - 1)
    async with rt.pool.acquire() as conn:
        rows = {r["day"]: r for r in await figures.days(conn, since)}
    series = []
    for i in range(n):
        d = since + timedelta(days=i)
        r = rows.get(d) or dict.fromkeys(COLUMNS, 0)
        series.append({"day": d.isoformat(), **{c: int(r[c]) for c in COLUMNS}})
    t = totals(series)
    b = backends(rt)
    apps, wds = await asyncio.gather(
        b.call("referral", "GET", "/v1/admin/applications", username=op.username, role=op.role,
               params={"state": "pending", "page_size": 200}),
        b.call("payout", "GET", "/v1/admin/withdrawals", username=op.username, role=op.role,
               params={"status": "pending_review", "limit": 500}))
    pending = {
        "applications": len(apps.body) if apps.ok else None,
        "withdrawals": len(wds.body["items"]) if wds.ok else None,
        "withdrawals_fen": sum(w["amount_fen"] for w in wds.body["items"]) if wds.ok else None,
        "errors": [r.message for r in (apps, wds) if not r.ok],
    }
    return render(request, "overview.html", op, series=series, totals=t, pending=pending, days=n,
                  chart_json=json.dumps(series))
