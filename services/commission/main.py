"""Composition root: `python -m services.commission.main` serves the commission service."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from fastapi import FastAPI

from services.commission.api import explain
from services.commission.api.routes import admin, estimates, promoters
from services.commission.domain.errors import CommissionError
from services.commission.handlers.projection import CommissionProjection, ProjectorProgress
from services.commission.handlers.plans import restore_plans
from services.commission.handlers.settlement import run_scheduler
from services.commission.settings import CommissionSettings
from shared.service import Runtime, ServiceSpec, create_app as build_app, run

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

    def projection(rt: Runtime) -> CommissionProjection:
        proj = CommissionProjection(emit=True, due_channel=due_channel(schema),
                                    skew=timedelta(seconds=settings.order_wait_skew_s))
        proj.progress = ProjectorProgress(lambda: next((p for p in rt.projectors if p.projection is proj), None))
        return proj

    async def settlement_scheduler(rt: Runtime) -> None:
        await run_scheduler(rt.pool, rt.relay, rt.extras["settle_clock"], channel=due_channel(schema),
                            poll_s=settings.settle_poll_s, batch=settings.settle_batch)

    spec = ServiceSpec(
        service="commission",
        migrations=MIGRATIONS,
        routers=(promoters, admin, estimates, explain.router),
        projections=(projection,),
        background=(settlement_scheduler,),
        on_start=(provide_clock, plans_from_log),
        error_root=CommissionError,
        error_status=lambda exc: getattr(exc, "status", 422),
        title="fenxiao commission",
        schema=schema,
    )
    return build_app(spec, settings)


if __name__ == "__main__":
    s = CommissionSettings()
    run(create_app(s), s.port)
