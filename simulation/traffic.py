"""Simulated mini-program traffic through the four services, as the gateway and WeChat would
send it: promoters enrol and share posters, friends arrive through shares and bind, buy and
pay (JSAPI prepay, a simulated wx.requestPayment, signed WeChat Pay notices; one notice lost and
recovered by query), one unpaid order is cancelled (closed at WeChat first), some refund (submitted
to WeChat by orders), orders complete, commission settles, promoters
withdraw (WeChat merchant transfers that the user confirms, one left to lapse)."""
from __future__ import annotations

import asyncio
import base64
import io
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.identity import HEADER, sign_identity
from simulation.http import request_once_more
from standins.wechat.app import WeChatStandins

PLAN = {
    "levels": 2,
    "cap_bp": 3000,
    "freeze_days": 0,  # the demo settles as soon as an order completes
    "tiers": [
        {"name": "分享家", "level1_bp": 1000, "level2_bp": 300, "self_purchase_bp": 500},
        {"name": "合伙人", "level1_bp": 1500, "level2_bp": 500, "self_purchase_bp": 800,
         "upgrade": {"min_settled_sales_fen": 50_000, "min_orders": 3}},
    ],
    "overrides": [{"category_id": "tea", "mode": "percent", "level1": 1200, "level2": 400, "self_purchase": 600}],
}
PRODUCTS = [("p-tea-1", "tea", "明前龙井 250g", 12_800), ("p-tea-2", "tea", "正山小种 200g", 8_800),
            ("p-cup-1", "ware", "青瓷茶杯", 3_900), ("p-pot-1", "ware", "紫砂壶", 26_800)]


@dataclass
class Report:
    promoters: list[str] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)
    customers: list[str] = field(default_factory=list)
    bindings: int = 0
    refused_bindings: dict[str, int] = field(default_factory=dict)
    orders_paid: int = 0
    paid_fen: int = 0
    refunds: int = 0
    refunded_fen: int = 0
    withdrawals: dict[str, str] = field(default_factory=dict)   # id -> final status
    withdrawn_fen: int = 0
    #: commission each promoter should have accrued, computed here independently of the services
    expected_accrued: dict[str, int] = field(default_factory=dict)
    balances: dict[str, dict[str, int]] = field(default_factory=dict)
    posters: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Gateway:
    """Plays the mini-program gateway: signs each caller's identity for the service it calls
    (audience), with the user's openid for the mini-program (`o-<user>`) and operator roles."""

    def __init__(self, secret: str, urls: dict[str, str], *, appid: str = "", kid: str = "k1"):
        self.secret, self.urls, self.appid, self.kid = secret, urls, appid, kid
        self.http = httpx.AsyncClient(timeout=30)
        self.sem = asyncio.Semaphore(16)

    def openid(self, user: str) -> str:
        """The user's openid for the mini-program, as the gateway knows it from the WeChat login."""
        return f"o-{user}"

    def headers(self, service: str, user: str, roles: tuple[str, ...] = ()) -> dict[str, str]:
        return {HEADER: sign_identity(self.secret, user, roles, audience=service, kid=self.kid, ttl_s=3600,
                                      openid=self.openid(user), appid=self.appid or None)}

    async def call(self, service: str, method: str, path: str, user: str, *, roles: tuple[str, ...] = (),
                   expect=(200, 201), idempotent: bool | None = None, **kw) -> httpx.Response:
        headers = {**self.headers(service, user, roles), **kw.pop("headers", {})}
        async with self.sem:
            r = await request_once_more(self.http, method, self.urls[service] + path, idempotent=idempotent,
                                        headers=headers, **kw)
        if expect and r.status_code not in expect:
            raise RuntimeError(f"{method} {service}{path} as {user}: {r.status_code} {r.text[:500]}")
        return r

    async def close(self) -> None:
        await self.http.aclose()


#: the order (by position) whose payment notice the simulated WeChat loses: orders recovers it by query
LOST_NOTICE_ORDER = 1


def buyer_headers(secret: str, user: str) -> dict[str, str]:
    """The gateway's identity for a buyer calling orders after WeChat login: it carries the
    user's openid, which the prepay sends as payer.openid."""
    import hashlib

    openid = "o" + hashlib.sha256(user.encode()).hexdigest()[:27]
    return {HEADER: sign_identity(secret, user, (), audience="orders", ttl_s=3600, openid=openid)}


