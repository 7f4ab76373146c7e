"""Waking notice streams on any replica: one LISTEN connection per process on this schema's
channel; PostgreSQL delivers a NOTIFY (sent in the notice's transaction) at commit. A wake-up
only says "look again": every stream reads the notices table itself, so a lost wake-up costs
at most one heartbeat interval, never a notice."""
from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg
import structlog

from services.engagement.store.notices import NOTIFY_CHANNEL_SUFFIX

log = structlog.get_logger(__name__)


class NoticeHub:
    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema
        self.channel = schema + NOTIFY_CHANNEL_SUFFIX
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.any_notice = asyncio.Event()    # the subscribe sender waits on this
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    def waiter(self, promoter_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters[promoter_id].add(ev)
        return ev

    def forget(self, promoter_id: str, ev: asyncio.Event) -> None:
        s = self._waiters.get(promoter_id)
        if s is not None:
            s.discard(ev)
            if not s:
                self._waiters.pop(promoter_id, None)

    def streams(self) -> int:
        return sum(len(s) for s in self._waiters.values())

    def _on_notify(self, _conn, _pid, _channel, promoter_id: str) -> None:
        for ev in self._waiters.get(promoter_id, ()):
            ev.set()
        self.any_notice.set()

    def _wake_all(self) -> None:
        for s in self._waiters.values():
            for ev in s:
                ev.set()
        self.any_notice.set()

    async def run(self) -> None:
        while True:
            try:
                self._conn = await asyncpg.connect(self.dsn, server_settings={
                    "application_name": f"fenxiao-{self.schema}-listener"[:63]})
                await self._conn.add_listener(self.channel, self._on_notify)
                self.connected.set()
                self._wake_all()  # whatever committed while we were not listening
                while not self._conn.is_closed():
                    await asyncio.sleep(5.0)
                    # a connection that died without a word (network, failover) only shows when used
                    async with asyncio.timeout(5.0):
                        await self._conn.fetchval("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notice_listener_failed")
            finally:
                self.connected.clear()
                if self._conn is not None and not self._conn.is_closed():
                    try:
                        await self._conn.close()
                    except Exception:
                        pass
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="engagement-notice-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
