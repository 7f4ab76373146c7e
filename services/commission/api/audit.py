"""Audit routes (admin): time travel over the log. Read-only; nothing here touches the live tables."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from services.commission.audit.asof import as_json, as_of
from shared.identity import AdminIdentity

audit = APIRouter(prefix="/v1/admin", tags=["audit"])


@audit.get("/promoters/{promoter_id}/as-of")
async def promoter_as_of(promoter_id: str, request: Request, _: AdminIdentity,
                         at: datetime = Query(..., description="the instant (ISO 8601; UTC when no offset is given)")) -> dict[str, Any]:
    """The promoter's balance and commission records as the log had them at `at`."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    if at > datetime.now(timezone.utc):
        raise HTTPException(status_code=422, detail={"code": "instant_in_future", "message": "`at` is later than now"})
    settings = request.app.state.runtime.settings
    return as_json(await as_of(settings.kafka_bootstrap_servers, promoter_id, at))
