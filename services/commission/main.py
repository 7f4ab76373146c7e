"""Composition root: `python -m services.commission.main` serves the commission service."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import structlog
from fastapi import FastAPI

from services.commission.api import explain
from services.commission.api.audit import audit
from services.commission.api.routes import admin, estimates, promoters
from services.commission.domain.errors import CommissionError
from services.commission.handlers.projection import CommissionProjection
from services.commission.handlers.reference import ReferenceProjection
from services.commission.handlers.plans import restore_plans
from services.commission.handlers.settlement import run_scheduler
from services.commission.settings import CommissionSettings
from shared.service import Runtime, ServiceSpec, create_app as build_app, serve
from shared.topics import ORDER_EVENTS

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "store" / "migrations"


def due_channel(schema: str) -> str:
    return f"{schema}_settlement_due"


def create_app(settings: CommissionSettings | None = None, *, schema: str | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    settings = settings or CommissionSettings()
    schema = schema or settings.db_schema
    offset = timedelta(seconds=settings.clock_offset_s)

    def now() -> datetime:
        return datetime.now(timezone.utc)

    def settle_now() -> datetime:  # COMMISSION_CLOCK_OFFSET_S lets freeze days pass at once (tests, demo)
        return now() + offset

    async def provide_clock(rt: Runtime) -> None:
        rt.extras["clock"] = clock or now
        rt.extras["settle_clock"] = clock or settle_now

    async def plans_from_log(rt: Runtime) -> None:
        await restore_plans(rt.pool, settings.kafka_bootstrap_servers)

    tier_epoch = timedelta(seconds=settings.tier_epoch_s)

    def reference(rt: Runtime) -> ReferenceProjection:
        return ReferenceProjection()

    def projection(rt: Runtime) -> CommissionProjection:
        def owned() -> list[int] | None:
            projector = next((p for p in rt.projectors if p.projection is proj), None)
            if projector is None:
                return []
            return [tp.partition for tp in projector.positions if tp.topic == ORDER_EVENTS]

        proj = CommissionProjection(emit=True, due_channel=due_channel(schema), bootstrap=settings.kafka_bootstrap_servers,
                                    skew=timedelta(seconds=settings.order_wait_skew_s), tier_epoch=tier_epoch, owned=owned,
                                    release_max=settings.projector_batch_max)
        rt.extras["orders_projection"] = proj
        return proj

    async def settlement_scheduler(rt: Runtime) -> None:
        await run_scheduler(rt.pool, rt.relay, rt.extras["settle_clock"], channel=due_channel(schema),
                            poll_s=settings.settle_poll_s, batch=settings.settle_batch, tier_epoch=tier_epoch)

    async def release_held(rt: Runtime) -> None:
        """Held orders go when the referral stream (or the other workers) catch up, even if no
        new order comes to this worker's partitions."""
        proj: CommissionProjection = rt.extras["orders_projection"]
        try:
            while True:
                await asyncio.sleep(settings.held_poll_s)
                if not proj.may_hold:
                    continue
                try:
                    batch = await proj.tick(rt.pool)
                    if batch.emitted:
                        rt.relay.kick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("release_held_failed")
        finally:
            await proj.close()

    spec = ServiceSpec(
        service="commission",
        migrations=MIGRATIONS,
        routers=(promoters, admin, estimates, explain.router, audit),
        projections=(reference, projection),
        background=(settlement_scheduler, release_held),
        on_start=(provide_clock, plans_from_log),
        error_root=CommissionError,
        schema=schema,
    )
    return build_app(spec, settings)


if __name__ == "__main__":
    serve(create_app, CommissionSettings)
