"""The demo's look at the operators' console: an operator logs in (a session and a CSRF token,
as a browser would), opens the overview and checks that the console's own projection counted
every paid order and every fen of accrued commission the traffic produced."""
from __future__ import annotations

import asyncio
import json
import re

import httpx

PASSWORD = "fenxiao-demo"
ACCOUNTS = {"ops": "operator", "fin": "finance", "plan": "plan_admin", "aud": "auditor", "view": "viewer"}


def bootstrap_env() -> str:
    return ";".join(f"{u}:{r}:{PASSWORD}" for u, r in ACCOUNTS.items())


async def check(url: str, *, orders: int, accrued_fen: int, log=print, timeout_s: float = 60.0) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=10) as h:
        page = await h.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = await h.post("/login", data={"username": "aud", "password": PASSWORD, "csrf_token": token, "next": "/overview"})
        if r.status_code != 303 or r.headers.get("location") != "/overview":
            log(f"console: login failed ({r.status_code})")
            return False
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            page = await h.get("/overview")
            series = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page.text,
                                          re.S).group(1))
            got_orders = sum(d["orders"] for d in series)
            got_accrued = sum(d["commission_fen"] for d in series)
            if (got_orders, got_accrued) == (orders, accrued_fen) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        ok = (got_orders, got_accrued) == (orders, accrued_fen)
        log(f"console {url} (accounts {', '.join(ACCOUNTS)} / password {PASSWORD}): overview counts {got_orders} orders, "
            f"¥{got_accrued / 100:,.2f} accrued commission: {'equal to' if ok else 'DIFFERENT from'} the traffic's "
            f"{orders} orders, ¥{accrued_fen / 100:,.2f}")
        return ok
