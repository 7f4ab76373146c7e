"""Composition root of the payout service: `python -m services.payout.main` serves it on 8104."""
from __future__ import annotations

from pathlib import Path

import httpx
import structlog
from fastapi import FastAPI

from services.payout import service_layer as sl
from services.payout.api import admin, notify, tax, withdrawals
from services.payout.domain.errors import PayoutError
from services.payout.handlers.ledger import LedgerProjection
from services.payout.settings import PayoutSettings
from services.payout.transfer.client import TransferClient
from services.payout.transfer.follower import TransferFollower
from shared import service
from shared.service import Runtime, ServiceSpec
from shared.wechatpay import NotifyVerifier, load_private_key, load_public_key, read_pem

log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def create_app(settings: PayoutSettings | None = None, *, schema: str | None = None,
               wechat_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The payout service. `wechat_transport` lets tests route WeChat calls to a stand-in."""
    settings = settings or PayoutSettings()
    identity_master = settings.identity_master()  # payee identities' master key (required)
    timing = sl.Timing(open_bill_query_s=settings.open_bill_query_s, retry_base_s=settings.retry_base_s,
                       retry_max_s=settings.retry_max_s)

    async def start_transfer(rt: Runtime) -> None:
        rt.extras["timing"] = timing
        rt.extras["identity_master_key"] = identity_master
        if not settings.transfer_configured:
            log.warning("wechat_transfer_not_configured",
                        hint="set PAYOUT_WECHAT_MERCHANT_KEY/_SERIAL, _PLATFORM_KEY/_SERIAL, _APIV3_KEY")
            return
        # two keys during a switch of modes (certificate serial and PUB_KEY_ID_...), as orders
        platform_keys = {serial: load_public_key(pem) for serial, pem in settings.platform_pems().items()}
        client = TransferClient(
            base_url=settings.wechat_base_url, mchid=settings.wechat_mchid,
            merchant_serial=settings.wechat_merchant_serial,
            merchant_key=load_private_key(read_pem(settings.wechat_merchant_key)),
            platform_keys=platform_keys, platform_serial=settings.wechat_platform_serial,
            timeout_s=settings.wechat_timeout_s, transport=wechat_transport,
        )
        rt.extras["transfer_client"] = client
        rt.extras["notify_verifier"] = NotifyVerifier(platform_keys=platform_keys,
                                                      apiv3_key=settings.wechat_apiv3_key.encode())
        rt.extras["follower"] = TransferFollower(
            rt.pool, client, terms=settings.terms(), mchid=settings.wechat_mchid, timing=timing,
            interval_s=settings.follow_interval_s, lease_s=settings.lease_s)

    spec = ServiceSpec(
        service="payout",
        migrations=MIGRATIONS,
        routers=[withdrawals.router, admin.router, notify.router, tax.router],
        projections=[lambda rt: LedgerProjection()],
        background=[service.run_extra("follower")],
        on_start=[start_transfer],
        on_stop=[service.close_extra("transfer_client")],
        error_root=PayoutError,
        rate_limits={"withdrawal": ("10/min,5", "120/min,40")},
        schema=schema,
    )
    return service.create_app(spec, settings)


if __name__ == "__main__":
    service.serve(create_app, PayoutSettings)
