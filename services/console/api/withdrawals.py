"""提现审核: the review queue, approve or reject with a reason, payout state, CSV export."""
from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.console.api.actions import back
from services.console.api.actions import act
from services.console.api.deps import FormOperatorDep, OperatorDep, RuntimeDep, backends, now_of, record_action, render
from services.console.domain.csv_export import withdrawals_csv
from services.console.domain.roles import PermissionDenied, can

router = APIRouter(include_in_schema=False)
STATUSES = ("pending_review", "approved", "transferring", "paid", "rejected", "released")


@router.get("/withdrawals")
async def withdrawals(request: Request, rt: RuntimeDep, op: OperatorDep, status: str = "pending_review"):
    st = status if status in STATUSES else None
    r = await backends(rt).call("payout", "GET", "/v1/admin/withdrawals", username=op.username, role=op.role,
                                params={"status": st, "limit": 500})
    return render(request, "withdrawals.html", op, items=r.body["items"] if r.ok else [], status=st or "all",
                  statuses=STATUSES, errors=[] if r.ok else [r.message])


@router.post("/withdrawals/{withdrawal_id}/decision")
async def decide(rt: RuntimeDep, op: FormOperatorDep, withdrawal_id: uuid.UUID, decision: Annotated[str, Form()],
                 reason: Annotated[str, Form(max_length=200)] = ""):
    if decision not in ("approve", "reject"):
        return back("/withdrawals", error="未知的决定")
    if decision == "reject" and not reason.strip():
        return back("/withdrawals", error="拒绝提现必须填写原因")
    r = await act(rt, op, "withdrawal.decide", service="payout", method="POST",
                  path=f"/v1/admin/withdrawals/{withdrawal_id}/decision", target=str(withdrawal_id),
                  json={"decision": decision, "reason": reason.strip() or None}, reason=reason.strip() or None,
                  detail={"decision": decision})
    if not r.ok:
        return back("/withdrawals", error=r.message)
    return back("/withdrawals", ok=f"提现 {withdrawal_id} 已{'批准' if decision == 'approve' else '拒绝'}（{r.body['status']}）")


@router.get("/withdrawals.csv")
async def export(rt: RuntimeDep, op: OperatorDep, status: str = "all"):
    if not can(op.role, "withdrawals.export"):
        await record_action(rt, operator=op.username, role=op.role, action="withdrawals.export", outcome="refused",
                            detail={"why": "role_not_allowed"})
        raise PermissionDenied(op.role, "withdrawals.export")
    st = status if status in STATUSES else None
    r = await backends(rt).call("payout", "GET", "/v1/admin/withdrawals", username=op.username, role=op.role,
                                params={"status": st, "limit": 500})
    if not r.ok:
        return back("/withdrawals", error=r.message)
    await record_action(rt, operator=op.username, role=op.role, action="withdrawals.export", target=status,
                        detail={"rows": len(r.body["items"])})
    name = f"withdrawals-{status}-{now_of(rt):%Y%m%d%H%M%S}.csv"
    return Response(withdrawals_csv(r.body["items"]), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
