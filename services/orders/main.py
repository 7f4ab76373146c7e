"""Composition root of the orders service: `python -m services.orders.main` serves it."""
from __future__ import annotations


import httpx
from fastapi import FastAPI

from services.orders.api import admin, erasure, notify, orders, promoters
from services.orders.clock import Clock, system_clock
from services.orders.domain.errors import OrdersError
from services.orders.domain.rules import Merchant
from services.orders.handlers.due import sweeper
from services.orders.reconcile import reconcile_scheduler
from services.orders.wechatpay.calls import PayCalls
from services.orders.wechatpay.follow import PayFollower
from services.orders.handlers.promoter_codes import PromoterCodes
from services.orders.settings import OrdersSettings
from services.orders.store import MIGRATIONS
import structlog

from shared import service
from shared.wechatpay import NotifyVerifier, load_private_key, load_public_key, read_pem
from shared.wechatpay.client import WeChatPayClient


def platform_keys(settings: OrdersSettings) -> dict:
    """Every configured platform key by serial, each PEM given inline or as a file path (the
    Kubernetes manifests mount them from the orders-wechatpay-keys Secret)."""
    return {serial: load_public_key(read_pem(pem)) for serial, pem in settings.wechatpay_platform_keys.items()}


def build_calls(settings: OrdersSettings, transport: httpx.AsyncBaseTransport | None = None) -> PayCalls:
    """The signing client for outgoing calls; answers verified with every configured platform
    key (two during a switch of key modes, like the notices)."""
    api = WeChatPayClient(
        base_url=settings.wechatpay_base_url, mchid=settings.wechatpay_mchid,
        merchant_serial=settings.wechatpay_merchant_serial,
        merchant_key=load_private_key(read_pem(settings.wechatpay_merchant_key)),
        platform_keys=platform_keys(settings),
        timeout_s=settings.wechatpay_timeout_s, transport=transport, user_agent="fenxiao-orders/1")
    return PayCalls(api, mchid=settings.wechatpay_mchid)


log = structlog.get_logger(__name__)


def build_verifier(settings: OrdersSettings) -> NotifyVerifier:
    """Parse the configured platform keys once, at start: a bad PEM stops the service here,
    not in the webhook."""
    keys = platform_keys(settings)
    apiv3 = settings.wechatpay_apiv3_key.encode()
    if apiv3 and len(apiv3) != 32:
        raise ValueError("ORDERS_WECHATPAY_APIV3_KEY must be 32 bytes")
    return NotifyVerifier(platform_keys=keys, apiv3_key=apiv3 or b"\0" * 32,
                          freshness_s=settings.wechatpay_notice_freshness_s)


def create_app(settings: OrdersSettings | None = None, *, schema: str | None = None,
               clock: Clock | None = None, wechat_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    settings = settings or OrdersSettings()

    async def wire(rt: service.Runtime) -> None:
        rt.extras["clock"] = clock or system_clock
        rt.extras["verifier"] = build_verifier(settings)
        rt.extras["merchant"] = Merchant(mchid=settings.wechatpay_mchid, appid=settings.wechatpay_appid)
        if settings.calls_configured:
            calls = build_calls(settings, wechat_transport)
            rt.extras["pay_calls"] = calls
            rt.extras["pay"] = PayFollower(rt.pool, calls, settings=settings, merchant=rt.extras["merchant"],
                                           clock=rt.extras["clock"], kick=rt.relay.kick)
        else:
            log.warning("wechatpay_calls_not_configured",
                        hint="set ORDERS_WECHATPAY_BASE_URL, _MERCHANT_SERIAL, _MERCHANT_KEY, _PLATFORM_KEYS, _NOTIFY_URL")

    spec = service.ServiceSpec(
        service="orders",
        migrations=MIGRATIONS,
        routers=(orders.router, notify.router, promoters.router, admin.router, erasure.router),
        projections=(lambda rt: PromoterCodes(),),
        background=(sweeper, service.run_extra("pay"), reconcile_scheduler),
        on_start=(wire,),
        on_stop=(service.close_extra("pay_calls"),),
        rate_limits={"order": ("30/min,10", "600/min,200")},
        error_root=OrdersError,
        schema=schema,
    )
    return service.create_app(spec, settings)


if __name__ == "__main__":
    service.serve(create_app, OrdersSettings)
