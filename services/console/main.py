"""Composition root of the operators' console: `python -m services.console.main` serves it on 8106.

A server-rendered web console (FastAPI + Jinja2, Chinese text, a vendored chart library). It
owns its schema (accounts, sessions, its overview projection, audit runs), calls the other
services' admin HTTP APIs for everything else, and records every operator action as an
`OperatorActionRecorded` event on its own topic through its outbox."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from services.console.api import audit, auth, explain, overview, plan, promoters, withdrawals
from services.console.api.deps import CsrfRefused, LoginRequired, render
from services.console.clients.backends import Backends
from services.console.domain.passwords import hash_password
from services.console.domain.roles import PermissionDenied, is_role
from services.console.domain.sessions import Lifetime
from services.console.handlers.overview import OverviewProjection
from services.console.settings import ConsoleSettings
from services.console.store import accounts
from shared.service import Runtime, ServiceSpec, close_extra, create_app as build_app, serve

log = structlog.get_logger(__name__)
HERE = Path(__file__).parent
MIGRATIONS = HERE / "store" / "migrations"


def parse_bootstrap(text: str) -> list[tuple[str, str, str]]:
    """"name:role:password;..." -> [(name, role, password)]"""
    out = []
    for item in filter(None, (x.strip() for x in text.split(";"))):
        name, role, password = item.split(":", 2)
        if not is_role(role):
            raise ValueError(f"unknown console role {role!r}")
        out.append((name, role, password))
    return out


def create_app(settings: ConsoleSettings | None = None, *, schema: str | None = None,
               clock: Callable[[], datetime] | None = None,
               backend_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    schema = schema or settings.db_schema
    accounts_to_create = parse_bootstrap(settings.bootstrap_operators)

    async def start(rt: Runtime) -> None:
        rt.extras["clock"] = clock or (lambda: datetime.now(timezone.utc))
        rt.extras["lifetime"] = Lifetime(idle=timedelta(seconds=settings.session_idle_s),
                                         absolute=timedelta(seconds=settings.session_max_s))
        rt.extras["backends"] = Backends({"referral": settings.referral_url, "commission": settings.commission_url,
                                          "payout": settings.payout_url}, settings.identity_secret,
                                         settings.backend_timeout_s, transport=backend_transport)
        async with rt.pool.acquire() as conn:
            for name, role, password in accounts_to_create:
                await accounts.upsert_operator(conn, name, role, hash_password(password))
        if accounts_to_create:
            log.info("operators_bootstrapped", operators=[(n, r) for n, r, _ in accounts_to_create])

    spec = ServiceSpec(
        service="console",
        migrations=MIGRATIONS,
        routers=(auth.router, overview.router, plan.router, promoters.router, explain.router, withdrawals.router,
                 audit.router),
        projections=(lambda rt: OverviewProjection(ZoneInfo(settings.business_timezone)),),
        on_start=(start,),
        on_stop=(close_extra("backends"),),
        schema=schema,
    )
    app = build_app(spec, settings)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired):
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            nxt = "/overview"
        return RedirectResponse(f"/login?next={quote(nxt)}" + ("&expired=1" if exc.expired else ""), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused):
        return render(request, "error.html", None, status_code=403, title="请求被拒绝",
                      message="表单校验（CSRF）失败：请刷新页面后重试。")

    @app.exception_handler(PermissionDenied)
    async def forbidden(request: Request, exc: PermissionDenied):
        return render(request, "error.html", None, status_code=403, title="无权操作", message=str(exc))

    return app


if __name__ == "__main__":
    serve(create_app, ConsoleSettings)
