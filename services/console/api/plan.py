"""佣金方案: edit, check (the commission service's own rules, nothing published), publish, and
the history of versions with a diff between consecutive ones."""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Request

from services.console.api.actions import act, back
from services.console.api.deps import FormOperatorDep, Operator, OperatorDep, RuntimeDep, backends, render
from services.console.domain.plan_diff import diff
from services.console.domain.roles import PermissionDenied, can

router = APIRouter(include_in_schema=False)

EXAMPLE = {"levels": 2, "cap_bp": 3000, "freeze_days": 7,
           "tiers": [{"name": "sharer", "level1_bp": 1000, "level2_bp": 500, "self_purchase_bp": 800}], "overrides": []}


async def _plan_page(request: Request, rt, op: Operator, *, text: str | None = None, check=None, refusal=None,
                     status_code: int = 200):
    b = backends(rt)
    cur = await b.call("commission", "GET", "/v1/admin/plan", username=op.username, role=op.role)
    hist = await b.call("commission", "GET", "/v1/admin/plans", username=op.username, role=op.role, params={"limit": 50})
    versions = hist.body if hist.ok else []
    history = []
    for i, v in enumerate(versions):
        prev = versions[i + 1]["plan"] if i + 1 < len(versions) else None
        history.append({**v, "changes": diff(prev, v["plan"])})
    current = cur.body if cur.ok else None
    if text is None:
        text = json.dumps(current["plan"] if current else EXAMPLE, ensure_ascii=False, indent=2)
    return render(request, "plan.html", op, current=current, history=history, text=text, check=check, refusal=refusal,
                  status_code=status_code)


@router.get("/plan")
async def plan_page(request: Request, rt: RuntimeDep, op: OperatorDep):
    return await _plan_page(request, rt, op)


def _parse(text: str):
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, {"code": "plan_not_json", "message": f"不是合法的 JSON: {exc}"}
    if not isinstance(body, dict):
        return None, {"code": "plan_not_json", "message": "方案必须是 JSON 对象"}
    return body, None


@router.post("/plan/check")
async def check(request: Request, rt: RuntimeDep, op: FormOperatorDep, plan_json: Annotated[str, Form(max_length=100_000)]):
    """Validation before saving: the commission service checks the plan exactly as it would on publication."""
    body, bad = _parse(plan_json)
    if bad:
        return await _plan_page(request, rt, op, text=plan_json, refusal=bad, status_code=422)
    if not can(op.role, "plan.check"):
        raise PermissionDenied(op.role, "plan.check")
    r = await backends(rt).call("commission", "POST", "/v1/admin/plan/check", username=op.username, role=op.role, json=body)
    if r.ok:
        return await _plan_page(request, rt, op, text=plan_json, check=r.body)
    return await _plan_page(request, rt, op, text=plan_json, refusal={"code": r.code, "message": r.reason},
                            status_code=422)


@router.post("/plan/publish")
async def publish(request: Request, rt: RuntimeDep, op: FormOperatorDep, plan_json: Annotated[str, Form(max_length=100_000)]):
    body, bad = _parse(plan_json)
    if bad:
        return await _plan_page(request, rt, op, text=plan_json, refusal=bad, status_code=422)
    r = await act(rt, op, "plan.publish", service="commission", method="PUT", path="/v1/admin/plan", json=body,
                  target="plan")
    if not r.ok:
        return await _plan_page(request, rt, op, text=plan_json, refusal={"code": r.code, "message": r.reason},
                                status_code=422)
    return back("/plan", ok=f"已发布方案版本 v{r.body['plan_version']}")
