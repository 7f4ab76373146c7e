"""推广员: search, application review, suspend/reinstate with a reason, tier, team, earnings;
a customer's referrer changed only with a reason (the referral service's event carries it)."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request

from services.console.api.actions import act, back
from services.console.api.deps import FormOperatorDep, OperatorDep, RuntimeDep, backends, now_of, render
from services.console.store import figures

router = APIRouter(include_in_schema=False)
Reason = Annotated[str, Form(max_length=500)]


@router.get("/promoters")
async def promoters(request: Request, rt: RuntimeDep, op: OperatorDep, q: str | None = None, status: str | None = None):
    b = backends(rt)
    found, apps = await asyncio.gather(
        b.call("referral", "GET", "/v1/admin/promoters", username=op.username, role=op.role,
               params={"q": (q or "").strip() or None, "status": status or None, "page_size": 100}),
        b.call("referral", "GET", "/v1/admin/applications", username=op.username, role=op.role,
               params={"state": "pending", "page_size": 100}))
    return render(request, "promoters.html", op, q=q or "", status=status or "",
                  promoters=found.body if found.ok else [], applications=apps.body if apps.ok else [],
                  errors=[r.message for r in (found, apps) if not r.ok])


@router.post("/applications/{user_id}/decision")
async def decide_application(rt: RuntimeDep, op: FormOperatorDep, user_id: str, decision: Annotated[str, Form()],
                             reason: Reason = ""):
    approved = decision == "approve"
    if not approved and not reason.strip():
        return back("/promoters", error="拒绝申请必须填写原因")
    r = await act(rt, op, "application.decide", service="referral", method="POST",
                  path=f"/v1/admin/applications/{quote(user_id, safe='')}/decision", target=user_id,
                  json={"approved": approved, "reason": reason.strip() or None}, reason=reason.strip() or None,
                  detail={"decision": decision})
    if not r.ok:
        return back("/promoters", error=r.message)
    return back("/promoters", ok=f"已{'通过' if approved else '拒绝'} {user_id} 的申请")


@router.get("/promoters/{user_id}")
async def promoter(request: Request, rt: RuntimeDep, op: OperatorDep, user_id: str):
    b = backends(rt)
    uid = quote(user_id, safe="")
    who = dict(username=op.username, role=op.role)
    p, bal, team1, team2, avail, wds = await asyncio.gather(  # independent reads, concurrently
        b.call("referral", "GET", f"/v1/admin/promoters/{uid}", **who),
        b.call("commission", "GET", f"/v1/admin/promoters/{uid}/balance", **who),
        b.call("referral", "GET", f"/v1/admin/promoters/{uid}/team", params={"level": 1, "page_size": 50}, **who),
        b.call("referral", "GET", f"/v1/admin/promoters/{uid}/team", params={"level": 2, "page_size": 50}, **who),
        b.call("payout", "GET", f"/v1/admin/promoters/{uid}/available", **who),
        b.call("payout", "GET", "/v1/admin/withdrawals", params={"promoter_id": user_id, "limit": 50}, **who))
    async with rt.pool.acquire() as conn:
        tier = await figures.tier_of(conn, user_id)
    return render(request, "promoter.html", op, user_id=user_id, promoter=p.body if p.ok else None,
                  not_found=p.status == 404, balance=bal.body if bal.ok else None, tier=tier,
                  team1=team1.body if team1.ok else None, team2=team2.body if team2.ok else None,
                  available=avail.body if avail.ok else None, withdrawals=wds.body["items"] if wds.ok else [],
                  errors=[r.message for r in (p, bal, team1, team2) if not r.ok and r.status != 404])


@router.post("/promoters/{user_id}/status")
async def change_status(rt: RuntimeDep, op: FormOperatorDep, user_id: str, status: Annotated[str, Form()],
                        reason: Reason = "", days: Annotated[str, Form()] = ""):
    page = f"/promoters/{quote(user_id, safe='')}"
    if status not in ("active", "suspended", "revoked"):
        return back(page, error="未知的状态")
    if status != "active" and not reason.strip():
        return back(page, error="暂停或撤销必须填写原因")
    body: dict = {"status": status, "reason": reason.strip() or None}
    if status == "suspended" and days.strip():
        try:
            n = int(days)
        except ValueError:
            return back(page, error="暂停天数必须是整数")
        body["until"] = (now_of(rt) + timedelta(days=n)).isoformat()
    r = await act(rt, op, "promoter.status", service="referral", method="POST",
                  path=f"/v1/admin/promoters/{quote(user_id, safe='')}/status", json=body, target=user_id,
                  reason=reason.strip() or None, detail={"status": status, "until": body.get("until")})
    if not r.ok:
        return back(page, error=r.message)
    return back(page, ok={"active": "已恢复", "suspended": "已暂停", "revoked": "已撤销"}[status])


@router.get("/customers/{customer_id}")
async def customer(request: Request, rt: RuntimeDep, op: OperatorDep, customer_id: str):
    b = backends(rt)
    cid = quote(customer_id, safe="")
    hist = await b.call("referral", "GET", f"/v1/admin/customers/{cid}/bindings", username=op.username, role=op.role)
    chain = await b.call("referral", "GET", f"/v1/chain/{cid}", username=op.username, role=op.role)
    return render(request, "customer.html", op, customer_id=customer_id, bindings=hist.body if hist.ok else [],
                  chain=chain.body if chain.ok else None, errors=[r.message for r in (hist, chain) if not r.ok])


@router.post("/customers/{customer_id}/referrer")
async def change_referrer(rt: RuntimeDep, op: FormOperatorDep, customer_id: str, promoter_id: Annotated[str, Form(max_length=128)],
                          reason: Reason = ""):
    page = f"/customers/{quote(customer_id, safe='')}"
    if not reason.strip():
        return back(page, error="更换推荐人必须填写原因")
    r = await act(rt, op, "customer.rebind", service="referral", method="POST",
                  path=f"/v1/admin/customers/{quote(customer_id, safe='')}/referrer", target=customer_id,
                  json={"promoter_id": promoter_id.strip(), "reason": reason.strip()}, reason=reason.strip(),
                  detail={"to": promoter_id.strip()})
    if not r.ok:
        return back(page, error=r.message)
    return back(page, ok=f"推荐人已改为 {promoter_id.strip()}")


