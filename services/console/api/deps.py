"""Request-scoped pieces: the runtime, the signed-in operator (session cookie), the CSRF check
every form passes, the templates, and recording an operator's action as an event."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.templating import Jinja2Templates

from services.console.clients.backends import Backends
from services.console.domain import money
from services.console.domain.roles import ROLE_NAMES, can, require
from services.console.domain.sessions import COOKIE, Lifetime, csrf_ok, token_hash
from services.console.store import accounts
from shared.contracts.console import OperatorActionRecorded
from shared.deps import RuntimeDep, get_runtime  # noqa: F401
from shared.events import new_event
from shared.outbox import record_events
from shared.service import Runtime
from shared.topics import CONSOLE_EVENTS

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))
def _ts(value: Any, tz: str = "Asia/Shanghai") -> str:
    """An instant (datetime or ISO text) in the merchant's time zone, to the second."""
    if value in (None, ""):
        return ""
    from zoneinfo import ZoneInfo
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S") if at.tzinfo else at.strftime("%Y-%m-%d %H:%M:%S")


TEMPLATES.env.filters["ts"] = _ts
WITHDRAWAL_STATUS = {"pending_review": "待审核", "approved": "已批准", "transferring": "转账中", "paid": "已到账",
                     "rejected": "已拒绝", "released": "已退回"}
TEMPLATES.env.globals.update(WITHDRAWAL_STATUS=WITHDRAWAL_STATUS, yuan=money.yuan, ratio=money.ratio_percent, bp=money.bp_percent, ROLE_NAMES=ROLE_NAMES,
                             can=can)


class LoginRequired(Exception):
    def __init__(self, expired: bool = False) -> None:
        super().__init__("login required")
        self.expired = expired


class CsrfRefused(Exception):
    pass


@dataclass(frozen=True)
class Operator:
    username: str
    role: str
    csrf: str
    display_name: str | None
    token_hash: str

    def require(self, action: str) -> None:
        require(self.role, action)


def now_of(rt: Runtime) -> datetime:
    return rt.extras["clock"]()


def backends(rt: Runtime) -> Backends:
    return rt.extras["backends"]


async def current_operator(request: Request, rt: RuntimeDep) -> Operator:
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired()
    th = token_hash(token)
    now = now_of(rt)
    lifetime: Lifetime = rt.extras["lifetime"]
    async with rt.pool.acquire() as conn:
        s = await accounts.session(conn, th)
        if s is None:
            raise LoginRequired(expired=True)
        if s["expires_at"] <= now or s["disabled"]:
            await accounts.delete_session(conn, th)
            raise LoginRequired(expired=True)
        nxt = lifetime.expiry(s["created_at"], now)
        if nxt - s["expires_at"] > timedelta(seconds=30):  # sliding idle timeout, not a write per request
            await accounts.touch_session(conn, th, nxt)
    return Operator(s["username"], s["role"], s["csrf_token"], s["display_name"], th)


OperatorDep = Annotated[Operator, Depends(current_operator)]


async def checked_operator(op: OperatorDep, csrf_token: Annotated[str, Form()] = "") -> Operator:
    """For every POST: the session's CSRF token must come back in the form."""
    if not csrf_ok(op.csrf, csrf_token):
        raise CsrfRefused()
    return op


FormOperatorDep = Annotated[Operator, Depends(checked_operator)]


async def record_action(rt: Runtime, *, operator: str, role: str, action: str, target: str | None = None,
                        reason: str | None = None, outcome: str = "ok", detail: dict[str, Any] | None = None,
                        conn=None) -> uuid.UUID:
    """One `OperatorActionRecorded` in the console's outbox (in `conn`'s transaction if given)."""
    at = now_of(rt)
    env = new_event(OperatorActionRecorded(action_id=str(uuid.uuid4()), operator=operator, role=role, action=action,  # type: ignore[arg-type]
                                           target=(target or None) and target[:256], reason=(reason or None) and reason[:500],
                                           outcome=outcome, detail=detail or {}, at=at), occurred_at=at)  # type: ignore[arg-type]
    if conn is not None:
        await record_events(conn, CONSOLE_EVENTS, [env])
    else:
        async with rt.pool.acquire() as c, c.transaction():
            await record_events(c, CONSOLE_EVENTS, [env])
        rt.relay.kick()
    return env.event_id


def render(request: Request, template: str, op: Operator | None, status_code: int = 200, **ctx: Any):
    q = request.query_params
    return TEMPLATES.TemplateResponse(request, template, {
        "op": op, "csrf": op.csrf if op else None, "flash_ok": q.get("ok"), "flash_error": q.get("error"),
        "nav": template.split(".")[0], **ctx}, status_code=status_code)
