"""审计: run the commission and payout audit replays (the services' own commands, as
subprocesses with their schemas), show what they printed and download it; the compliance report of a
period (commission's `GET /v1/admin/compliance-report`, auditors); the operators' recent actions (the
console's own events)."""
from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import PlainTextResponse, Response

from services.console.api.actions import back
from services.console.api.deps import FormOperatorDep, OperatorDep, RuntimeDep, backends, now_of, record_action, render
from services.console.clients.backends import Reply
from services.console.domain.roles import PermissionDenied, can
from services.console.store import audit as store

router = APIRouter(include_in_schema=False)
ROOT = Path(__file__).resolve().parents[3]
MODULES = {"commission": "services.commission.replay", "payout": "services.payout.replay"}


@router.get("/audit")
async def audit_page(request: Request, rt: RuntimeDep, op: OperatorDep):
    async with rt.pool.acquire() as conn:
        runs = await store.runs(conn)
        actions = await store.recent_actions(conn, 100)
    return render(request, "audit.html", op, runs=runs, actions=actions)


async def run_replay(kind: str, settings, timeout_s: float) -> tuple[int, str]:
    env = {**os.environ, "COMMISSION_SCHEMA": settings.commission_schema, "PAYOUT_SCHEMA": settings.payout_schema,
           "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url}
    args = [sys.executable, "-m", MODULES[kind]] + (["--quiet"] if kind == "commission" else [])
    proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"timed out after {timeout_s:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace")


@router.post("/audit/run")
async def run(rt: RuntimeDep, op: FormOperatorDep, kind: Annotated[str, Form()]):
    if kind not in MODULES:
        return back("/audit", error="未知的审计")
    if not can(op.role, "audit.run"):
        await record_action(rt, operator=op.username, role=op.role, action="audit.run", target=kind, outcome="refused",
                            detail={"why": "role_not_allowed"})
        raise PermissionDenied(op.role, "audit.run")
    run_id = uuid.uuid4()
    async with rt.pool.acquire() as conn:
        await store.start_run(conn, run_id, kind, op.username, now_of(rt))
    code, output = await run_replay(kind, rt.settings, rt.settings.audit_timeout_s)  # type: ignore[attr-defined]
    async with rt.pool.acquire() as conn, conn.transaction():
        await store.finish_run(conn, run_id, code, output, now_of(rt))
        await record_action(rt, operator=op.username, role=op.role, action="audit.run", target=kind,
                            detail={"run_id": str(run_id), "exit_code": code}, conn=conn)
    rt.relay.kick()
    verdict = "一致" if code == 0 else f"不一致或失败（退出码 {code}）"
    return back("/audit", ok=f"{kind} 审计重放完成：{verdict}") if code == 0 else back("/audit", error=f"{kind} 审计重放：{verdict}")


@router.get("/audit/runs/{run_id}.txt")
async def report(rt: RuntimeDep, op: OperatorDep, run_id: uuid.UUID):
    async with rt.pool.acquire() as conn:
        r = await store.run(conn, run_id)
    if r is None:
        return PlainTextResponse("no such run", status_code=404)
    head = (f"fenxiao {r['kind']} audit replay\nrun {r['run_id']}\nstarted by {r['started_by']} at {r['started_at'].isoformat()}\n"
            f"finished at {r['finished_at'].isoformat() if r['finished_at'] else '-'}\nexit code {r['exit_code']}\n\n")
    return PlainTextResponse(head + (r["output"] or ""), headers={
        "Content-Disposition": f'attachment; filename="audit-{r["kind"]}-{run_id}.txt"'})


def _day_start(day: str) -> str | None:
    """A form's date (YYYY-MM-DD) as the start of that day in China time; None when empty."""
    from datetime import date

    return f"{date.fromisoformat(day).isoformat()}T00:00:00+08:00" if day else None


@router.get("/audit/compliance")
async def compliance_report(rt: RuntimeDep, op: OperatorDep, start: str = "", end: str = "", format: str = "html"):
    """The compliance report of a period (orders paid from `start` to the day before `end`), as HTML
    or CSV, fetched from commission with the operator's own identity (commission checks the role again)."""
    if not can(op.role, "compliance.report"):
        await record_action(rt, operator=op.username, role=op.role, action="compliance.report", outcome="refused",
                            detail={"why": "role_not_allowed"})
        raise PermissionDenied(op.role, "compliance.report")
    if format not in ("html", "csv", "teams.csv"):
        return back("/audit", error="未知的格式")
    try:
        params = {"from": _day_start(start), "to": _day_start(end), "format": format}
    except ValueError:
        return back("/audit", error="日期格式应为 YYYY-MM-DD")
    r = await backends(rt).fetch("commission", "/v1/admin/compliance-report", username=op.username, role=op.role,
                                 params=params)
    if isinstance(r, Reply) or r.status_code != 200:
        message = r.message if isinstance(r, Reply) else f"HTTP {r.status_code}: {r.text[:200]}"
        await record_action(rt, operator=op.username, role=op.role, action="compliance.report", outcome="failed",
                            detail={"message": message[:300]})
        return back("/audit", error=f"合规报告：{message}")
    verdict = r.headers.get("x-compliance-result", "")
    await record_action(rt, operator=op.username, role=op.role, action="compliance.report", target=f"{start}..{end}",
                        detail={"format": format, "result": verdict})
    headers = {"X-Compliance-Result": verdict}
    if format != "html":
        headers["Content-Disposition"] = f'attachment; filename="compliance-{start or "start"}-{end or "end"}-{format}"'
    return Response(r.content, media_type=r.headers.get("content-type", "text/html"), headers=headers)
