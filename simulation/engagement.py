"""The demo's promoter-experience part: one promoter keeps the mini-program's notice page open
(a live Server-Sent Events stream through the engagement service) while the traffic runs,
has accepted one subscribe message; afterwards the week's board, the honours and the
subscribe message WeChat (the stand-in) delivered are printed."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from standins.wechat.app import WeChatStandins

TEMPLATE = "demoCommissionNotice01"


@dataclass
class Live:
    promoter: str
    openid: str
    notices: list[dict] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)   # when each notice reached the client (monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


def _who(gw, user: str, roles: tuple[str, ...] = ()) -> dict[str, str]:
    return gw.headers("engagement", user, roles)


async def _listen(gw, live: Live) -> None:
    url = gw.urls["engagement"] + "/v1/me/notices/stream"
    last: int | None = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
        while True:  # a mini-program page reconnects with the last id it saw (nothing is lost)
            headers = _who(gw, live.promoter)
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                async with client.stream("GET", url, headers=headers) as resp:
                    event: dict = {}
                    async for line in resp.aiter_lines():
                        if line.startswith(": ready"):
                            live.ready.set()
                        elif line.startswith("id: "):
                            event["id"] = int(line[4:])
                        elif line.startswith("data: "):
                            event["data"] = json.loads(line[6:])
                        elif line == "" and "data" in event:
                            live.notices.append(event["data"])
                            live.arrived.append(time.monotonic())
                            last = event["id"]
                            event = {}
            except httpx.HTTPError:
                await asyncio.sleep(0.5)


async def start(gw, wx: WeChatStandins, run_id: str, admin: str, log=print) -> Live:
    """Before the traffic: the operator sets the accrual template; promoter p00 (a founder, who
    also buys for themselves, so money will move) accepts one subscription and opens the page."""
    promoter = f"u-{run_id}-p00"
    live = Live(promoter=promoter, openid=gw.openid(promoter))  # the openid the gateway signs for them
    wx.miniprogram.add_template(TEMPLATE, "thing1", "amount2", "time3", "phrase4")
    await gw.call("engagement", "PUT", "/v1/admin/notice-templates/commission_accrued", admin, roles=("operator",),
                  json={"template_id": TEMPLATE, "page": "pages/earnings/index",
                        "fields": {"thing1": "title", "amount2": "amount", "time3": "time", "phrase4": "status"}})
    wx.miniprogram.subscribe(live.openid, TEMPLATE)  # the tap on "allow" (WeChat's side) ...
    await gw.call("engagement", "POST", "/v1/me/subscriptions", live.promoter,  # ... reported by the mini-program
                  json={"accepted": [TEMPLATE], "openid": live.openid, "idempotency_key": f"sub-{run_id}"})
    live.task = asyncio.create_task(_listen(gw, live))
    await asyncio.wait_for(live.ready.wait(), 30)
    log(f"{live.promoter} opened the notice page (live stream) and accepted one subscribe message")
    return live


async def finish(gw, wx: WeChatStandins, live: Live, run_id: str, admin: str, log=print) -> bool:
    """After the traffic: what the open page received, the week's board, the honours."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(n["kind"] == "commission_settled" for n in live.notices):
        await asyncio.sleep(0.3)
    if live.task is not None:
        live.task.cancel()
    kinds: dict[str, int] = {}
    for n in live.notices:
        kinds[n["kind"]] = kinds.get(n["kind"], 0) + 1
    log(f"{live.promoter}'s open page received {len(live.notices)} notices live: {kinds}")
    for n in live.notices[:3]:
        log(f"    #{n['notice_id']} {n['title']} · {n['body']}")
    sent = [m for m in wx.miniprogram.delivered if m["touser"] == live.openid]
    log(f"subscribe messages delivered to {live.promoter} (their openid): {len(sent)} (one accepted subscription: one message) "
        + (json.dumps(sent[0]["data"], ensure_ascii=False) if sent else ""))

    week = (await gw.call("engagement", "GET", "/v1/leaderboards/week", live.promoter, params={"metric": "settled"})).json()
    log(f"this week's board ({week['label']}, settled commission, {week['participants']} promoters, names masked):")
    for r in week["top"]:
        log(f"    {r['rank']:>2}. {r['nickname']:<10} ¥{r['score'] / 100:,.2f}" + ("   <- me" if r["me"] else ""))
    if week["mine"] and not any(r["me"] for r in week["top"]):
        log(f"    ... me: rank {week['mine']['rank']}, ¥{week['mine']['score'] / 100:,.2f}")
    buyers = (await gw.call("engagement", "GET", "/v1/leaderboards/month", live.promoter,
                            params={"metric": "new_customers", "top": 3})).json()
    log("this month's top 3 by new customers who bought: "
        + ", ".join(f"{r['rank']}. {r['nickname']} ({r['score']})" for r in buyers["top"]))

    profile = (await gw.call("engagement", "GET", "/v1/me/profile", live.promoter)).json()
    log(f"{live.promoter}'s honours: " + ", ".join(f"{h['title']} ({h['honour_key']})" for h in profile["honours"]))
    dash = (await gw.call("engagement", "GET", "/v1/me/dashboard", live.promoter)).json()
    b = dash["balance"]
    log(f"{live.promoter}'s dashboard: frozen ¥{b['frozen_fen'] / 100:,.2f}, settled ¥{b['settled_fen'] / 100:,.2f}, "
        f"withdrawn ¥{b['withdrawn_fen'] / 100:,.2f}, reversed ¥{b['reversed_fen'] / 100:,.2f}; "
        f"channels {[(f['source'], f['visits'], f['binds'], f['paid_orders']) for f in dash['funnel']]}")
    ok = (any(n["kind"] == "commission_accrued" for n in live.notices) and len(sent) == 1
          and any(h["honour_key"] == "first_sale" for h in profile["honours"]) and bool(week["top"]))
    log(f"promoter experience: {'live notices, one subscribe message, board and honour as expected' if ok else 'NOT as expected'}")
    return ok
