"""Sends the subscribe messages the projection queued (one per notice that found an unused
one-time subscription). At most once per notice: a send is marked `sending` and committed
before WeChat is called; an answer records the outcome; a request that never left (connection
refused) goes back to `pending`; anything else is `unknown` and never tried again."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import asyncpg
import httpx
import structlog

from services.engagement.clients.wechat import SubscribeClient
from services.engagement.store import notices
from shared.contracts.engagement import SubscribeMessageSent
from shared.events import derive_event_id, new_event
from shared.outbox import OutboxRelay, record_events
from shared.topics import ENGAGEMENT_EVENTS

log = structlog.get_logger(__name__)
REFUSED = frozenset({43101})                          # user refused / no subscription left
FAILED = frozenset({47003, 40037, 41030, 40003, 47001})  # bad parameter, template, page or openid


def outcome_of(errcode: int) -> str:
    if errcode == 0:
        return "sent"
    if errcode in REFUSED:
        return "refused"
    if errcode in FAILED:
        return "failed"
    return "unknown"


class SubscribeSender:
    def __init__(self, pool: asyncpg.Pool, client: SubscribeClient, relay: OutboxRelay, wake: asyncio.Event, *,
                 interval_s: float = 2.0, stale_s: float = 60.0) -> None:
        self.pool, self.client, self.relay, self.wake = pool, client, relay, wake
        self.interval_s, self.stale_s = interval_s, stale_s

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.interval_s):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                while await self.send_pending():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscribe_send_failed")
                await asyncio.sleep(0.5)

    async def send_pending(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            for r in await notices.abandon_stale(conn, self.stale_s):
                await self._record(conn, r, "unknown", None)
            rows = await notices.take_pending(conn)
        for r in rows:
            data = r["data"] if isinstance(r["data"], dict) else json.loads(r["data"])
            try:
                errcode: int | None = await self.client.send(touser=r["openid"], template_id=r["template_id"],
                                                             page=r["page"], data=data)
            except httpx.ConnectError:
                async with self.pool.acquire() as conn:
                    await notices.finish_send(conn, r["source_event_id"], "pending", None)
                log.warning("subscribe_send_not_connected", promoter_id=r["promoter_id"])
                continue
            except Exception:
                errcode = None
                log.exception("subscribe_send_outcome_unknown", promoter_id=r["promoter_id"])
            state = "unknown" if errcode is None else outcome_of(errcode)
            async with self.pool.acquire() as conn, conn.transaction():
                await notices.finish_send(conn, r["source_event_id"], state, errcode)
                if state == "refused":
                    await notices.exhaust(conn, r["promoter_id"], r["template_id"])
                elif state == "failed":
                    await notices.give_back(conn, r["promoter_id"], r["template_id"])
                await self._record(conn, r, state, errcode)
            log.info("subscribe_message", promoter_id=r["promoter_id"], outcome=state, errcode=errcode)
        if rows:
            self.relay.kick()
        return len(rows)

    async def _record(self, conn, r, state: str, errcode: int | None) -> None:
        now = datetime.now(timezone.utc)
        evt = SubscribeMessageSent(promoter_id=r["promoter_id"], notice_id=r["notice_id"],
                                   source_event_id=str(r["source_event_id"]), template_id=r["template_id"],
                                   outcome=state, errcode=errcode, at=now)  # type: ignore[arg-type]
        await record_events(conn, ENGAGEMENT_EVENTS, [new_event(evt, event_id=derive_event_id(r["source_event_id"], "subscribe"),
                                                                occurred_at=now)])
