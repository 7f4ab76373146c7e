"""Composition root of the referral service: `python -m services.referral.main` serves it."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import httpx
from fastapi import FastAPI

from services.referral.api import admin, bindings, erasure, posters, promoters
from services.referral.clients.images import ImageFetcher
from services.referral.clients.wechat import WxaClient
from services.referral.domain.errors import ReferralError
from services.referral.handlers.chain import ChainProjection
from services.referral.handlers.orders import OrderSpendProjection
from services.referral.posters.service import CodeSource
from services.referral.settings import ReferralSettings
from services.referral.store import merchant as merchant_store
from shared import service
from shared.service import Runtime, ServiceSpec

MIGRATIONS = Path(__file__).parent / "store" / "migrations"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(settings: ReferralSettings | None = None, *, schema: str | None = None, clock: Clock | None = None,
               wechat_transport: httpx.AsyncBaseTransport | None = None,
               image_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The referral app. Tests pass a fresh `schema`, a `clock` they move, and may route the
    WeChat / image HTTP clients through an in-process transport."""
    settings = settings or ReferralSettings()
    clock = clock or utc_now
    code_key = settings.code_key()
    personal_data_key = settings.personal_data_master_key()  # crypto-shredding's master key (required)

    async def start(rt: Runtime) -> None:
        rt.extras["clock"] = clock
        rt.extras["personal_data_key"] = personal_data_key
        async with rt.pool.acquire() as conn:
            await merchant_store.ensure(conn, enrolment_mode=settings.enrolment_mode,
                                        spend_threshold_fen=settings.spend_threshold_fen,
                                        binding_mode=settings.binding_mode,
                                        protection_window_days=settings.protection_window_days, now=clock())
        timeout = httpx.Timeout(settings.wechat_timeout_s)
        image_http = httpx.AsyncClient(transport=image_transport, timeout=timeout)
        rt.extras["http_clients"] = [image_http]
        rt.extras["images"] = ImageFetcher(image_http, settings.allowed_image_hosts, settings.image_max_bytes)
        wxa = None
        if settings.wechat_enabled:
            wx_http = httpx.AsyncClient(transport=wechat_transport, timeout=timeout)
            rt.extras["http_clients"].append(wx_http)
            wxa = WxaClient(settings.wechat_appid, settings.wechat_secret, wx_http, api_base=settings.wechat_api_base)
        rt.extras["wxa"] = wxa
        rt.extras["codes"] = CodeSource(wxa=wxa, page=settings.wechat_page, width=settings.wechat_code_width,
                                        check_path=settings.wechat_check_path, env_version=settings.wechat_env_version,
                                        share_url_base=settings.share_url_base)

    async def stop(rt: Runtime) -> None:
        for client in rt.extras.get("http_clients", []):
            await client.aclose()

    spec = ServiceSpec(
        service="referral",
        migrations=MIGRATIONS,
        routers=[promoters.router, bindings.router, posters.router, admin.router, erasure.router],
        projections=[lambda rt: OrderSpendProjection(code_key, personal_data_key), lambda rt: ChainProjection()],
        on_start=[start],
        on_stop=[stop],
        error_root=ReferralError,
        # posters and products may carry an inline image (8 MB of base64)
        body_limits=[(r"^/v1/posters$", 9 * 1024 * 1024), (r"^/v1/admin/products/", 9 * 1024 * 1024)],
        rate_limits={"bind": ("20/min,10", "600/min,200"), "poster": ("20/min,10", "300/min,60")},
        schema=schema,
    )
    return service.create_app(spec, settings)


if __name__ == "__main__":
    service.serve(create_app, ReferralSettings)