async def request_payment(gw: Gateway, wx: WeChatStandins, params: dict[str, Any], *, deliver: bool = True) -> dict:
    """The buyer taps pay: `wx.requestPayment(params)` against the stand-in (paySign checked there)."""
    r = await gw.http.post(wx.base_url + "/_standin/pay/request-payment", json={**params, "deliver": deliver})
    if r.status_code != 200:
        raise RuntimeError(f"wx.requestPayment failed: {r.status_code} {r.text[:300]}")
    return r.json()


async def _order_status_is(gw: Gateway, o: dict[str, Any], status: str) -> bool:
    r = await gw.call("orders", "GET", f"/v1/orders/{o['order_id']}", o["user"])
    return r.json()["status"] == status


async def _refund_status_is(gw: Gateway, o: dict[str, Any], out_refund_no: str, status: str) -> bool:
    r = await gw.call("orders", "GET", f"/v1/orders/{o['order_id']}/refunds", o["user"])
    return any(x["out_refund_no"] == out_refund_no and x["status"] == status for x in r.json())


async def until(check, what: str, timeout: float = 90, interval: float = 0.3):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def _product_image(seed: int) -> str:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (480, 480), (240 - seed * 20 % 120, 220, 200))
    d = ImageDraw.Draw(img)
    d.ellipse((90, 90, 390, 390), fill=(90 + seed * 30 % 150, 140, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def run_traffic(gw: Gateway, wx: WeChatStandins, *, promoters: int = 12, customers: int = 80, seed: int = 7,
                      run_id: str | None = None, poster_dir=None, log=print) -> Report:
    rnd = random.Random(seed)
    run_id = run_id or uuid.uuid4().hex[:6]
    rep = Report()
    admin = f"op-{run_id}"
    notify = gw.urls["orders"] + "/v1/wechatpay/notify"

    log("publishing the commission plan")
    await gw.call("commission", "PUT", "/v1/admin/plan", admin, roles=("plan_admin",), json=PLAN)

    # Promoters: a few founders enrol directly; the rest first arrive through a founder's share
    # (so the founder becomes their level-1, and the level-2 of their own customers), then enrol.
    founders = max(2, promoters // 4)
    upline_of: dict[str, str] = {}
    for i in range(promoters):
        user = f"u-{run_id}-p{i:02d}"
        if i >= founders:
            upline = rep.promoters[rnd.randrange(len(rep.promoters))]
            upline_of[user] = upline
            await gw.call("referral", "POST", "/v1/bindings", user,
                          json={"promoter_code": rep.codes[upline], "source": "poster"})
            rep.bindings += 1
        r = await gw.call("referral", "POST", "/v1/promoters", user, json={"nickname": f"推广员{i:02d}"})
        rep.promoters.append(user)
        rep.codes[user] = r.json()["code"]
    log(f"{len(rep.promoters)} promoters enrolled ({founders} founders)")

    # Posters: every founder shares one (mini-program code from the stand-in's getwxacodeunlimit)
    for i, p in enumerate(rep.promoters[:founders]):
        pid, cat, title, price = PRODUCTS[i % len(PRODUCTS)]
        r = await gw.call("referral", "POST", "/v1/posters", p, idempotent=True,  # a pure rendering
                          json={"title": title, "price_fen": price, "image_base64": _product_image(i)})
        assert r.headers["content-type"].startswith("image/png")
        if poster_dir is not None:
            path = poster_dir / f"poster-{p}.png"
            path.write_bytes(r.content)
            rep.posters.append(str(path))

    # Refusals the system must make (and record): binding to oneself, and a cycle up the chain.
    async def refused(user, code):
        r = await gw.call("referral", "POST", "/v1/bindings", user, json={"promoter_code": code, "source": "link"},
                          expect=(409, 422, 403, 400, 404))
        reason = (r.json().get("detail") or r.json()).get("code", str(r.status_code)) if r.headers.get(
            "content-type", "").startswith("application/json") else str(r.status_code)
        rep.refused_bindings[reason] = rep.refused_bindings.get(reason, 0) + 1

    await refused(rep.promoters[0], rep.codes[rep.promoters[0]])  # to oneself
    downline = rep.promoters[founders]
    await refused(upline_of[downline], rep.codes[downline])  # an upline under its own downline: a cycle
    log(f"bindings refused as they must be: {rep.refused_bindings}")

    # Customers arrive through shares and bind.
    async def arrive(j):
        user = f"u-{run_id}-c{j:03d}"
        promoter = rep.promoters[rnd.randrange(len(rep.promoters))]
        pid = PRODUCTS[j % len(PRODUCTS)][0]
        await gw.call("referral", "POST", "/v1/bindings", user,
                      json={"promoter_code": rep.codes[promoter], "source": rnd.choice(["poster", "link", "qr"]),
                            "product_id": pid})
        return user, promoter

    arrivals = await asyncio.gather(*(arrive(j) for j in range(customers)))
    rep.customers = [u for u, _ in arrivals]
    rep.bindings += len(arrivals)
    log(f"{len(arrivals)} customers bound through shares")

    # They buy; WeChat Pay notifies (signed, encrypted); some promoters buy for themselves too.
    orders: list[dict[str, Any]] = []

    async def buy(user, promoter_code, k):
        lines, paid_total = [], 0
        for n, (pid, cat, title, price) in enumerate(rnd.sample(PRODUCTS, rnd.randint(1, 3)), start=1):
            qty = rnd.randint(1, 3)
            paid = price * qty - rnd.choice([0, 0, 500, 1000])  # some coupons
            lines.append({"line_id": str(n), "product_id": pid, "category_id": cat, "sku": pid + "-std",
                          "quantity": qty, "unit_price_fen": price, "paid_fen": paid})
            paid_total += paid
        postage = rnd.choice([0, 800])
        out_trade_no = f"T{run_id}{k:05d}"
        body = {"out_trade_no": out_trade_no, "lines": lines, "postage_fen": postage, "total_fen": paid_total + postage,
                "promoter_code": promoter_code}
        buyer = buyer_headers(gw.secret, user)
        order = (await gw.call("orders", "POST", "/v1/orders", user, json=body, idempotent=True,  # out_trade_no
                               headers=buyer)).json()
        # The mini-program pays: orders made the JSAPI prepay and signed wx.requestPayment's parameters;
        # WeChat checks paySign, takes the money and notifies orders (one notice is lost: orders queries).
        params = order.get("payment") or (await gw.call("orders", "POST", f"/v1/orders/{order['order_id']}/payment",
                                                        user, idempotent=True, headers=buyer)).json()["params"]
        lost = k == LOST_NOTICE_ORDER
        r = await request_payment(gw, wx, params, deliver=not lost)
        if not lost and r.get("notify_status") not in (200, 204):
            if r.get("notify_status") is not None or not r.get("notify_retrying"):
                raise RuntimeError(f"payment notice refused: {r}")
            # orders was unreachable for the first notice (a busy machine): WeChat's retries, or
            # orders' own query of an unpaid order, settle it; the money checks below count it
            await until(lambda: _order_status_is(gw, {"order_id": order["order_id"], "user": user}, "paid"),
                        f"the retried payment notice of {out_trade_no}", timeout=180)
            log(f"a payment notice of {out_trade_no} was not delivered at first; WeChat's retry settled it")
        if rnd.random() < 0.2 and not lost:  # WeChat retries: a duplicate notice changes nothing
            await wx.pay.deliver(notify, wx.pay.notice("TRANSACTION.SUCCESS", wx.pay.transactions[out_trade_no]))
        return {"user": user, "order_id": order["order_id"], "out_trade_no": out_trade_no, "lines": lines,
                "total": paid_total + postage}

    jobs = []
    code_of_customer = {u: rep.codes[p] for u, p in arrivals}
    for k, user in enumerate(rep.customers):
        for _ in range(rnd.choice([1, 1, 2])):
            jobs.append((user, code_of_customer[user]))
    for p in rep.promoters[: max(1, promoters // 3)]:
        jobs.append((p, rep.codes[p]))  # self-purchase rebate
    orders = await asyncio.gather(*(buy(u, c, k) for k, (u, c) in enumerate(jobs)))
    for o in orders:
        for who, fen in expected_commission(o, code_owner={c: p for p, c in rep.codes.items()}, upline_of=upline_of,
                                            binding_of={u: p for u, p in arrivals}, promoters=set(rep.promoters)):
            rep.expected_accrued[who] = rep.expected_accrued.get(who, 0) + fen
    rep.orders_paid = len(orders)
    rep.paid_fen = sum(o["total"] for o in orders)
    if len(orders) > LOST_NOTICE_ORDER:
        lost = orders[LOST_NOTICE_ORDER]
        await until(lambda: _order_status_is(gw, lost, "paid"), "the order whose notice was lost to be queried")
        log(f"one payment notice lost: orders queried WeChat ({lost['out_trade_no']}) and settled it the same way")
    log(f"{rep.orders_paid} orders paid through JSAPI prepay + wx.requestPayment and signed WeChat Pay notices, "
        f"¥{rep.paid_fen / 100:,.2f}")

    # An unpaid order the buyer cancels: orders closes it at WeChat and queries before cancelling.
    quitter = rep.customers[0]
    body = {"out_trade_no": f"T{run_id}X0001", "postage_fen": 0, "total_fen": PRODUCTS[0][3],
            "lines": [{"product_id": PRODUCTS[0][0], "quantity": 1, "unit_price_fen": PRODUCTS[0][3],
                       "paid_fen": PRODUCTS[0][3]}]}
    unpaid = (await gw.call("orders", "POST", "/v1/orders", quitter, json=body, idempotent=True,
                            headers=buyer_headers(gw.secret, quitter))).json()
    cancelled = (await gw.call("orders", "POST", f"/v1/orders/{unpaid['order_id']}/cancel", quitter,
                               idempotent=True)).json()
    trade = wx.pay.trades.get(body["out_trade_no"])
    if cancelled["status"] != "cancelled" or (trade is not None and trade.state != "CLOSED"):
        raise RuntimeError(f"cancellation did not close the WeChat order: {cancelled['status']}, {trade}")
    log("one unpaid order cancelled by its buyer: closed at WeChat, queried, then cancelled")

    # Some refund part of a line before receipt (refund request + WeChat's refund notice).
    async def refund(o, tag):
        line = rnd.choice(o["lines"])
        qty = 1
        amount = line["paid_fen"] * qty // line["quantity"]
        out_refund_no = f"R{o['out_trade_no']}{tag}"
        await gw.call("orders", "POST", f"/v1/orders/{o['order_id']}/refunds", o["user"], idempotent=True,  # out_refund_no
                      json={"out_refund_no": out_refund_no, "lines": [{"line_id": line["line_id"], "quantity": qty,
                                                                       "amount_fen": amount}], "reason": "不想要了"})
        # orders' submitter sends it to WeChat (PROCESSING); WeChat completes it and notifies
        await until(lambda: _refund_status_is(gw, o, out_refund_no, "succeeded"), f"refund {out_refund_no}")
        rep.refunds += 1
        rep.refunded_fen += amount

    refunding = rnd.sample(orders, max(1, len(orders) // 10))
    await asyncio.gather(*(refund(o, "a") for o in refunding))
    log(f"{rep.refunds} partial refunds submitted to WeChat by orders and confirmed by refund notices")

    # Receipt confirmed: the after-sale window closes (0 freeze days here) and commission settles.
    await asyncio.gather(*(gw.call("orders", "POST", f"/v1/orders/{o['order_id']}/confirm-receipt", o["user"],
                                   idempotent=True)
                           for o in orders))

    async def balances():
        out = {}
        for p in rep.promoters:
            out[p] = (await gw.call("commission", "GET", f"/v1/admin/promoters/{p}/balance", admin, roles=("auditor",))).json()
        return out

    async def all_settled():
        b = await balances()
        return b if all(v["frozen_fen"] == 0 for v in b.values()) and any(v["available_fen"] > 0 for v in b.values()) else None

    await until(all_settled, "commission to settle", timeout=120)
    log("commission settled for every completed order")

    # A refund after settlement: the reversal takes money back from the available balance.
    late = rnd.choice([o for o in orders if o not in refunding])
    await refund(late, "late")
    log("one refund after settlement (reversal from the available balance)")

    # Withdrawals: the payout service sees the settled money, reserves, pays through WeChat.
    async def payout_available(p):
        return (await gw.call("payout", "GET", "/v1/promoters/me/available", p)).json()["available_fen"]

    b = await balances()
    rich = sorted((p for p in rep.promoters if b[p]["available_fen"] >= 2_000), key=lambda p: -b[p]["available_fen"])[:6]
    wids: list[tuple[str, str]] = []
    for n, p in enumerate(rich):
        target = b[p]["available_fen"]
        await until(lambda: _at_least(payout_available, p, min(target, 2_000)), f"payout ledger of {p}")
        amount = min(await payout_available(p), 12_000 if n == 0 else 6_000)
        r = await gw.call("payout", "POST", "/v1/withdrawals", p, headers={"Idempotency-Key": f"w-{run_id}-{n}"},
                          json={"amount_fen": amount, "idempotency_key": f"w-{run_id}-{n}", "openid": f"o-{p}"})
        w = r.json()
        if w["status"] == "pending_review":
            await gw.call("payout", "POST", f"/v1/admin/withdrawals/{w['withdrawal_id']}/decision", admin, roles=("finance",),
                          json={"decision": "approve"})
        wids.append((p, w["withdrawal_id"]))
    log(f"{len(wids)} withdrawals requested (one above the auto-approval threshold, approved by an operator)")

    async def transferring(p, wid):
        w = (await gw.call("payout", "GET", f"/v1/withdrawals/{wid}", p)).json()
        return w if w.get("confirm") else None

    lapse = wids[-1] if len(wids) > 1 else None
    for p, wid in wids:
        w = await until(lambda: transferring(p, wid), f"withdrawal {wid} to reach WeChat", timeout=60)
        if (p, wid) == lapse:
            await wx.transfer.lapse(w["out_bill_no"])  # the user never confirms; the bill closes
        else:
            await wx.transfer.confirm(package=w["confirm"]["package"])  # the user confirms in the mini-program

    async def final(p, wid):
        w = (await gw.call("payout", "GET", f"/v1/withdrawals/{wid}", p)).json()
        return w if w["status"] in ("paid", "released", "rejected") else None

    for p, wid in wids:
        w = await until(lambda: final(p, wid), f"withdrawal {wid} to finish", timeout=60)
        rep.withdrawals[wid] = w["status"]
        if w["status"] == "paid":
            rep.withdrawn_fen += w["amount_fen"]
    log(f"withdrawals: {sorted(rep.withdrawals.values())}")

    async def commission_sees_withdrawals():
        bal = await balances()
        ok = sum(v["withdrawn_fen"] for v in bal.values()) == rep.withdrawn_fen and all(
            v["reserved_fen"] == 0 for v in bal.values())
        return bal if ok else None

    rep.balances = await until(commission_sees_withdrawals, "commission balances to reflect the withdrawals")
    return rep


def expected_commission(order, *, code_owner, upline_of, binding_of, promoters):
    """The oracle: what the demo's plan pays on one order, by a deliberately plain reading of the
    rules (first tier, tea override, floor per line per level, self-purchase as level 1)."""
    buyer = order["user"]
    if buyer in promoters:
        level1, level1_kind = buyer, "self_purchase"
        level2 = upline_of.get(buyer)
    else:
        level1, level1_kind = binding_of[buyer], "level1"
        level2 = upline_of.get(level1)
    tier = PLAN["tiers"][0]
    tea = PLAN["overrides"][0]
    out = []
    for line in order["lines"]:
        rates = ({"level1": tea["level1"], "level2": tea["level2"], "self_purchase": tea["self_purchase"]}
                 if line["category_id"] == "tea" else
                 {"level1": tier["level1_bp"], "level2": tier["level2_bp"], "self_purchase": tier["self_purchase_bp"]})
        out.append((level1, line["paid_fen"] * rates[level1_kind] // 10_000))
        if level2:
            out.append((level2, line["paid_fen"] * rates["level2"] // 10_000))
    return out


async def _at_least(fn, p, amount):
    return await fn(p) >= amount
