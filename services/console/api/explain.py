"""解释佣金: any order or commission record, as the commission service explains it."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request

from services.console.api.deps import OperatorDep, RuntimeDep, backends, render

router = APIRouter(include_in_schema=False)


@router.get("/explain")
async def explain(request: Request, rt: RuntimeDep, op: OperatorDep, order_id: str | None = None,
                  accrual_id: str | None = None):
    ex, error = None, None
    order_id, accrual_id = (order_id or "").strip(), (accrual_id or "").strip()
    if order_id or accrual_id:
        path = (f"/v1/admin/explain/commissions/{quote(accrual_id, safe='')}" if accrual_id
                else f"/v1/admin/explain/orders/{quote(order_id, safe='')}")
        r = await backends(rt).call("commission", "GET", path, username=op.username, role=op.role)
        ex, error = (r.body, None) if r.ok else (None, r.message)
    return render(request, "explain.html", op, ex=ex, error=error, order_id=order_id, accrual_id=accrual_id)
