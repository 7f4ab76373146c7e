"""The promoter's notices: the list, the live stream (Server-Sent Events, resumable with
Last-Event-ID) and the one-time subscriptions the mini-program reports."""
from __future__ import annotations

import asyncio
from typing import Annotated, AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from services.engagement.api.deps import ConnDep, RuntimeDep, SettingsDep
from services.engagement.api.schemas import NoticePage, NoticePublic, NoticesRead, SubscriptionPublic, SubscriptionsReport
from services.engagement.domain.errors import EngagementError
from services.engagement.live import NoticeHub
from services.engagement.store import notices as store
from shared.identity import CurrentIdentity

router = APIRouter(prefix="/v1/me", tags=["notices"])


def _public(r) -> NoticePublic:
    return NoticePublic(**dict(r))


@router.get("/notices", response_model=NoticePage)
async def list_notices(identity: CurrentIdentity, conn: ConnDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                       before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> NoticePage:
    """The promoter's notices, newest first (`before` = the last notice_id seen)."""
    rows = await store.latest_notices(conn, identity.user_id, limit, before)
    unread = await conn.fetchval("SELECT count(*) FROM notices WHERE promoter_id = $1 AND read_at IS NULL", identity.user_id)
    return NoticePage(items=[_public(r) for r in rows], unread=unread)


@router.post("/notices/read", status_code=200)
async def read_notices(body: NoticesRead, identity: CurrentIdentity, conn: ConnDep) -> dict:
    """Mark the promoter's notices up to `up_to` read."""
    return {"marked": await store.mark_read(conn, identity.user_id, body.up_to)}


def _event(row) -> str:
    data = _public(row).model_dump_json()
    return f"id: {row['notice_id']}\nevent: notice\ndata: {data}\n\n"


@router.get("/notices/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`id: <notice_id>`, `event: notice`, `data: <NoticePublic JSON>`"}})
async def stream(request: Request, identity: CurrentIdentity, rt: RuntimeDep, settings: SettingsDep,
                 last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
                 after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="resume after this notice id (for clients that cannot set Last-Event-ID)")] = None):
    """The promoter's notices as they happen (Server-Sent Events). With `Last-Event-ID` (or
    `after`) every notice after it is sent first, so a reconnect loses nothing; without it the
    stream starts after the newest notice. Any replica serves any promoter: each reads the
    notices table, woken by PostgreSQL LISTEN/NOTIFY."""
    hub: NoticeHub = rt.extras["hub"]
    promoter = identity.user_id
    if last_event_id is not None:
        try:
            start = int(last_event_id)
        except ValueError:
            raise EngagementError("Last-Event-ID must be a notice id") from None
    elif after is not None:
        start = after
    else:
        async with rt.pool.acquire() as conn:
            start = await store.last_notice_id(conn, promoter)

    async def events() -> AsyncIterator[str]:
        last = start
        wake = hub.waiter(promoter)
        try:
            yield f"retry: {settings.stream_retry_ms}\n: ready {last}\n\n"
            while True:
                wake.clear()  # before reading: a NOTIFY after this read sets it again
                async with rt.pool.acquire() as conn:
                    rows = await store.notices_after(conn, promoter, last)
                for r in rows:
                    yield _event(r)
                    last = r["notice_id"]
                if len(rows) == 100:
                    continue
                try:
                    async with asyncio.timeout(settings.stream_heartbeat_s):
                        await wake.wait()
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": ping\n\n"
        finally:
            hub.forget(promoter, wake)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/subscriptions", response_model=list[SubscriptionPublic])
async def report_subscriptions(body: SubscriptionsReport, identity: CurrentIdentity, rt: RuntimeDep) -> list[SubscriptionPublic]:
    """The mini-program reports the template ids the user accepted in `wx.requestSubscribeMessage`
    (each accept allows one subscribe message; WeChat has no quota API, so they are counted
    here). A repeated report (same idempotency key) counts once."""
    openid = getattr(identity, "openid", None) or body.openid
    if not openid:
        raise EngagementError("the user's openid is needed (identity or body)")
    async with rt.pool.acquire() as conn, conn.transaction():
        await store.report_subscriptions(conn, identity.user_id, openid, sorted(set(body.accepted)), body.idempotency_key)
        rows = await store.subscriptions(conn, identity.user_id)
    return [SubscriptionPublic(**dict(r)) for r in rows]


@router.get("/subscriptions", response_model=list[SubscriptionPublic])
async def my_subscriptions(identity: CurrentIdentity, conn: ConnDep) -> list[SubscriptionPublic]:
    """Unused one-time subscriptions per template."""
    return [SubscriptionPublic(**dict(r)) for r in await store.subscriptions(conn, identity.user_id)]
