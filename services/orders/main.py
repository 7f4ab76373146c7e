"""Composition root of the orders service: `python -m services.orders.main` serves it."""
from __future__ import annotations

from fastapi import FastAPI

from services.orders.api import admin, notify, orders, promoters
from services.orders.clock import Clock, system_clock
from services.orders.domain.errors import OrdersError
from services.orders.domain.rules import Merchant
from services.orders.handlers.due import sweeper
from services.orders.handlers.promoter_codes import PromoterCodes
from services.orders.settings import OrdersSettings
from services.orders.store import MIGRATIONS
from shared import service
from shared.wechatpay import NotifyVerifier, load_public_key


def build_verifier(settings: OrdersSettings) -> NotifyVerifier:
    """Parse the configured platform keys once, at start: a bad PEM stops the service here,
    not in the webhook."""
    keys = {serial: load_public_key(pem) for serial, pem in settings.wechatpay_platform_keys.items()}
    apiv3 = settings.wechatpay_apiv3_key.encode()
    if apiv3 and len(apiv3) != 32:
        raise ValueError("ORDERS_WECHATPAY_APIV3_KEY must be 32 bytes")
    return NotifyVerifier(platform_keys=keys, apiv3_key=apiv3 or b"\0" * 32,
                          freshness_s=settings.wechatpay_notice_freshness_s)


def create_app(settings: OrdersSettings | None = None, *, schema: str | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or OrdersSettings()

    async def wire(rt: service.Runtime) -> None:
        rt.extras["clock"] = clock or system_clock
        rt.extras["verifier"] = build_verifier(settings)
        rt.extras["merchant"] = Merchant(mchid=settings.wechatpay_mchid, appid=settings.wechatpay_appid)

    spec = service.ServiceSpec(
        service="orders",
        migrations=MIGRATIONS,
        routers=(orders.router, notify.router, promoters.router, admin.router),
        projections=(lambda rt: PromoterCodes(),),
        background=(sweeper,),
        on_start=(wire,),
        error_root=OrdersError,
        error_status=lambda exc: getattr(exc, "status", 422),
        title="fenxiao orders",
        schema=schema,
    )
    return service.create_app(spec, settings)


if __name__ == "__main__":
    _settings = OrdersSettings()
    service.run(create_app(_settings), _settings.port)
