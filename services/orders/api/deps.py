"""Dependencies the routes share (shared.deps: the runtime, a connection, the clock) with
orders' settings, and the buyer's openid."""
from __future__ import annotations

from fastapi import Request

from services.orders.settings import OrdersSettings
from shared.deps import ClockDep, ConnDep, RuntimeDep, get_clock, get_conn, get_runtime, settings_dependency  # noqa: F401

SettingsDep = settings_dependency(OrdersSettings)


def payer_openid(request: Request, who) -> str | None:
    """The buyer's openid from the gateway identity (shared.identity's signed `openid` claim)."""
    value = getattr(who, "openid", None)
    return value if isinstance(value, str) and value else None
