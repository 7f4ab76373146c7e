"""Audit routes (as-of: any operator role; the simulator: plan_admin or auditor; the compliance report:
auditor): time travel, the plan simulator and the compliance report over the log. Read-only; nothing
here touches the live tables or publishes."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from aiokafka import TopicPartition
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.commission.audit import compliance
from services.commission.audit.asof import as_json, as_of
from services.commission.audit.rederive import Published, Source
from shared import logread
from shared.topics import COMMISSION_EVENTS, ORDER_EVENTS, PAYOUT_EVENTS, REFERRAL_EVENTS
from services.commission.audit.simulate import load_source, simulate
from services.commission.domain.plan import parse_plan
from fastapi import Depends

from shared.identity import Identity, Role, StaffIdentity, require_role

audit = APIRouter(prefix="/v1/admin", tags=["audit"])


@audit.get("/promoters/{promoter_id}/as-of")
async def promoter_as_of(promoter_id: str, request: Request, _: StaffIdentity,
                         at: datetime = Query(..., description="the instant (ISO 8601; UTC when no offset is given)")) -> dict[str, Any]:
    """The promoter's balance and commission records as the log had them at `at`."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    if at > datetime.now(timezone.utc):
        raise HTTPException(status_code=422, detail={"code": "instant_in_future", "message": "`at` is later than now"})
    settings = request.app.state.runtime.settings
    return as_json(await as_of(settings.kafka_bootstrap_servers, promoter_id, at))


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    plan: dict[str, Any]
    from_: datetime = Field(alias="from")
    to: datetime
    top: int = Field(50, ge=1, le=1000)


@audit.post("/plan/simulate")
async def simulate_plan(body: SimulationRequest, request: Request,
                        _: Annotated[Identity, Depends(require_role(Role.PLAN_ADMIN, Role.AUDITOR))]) -> dict[str, Any]:
    """The cost of a draft plan over a past period of real events, against the plans in force then,
    per promoter, product and tier. Nothing is published."""
    start, end = (t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc) for t in (body.from_, body.to))
    if start >= end:
        raise HTTPException(status_code=422, detail={"code": "empty_period", "message": "`from` must be before `to`"})
    draft = parse_plan(body.plan)  # PlanRefusedError -> 422 with the broken rule, as for PUT /v1/admin/plan
    rt = request.app.state.runtime
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT topic, partition, from_offset FROM replay_origin")
    origin = {TopicPartition(r["topic"], r["partition"]): r["from_offset"] for r in rows}
    src = await load_source(rt.settings.kafka_bootstrap_servers, until=end, origin=origin)
    epoch = getattr(rt.settings, "tier_epoch_s", None)
    return simulate(src, draft, start, end, tier_epoch=timedelta(seconds=epoch) if epoch else None).as_json(body.top)


async def _origin(request: Request) -> dict[TopicPartition, int]:
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT topic, partition, from_offset FROM replay_origin")
    return {TopicPartition(r["topic"], r["partition"]): r["from_offset"] for r in rows}


#: the last log read for a compliance report: (bootstrap, origin, the log's end offsets) -> (source,
#: published), kept a short while so that the HTML, the CSV and the teams of one period (or an
#: auditor's several periods) read the log once; a log that moved on is read again
_SOURCE_TTL_S = 120.0
_last_source: dict[str, Any] = {}


async def _report_source(bootstrap: str, origin: dict[TopicPartition, int]) -> tuple[Source, Published]:
    tps = [TopicPartition(t, p) for t, ps in (await logread.partitions_of(bootstrap, REPORT_TOPICS)).items() for p in ps]
    _, end = await logread.offsets(bootstrap, tps)
    key = (bootstrap, tuple(sorted((tp.topic, tp.partition, o) for tp, o in origin.items())),
           tuple(sorted((tp.topic, tp.partition, o) for tp, o in end.items())))
    now = asyncio.get_running_loop().time()
    hit = _last_source.get("entry")
    if hit is not None and hit[0] == key and now - hit[1] < _SOURCE_TTL_S:
        return hit[2], hit[3]
    _last_source.clear()                     # never hold two logs in memory
    pub = Published()
    src = await load_source(bootstrap, published=pub, origin=origin)
    _last_source["entry"] = (key, now, src, pub)
    return src, pub


REPORT_TOPICS = [REFERRAL_EVENTS, ORDER_EVENTS, COMMISSION_EVENTS, PAYOUT_EVENTS]


def _utc(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


@audit.get("/compliance-report", response_class=Response,
           responses={200: {"content": {"text/html": {}, "text/csv": {}},
                            "description": "the report; `X-Compliance-Result: pass|fail`"}})
async def compliance_report(request: Request, _: Annotated[Identity, Depends(require_role(Role.AUDITOR))],
                            from_: Annotated[datetime | None, Query(alias="from", description="orders paid (refunds made) at or after (ISO 8601)")] = None,
                            to: Annotated[datetime | None, Query(description="... and before; teams: bindings in force then")] = None,
                            format: Annotated[Literal["html", "csv", "teams.csv"], Query(description="the readable report, the checks as CSV, or the teams as CSV")] = "html",
                            top: Annotated[int, Query(ge=1, le=1000)] = 10) -> Response:
    """The compliance report of a period (the CLI's `compliance`): levels paid, commission share per
    line, payments backed by paid orders, no reward for recruitment, refunds reversed, largest teams.
    The answer is 200 whatever the verdict; `X-Compliance-Result` says pass or fail."""
    start, end = _utc(from_), _utc(to)
    if start is not None and end is not None and start >= end:
        raise HTTPException(status_code=422, detail={"code": "empty_period", "message": "`from` must be before `to`"})
    src, pub = await _report_source(request.app.state.runtime.settings.kafka_bootstrap_servers, await _origin(request))
    report = await asyncio.to_thread(compliance.check, src, pub, (start, end), top=top)
    verdict = {"X-Compliance-Result": "pass" if report.passed else "fail"}
    if format == "html":
        return Response(compliance.html_report(report), media_type="text/html; charset=utf-8", headers=verdict)
    body = compliance.checks_csv(report) if format == "csv" else compliance.teams_csv(report)
    name = "compliance.csv" if format == "csv" else "teams.csv"
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={**verdict, "Content-Disposition": f'attachment; filename="{name}"'})
