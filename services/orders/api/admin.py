"""Operator views: the WeChat Pay notice archive (audit)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.orders.api.deps import ConnDep
from services.orders.store import orders as store
from shared.identity import StaffIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class NoticeRecord(BaseModel):
    seq: int
    received_at: datetime
    notice_id: str | None
    event_type: str | None
    headers: dict[str, Any]
    body_sha256: str
    body_size: int
    out_trade_no: str | None
    out_refund_no: str | None
    outcome: str
    http_status: int
    reason_code: str | None
    reason: str | None


@router.get("/notices", response_model=list[NoticeRecord])
async def notices(_: StaffIdentity, conn: ConnDep, out_trade_no: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[NoticeRecord]:
    """Every WeChat Pay delivery received (newest first), with what was done with it."""
    import json

    rows = await store.list_notices(conn, out_trade_no=out_trade_no, limit=limit)
    return [NoticeRecord(**{**dict(r), "headers": json.loads(r["headers"]) if isinstance(r["headers"], str)
                            else r["headers"]}) for r in rows]
