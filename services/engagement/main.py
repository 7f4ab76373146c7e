"""Composition root of the engagement service: `python -m services.engagement.main` serves it on 8105."""
from __future__ import annotations

from pathlib import Path

import httpx
import structlog
from fastapi import FastAPI

from services.engagement.api import admin, dashboard, erasure, notices, profile
from services.engagement.clients.wechat import SubscribeClient
from services.engagement.domain.errors import EngagementError
from services.engagement.handlers.activity import ActivityProjection
from services.engagement.live import NoticeHub
from services.engagement.sender import SubscribeSender
from services.engagement.settings import EngagementSettings
from shared import service
from shared.service import Runtime, ServiceSpec
from shared.wechat import StableToken

log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(settings: EngagementSettings | None = None, *, schema: str | None = None,
               wechat_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The engagement app. Tests pass a fresh `schema` and may route WeChat calls to a stand-in."""
    settings = settings or EngagementSettings()

    async def start(rt: Runtime) -> None:
        async with rt.pool.acquire() as conn:
            current = await conn.fetchval("SELECT current_schema()")
        hub = NoticeHub(settings.database_url, current)
        hub.start()
        rt.extras["hub"] = hub
        rt.extras["sender"] = None
        if settings.wechat_enabled:
            http = httpx.AsyncClient(transport=wechat_transport, timeout=httpx.Timeout(settings.wechat_timeout_s))
            rt.extras["http"] = http
            token = StableToken(settings.wechat_appid, settings.wechat_secret, http, api_base=settings.wechat_api_base)
            client = SubscribeClient(token, http, api_base=settings.wechat_api_base,
                                     miniprogram_state=settings.miniprogram_state, lang=settings.lang)
            rt.extras["sender"] = SubscribeSender(rt.pool, client, rt.relay, hub.any_notice,
                                                  interval_s=settings.send_interval_s, stale_s=settings.send_stale_s)
        else:
            log.warning("wechat_subscribe_not_configured", hint="set ENGAGEMENT_WECHAT_APPID and _SECRET")

    async def stop_hub(rt: Runtime) -> None:
        await rt.extras["hub"].stop()

    spec = ServiceSpec(
        service="engagement",
        migrations=MIGRATIONS,
        routers=[notices.router, dashboard.router, profile.router, admin.router, erasure.router],
        projections=[lambda rt: ActivityProjection(settings.business_timezone, settings.top_n_of_month)],
        background=[service.run_extra("sender")],
        on_start=[start],
        on_stop=[stop_hub, service.close_extra("http")],
        error_root=EngagementError,
        schema=schema,
    )
    return service.create_app(spec, settings)


if __name__ == "__main__":
    service.serve(create_app, EngagementSettings)
